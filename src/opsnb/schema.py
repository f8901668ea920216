"""The typed frozen schema: what ``schema.json`` holds, and encoding rows for the model.

``schema.json`` lists the model's features in input order, each numeric (with the observed range
``min``/``max`` and the accepted range ``lower``/``upper``) or categorical (with its categories,
whose position is the integer code the model is trained on and the compiled library receives).
:class:`Schema` and :class:`Feature` read that file and write it back unchanged; every module,
notebook and test reads the contract through them, never as a raw dict.

In :func:`to_matrix` a category not in the list, or a missing value, becomes NaN: the trees send
it down their learned default branch. The first run of a data set freezes its contract
(:func:`freeze`, at :func:`opsnb.config.contract_path`); later runs load it (:func:`load_frozen`)
and never re-infer it unless asked to.

This module needs numpy only, and pandas once a DataFrame is encoded, so the serving layer
loads it without the training stack (inference, leakage guards and pandera live in
:mod:`opsnb.validation`) and a server that receives JSON never imports pandas.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np

from opsnb.artifacts import read_json, write_json
from opsnb.errors import SchemaError

if TYPE_CHECKING:
    import pandas as pd

SCHEMA_VERSION = 1
FLOAT32_MAX = float(np.finfo(np.float32).max)
NUMERIC: Literal["numeric"] = "numeric"
CATEGORICAL: Literal["categorical"] = "categorical"
Kind = Literal["numeric", "categorical"]
KINDS: tuple[Kind, ...] = (NUMERIC, CATEGORICAL)
PROBABILITY = "probability"
VALUE = "value"
"""What a model outputs: a probability (binary task) or a value (regression); see Schema.output."""
UNKNOWN_POLICIES = ("reject", "allow")
"""What the contract does with a category it has not seen: refuse the row, or let it through."""

_RANGE_KEYS = ("min", "max", "lower", "upper")
_SCHEMA_KEYS = (
    "version",
    "task",
    "target",
    "timestamp",
    "ids",
    "features",
    "excluded",
    "range_tolerance",
    "unknown_categories",
    "label_mapping",
)


@dataclass(frozen=True)
class Feature:
    """One model input column, as ``schema.json`` records it.

    Attributes:
        name: the column name.
        kind: ``"numeric"`` or ``"categorical"``.
        nullable: whether a missing value is accepted.
        dtype: the pandas dtype the column had when the contract was inferred.
        categories: a categorical feature's categories; a category's position is its code.
        min: the smallest value seen in training (numeric).
        max: the largest value seen in training (numeric).
        lower: the smallest value the contract accepts (numeric; ``min`` when absent).
        upper: the largest value the contract accepts (numeric; ``max`` when absent).
    """

    name: str
    kind: Kind
    nullable: bool = False
    dtype: str | None = None
    categories: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None
    lower: float | None = None
    upper: float | None = None

    @property
    def is_categorical(self) -> bool:
        """True for a categorical feature."""
        return self.kind == CATEGORICAL

    @property
    def accepted_range(self) -> tuple[float | None, float | None]:
        """The accepted range: ``lower``/``upper``, else the observed ``min``/``max``."""
        lower = self.lower if self.lower is not None else self.min
        upper = self.upper if self.upper is not None else self.max
        return lower, upper

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "schema.json") -> Feature:
        """Read one entry of ``features``; ``where`` names it in errors.

        Raises:
            SchemaError: the entry has no name, an unknown kind, or a categorical one has no
                categories.
        """
        if not isinstance(data, Mapping) or not isinstance(data.get("name"), str):
            raise SchemaError(f"{where}: a feature must be an object with a string 'name'")
        name = data["name"]
        kind = data.get("kind")
        if kind not in KINDS:
            raise SchemaError(
                f"{where} feature {name!r}: kind {kind!r} is not a feature kind; expected "
                f"{' or '.join(KINDS)} (re-infer the schema: -p refreeze_schema true)",
                column=name,
            )
        categories: tuple[str, ...] = ()
        if kind == CATEGORICAL:
            if not isinstance(data.get("categories"), list):
                raise SchemaError(
                    f"{where} feature {name!r}: a categorical feature needs a 'categories' "
                    f"list, got {data.get('categories')!r}",
                    column=name,
                )
            categories = tuple(str(c) for c in data["categories"])
        ranges = {k: None if data.get(k) is None else float(data[k]) for k in _RANGE_KEYS}
        return cls(
            name=name,
            kind=cast(Kind, kind),
            nullable=bool(data.get("nullable", False)),
            dtype=data.get("dtype"),
            categories=categories,
            **ranges,
        )

    def to_dict(self) -> dict[str, Any]:
        """The entry as ``schema.json`` writes it (absent fields stay absent)."""
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "nullable": self.nullable}
        if self.dtype is not None:
            out["dtype"] = self.dtype
        if self.is_categorical:
            out["categories"] = list(self.categories)
        for key in _RANGE_KEYS:
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


@dataclass(frozen=True)
class Schema:
    """The frozen input contract (``schema.json``): task, target and features in input order.

    Attributes:
        task: ``"binary"`` or ``"regression"``.
        target: the label column.
        features: the model's inputs, in order.
        timestamp: the time column, if any (never a feature).
        ids: identifier columns (never features).
        excluded: columns kept out of the features, each with why.
        range_tolerance: how far ``lower``/``upper`` were widened past the training range.
        unknown_categories: ``"reject"`` or ``"allow"`` rows with an unseen category.
        label_mapping: original label -> 0/1 for a binary target that needed mapping.
        version: the ``schema.json`` format version.
    """

    task: str
    target: str
    features: tuple[Feature, ...]
    timestamp: str | None = None
    ids: tuple[str, ...] = ()
    excluded: Mapping[str, str] = field(default_factory=dict)
    range_tolerance: float | None = None
    unknown_categories: str = "allow"
    label_mapping: Mapping[str, int] | None = None
    version: int = SCHEMA_VERSION

    @property
    def output(self) -> str:
        """What the model outputs: :data:`PROBABILITY` (binary task) or :data:`VALUE`."""
        return PROBABILITY if self.task == "binary" else VALUE

    @property
    def feature_names(self) -> list[str]:
        """The model's input columns, in order."""
        return [f.name for f in self.features]

    @property
    def feature_kinds(self) -> list[str]:
        """Each feature's kind (``"numeric"`` or ``"categorical"``), in input order."""
        return [f.kind for f in self.features]

    @property
    def feature_types(self) -> list[str]:
        """XGBoost feature types in input order: ``"q"`` numeric, ``"c"`` categorical."""
        return ["c" if f.is_categorical else "q" for f in self.features]

    def feature(self, name: str) -> Feature:
        """The feature called ``name``.

        Raises:
            SchemaError: no feature has that name (the message lists the names).
        """
        for feature in self.features:
            if feature.name == name:
                return feature
        raise SchemaError(
            f"no feature {name!r} in the schema; features are: {', '.join(self.feature_names)}",
            column=name,
        )

    def require_columns(self, frame: pd.DataFrame) -> None:
        """Raise :class:`SchemaError` naming the feature columns ``frame`` lacks."""
        missing = [n for n in self.feature_names if n not in frame.columns]
        if missing:
            raise SchemaError(
                f"input lacks feature column(s) {', '.join(map(repr, missing))} "
                "required by schema.json",
                column=missing[0],
            )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "schema.json") -> Schema:
        """Read a schema document (the content of ``schema.json``); ``where`` names it in errors.

        Raises:
            SchemaError: a key is unknown, or ``task``, ``target`` or ``features`` is missing
                or malformed.
        """
        if not isinstance(data, Mapping):
            raise SchemaError(f"{where} must hold a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - set(_SCHEMA_KEYS))
        if unknown:
            raise SchemaError(
                f"{where} has unknown key(s) {', '.join(map(repr, unknown))}; known keys are "
                f"{', '.join(_SCHEMA_KEYS)}"
            )
        for key in ("task", "target"):
            if not isinstance(data.get(key), str):
                raise SchemaError(f"{where} needs a string {key!r}, got {data.get(key)!r}")
        if not isinstance(data.get("features"), list):
            raise SchemaError(f"{where} needs a 'features' list, got {data.get('features')!r}")
        mapping = data.get("label_mapping")
        return cls(
            task=data["task"],
            target=data["target"],
            features=tuple(Feature.from_dict(f, where=where) for f in data["features"]),
            timestamp=data.get("timestamp"),
            ids=tuple(data.get("ids") or ()),
            excluded=dict(data.get("excluded") or {}),
            range_tolerance=data.get("range_tolerance"),
            unknown_categories=data.get("unknown_categories", "allow"),
            label_mapping=None if mapping is None else dict(mapping),
            version=int(data.get("version", SCHEMA_VERSION)),
        )

    def to_dict(self) -> dict[str, Any]:
        """The document ``schema.json`` holds (every key, as :func:`validation.infer_schema`)."""
        return {
            "version": self.version,
            "task": self.task,
            "target": self.target,
            "timestamp": self.timestamp,
            "ids": list(self.ids),
            "features": [f.to_dict() for f in self.features],
            "excluded": dict(self.excluded),
            "range_tolerance": self.range_tolerance,
            "unknown_categories": self.unknown_categories,
            "label_mapping": None if self.label_mapping is None else dict(self.label_mapping),
        }

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Schema:
        """Read ``schema.json`` at ``path``."""
        return cls.from_dict(read_json(path), where=os.fspath(path))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the schema to ``path`` atomically; return the path."""
        return write_json(path, self.to_dict())


# -- encoding for the model --------------------------------------------------------------------
def to_matrix(frame: pd.DataFrame, schema: Schema) -> np.ndarray:
    """Return the float32 model input for ``frame``: columns in schema order, categories as codes.

    Columns are found by name in any order; extra columns are ignored. An unknown category or a
    missing value becomes NaN.

    Raises:
        SchemaError: a feature column is missing, or a value is beyond float32 range.
    """
    import pandas as pd  # noqa: PLC0415 - the caller has a DataFrame: pandas is loaded already

    schema.require_columns(frame)
    out = np.empty((len(frame), len(schema.features)), dtype=np.float32)
    for j, feature in enumerate(schema.features):
        column = frame[feature.name]
        if feature.is_categorical:
            # Vectorised: a category's code is its position; unknown or missing -> -1 -> NaN.
            index = pd.Index(feature.categories)
            codes = index.get_indexer(pd.Index(column.astype("string"))).astype(np.float32)
            codes[codes < 0] = np.nan
            out[:, j] = codes
        else:
            numbers = pd.to_numeric(column, errors="coerce").to_numpy(
                dtype=np.float64, na_value=np.nan
            )
            # Compiled trees predict silently on ±inf: refuse what float32 cannot hold.
            outside = np.flatnonzero(np.abs(numbers) > FLOAT32_MAX)
            if outside.size:
                row = int(outside[0])
                value = float(numbers[row])
                raise SchemaError(
                    f"feature {feature.name!r} row {row} has value {value!r} outside "
                    f"the float32 range ±{FLOAT32_MAX:.4g} the compiled model accepts "
                    f"({outside.size} such rows)",
                    column=feature.name,
                )
            out[:, j] = numbers
    return out


def target_vector(frame: pd.DataFrame, schema: Schema) -> np.ndarray:
    """Return the label column as float64."""
    labels: np.ndarray = frame[schema.target].to_numpy(dtype=np.float64)
    return labels


def describe(schema: Schema) -> str:
    """The contract as plain text, one feature a line (stable: nbval checks it)."""
    lines = [
        f"target: {schema.target} ({schema.task})",
        f"timestamp: {schema.timestamp}",
        f"ids: {', '.join(schema.ids) or '-'}",
    ]
    for name, why in schema.excluded.items():
        if name not in schema.ids:
            lines.append(f"excluded {name}: {why}")
    for f in schema.features:
        null = "nullable" if f.nullable else "required"
        if f.is_categorical:
            lines.append(f"{f.name}: categorical, {null}, {len(f.categories)} categories")
        else:
            lines.append(f"{f.name}: numeric, {null}")
    return "\n".join(lines)


# -- the frozen contract -----------------------------------------------------------------------
def freeze(schema: Schema, path: Path) -> Path:
    """Write ``schema`` as the frozen contract at ``path`` (atomically)."""
    return schema.save(path)


def load_frozen(path: Path, *, target: str, task: str) -> Schema | None:
    """Return the frozen contract at ``path`` (``None`` if there is none yet), checked to fit.

    Raises:
        SchemaError: the frozen contract is for another target or task.
    """
    if not path.is_file():
        return None
    schema = Schema.load(path)
    for name, have, value in (("target", schema.target, target), ("task", schema.task, task)):
        if have != value:
            raise SchemaError(
                f"the frozen contract {path} is for {name} {have!r}, this run has "
                f"{value!r}; pass -p refreeze_schema true to replace it on purpose",
                column=target,
            )
    return schema

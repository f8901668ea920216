"""The frozen schema contract: inferred once from the training split, enforced everywhere after.

``schema.json`` lists the model's features in input order, each numeric (with the observed range)
or categorical (with its categories, whose position is the integer code the model is trained on
and the compiled library receives). A category not in the list, or a missing value, becomes NaN:
the trees send it down their learned default branch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from opsnb.errors import SchemaError

SCHEMA_VERSION = 1
FLOAT32_MAX = float(np.finfo(np.float32).max)


def is_id_like(series: pd.Series) -> bool:
    """True for text or integer columns whose values are all distinct (row identifiers)."""
    kind = series.dtype.kind
    text = kind in "OSU" or isinstance(series.dtype, pd.StringDtype)
    return bool((text or kind in "iu") and len(series) > 1 and series.is_unique)


def infer_schema(
    frame: pd.DataFrame, *, target: str, task: str, timestamp: str | None = None
) -> dict[str, Any]:
    """Infer the contract from ``frame`` (the training split): features, kinds, ranges, categories.

    The target, the timestamp and ID-like columns are recorded but are not features.
    """
    if target not in frame.columns:
        columns = ", ".join(map(str, frame.columns))
        raise SchemaError(
            f"target column {target!r} not found; columns are: {columns}",
            column=target,
        )
    ids = [c for c in frame.columns if c not in (target, timestamp) and is_id_like(frame[c])]
    features: list[dict[str, Any]] = []
    for name in frame.columns:
        if name in (target, timestamp) or name in ids:
            continue
        column = frame[name]
        entry: dict[str, Any] = {"name": str(name), "nullable": bool(column.isna().any())}
        if isinstance(column.dtype, pd.CategoricalDtype) or column.dtype.kind in "OSUb":
            categories = (
                list(column.cat.categories)
                if isinstance(column.dtype, pd.CategoricalDtype)
                else sorted(column.dropna().astype(str).unique())
            )
            entry.update(kind="categorical", categories=[str(v) for v in categories])
        else:
            numbers = pd.to_numeric(column, errors="raise")
            entry.update(kind="numeric", min=float(numbers.min()), max=float(numbers.max()))
        features.append(entry)
    return {
        "version": SCHEMA_VERSION,
        "task": task,
        "target": target,
        "timestamp": timestamp,
        "ids": ids,
        "features": features,
    }


def feature_names(schema: dict[str, Any]) -> list[str]:
    """The model's input columns, in order."""
    return [f["name"] for f in schema["features"]]


def feature_types(schema: dict[str, Any]) -> list[str]:
    """XGBoost feature types in input order: ``"q"`` numeric, ``"c"`` categorical."""
    return ["c" if f["kind"] == "categorical" else "q" for f in schema["features"]]


def to_matrix(frame: pd.DataFrame, schema: dict[str, Any]) -> np.ndarray:
    """Return the float32 model input for ``frame``: columns in schema order, categories as codes.

    Columns are found by name in any order; extra columns are ignored. An unknown category or a
    missing value becomes NaN.

    Raises:
        SchemaError: a feature column is missing.
    """
    missing = [n for n in feature_names(schema) if n not in frame.columns]
    if missing:
        raise SchemaError(
            f"input lacks feature column(s) {', '.join(map(repr, missing))} "
            "required by schema.json",
            column=missing[0],
        )
    out = np.empty((len(frame), len(schema["features"])), dtype=np.float32)
    for j, feature in enumerate(schema["features"]):
        column = frame[feature["name"]]
        if feature["kind"] == "categorical":
            codes = {c: i for i, c in enumerate(feature["categories"])}
            mapped = column.astype("object").map(
                lambda v, codes=codes: codes.get(str(v), np.nan) if pd.notna(v) else np.nan
            )
            out[:, j] = mapped.to_numpy(dtype=np.float32, na_value=np.nan)
        else:
            out[:, j] = pd.to_numeric(column, errors="coerce").to_numpy(
                dtype=np.float32, na_value=np.nan
            )
    return out


def target_vector(frame: pd.DataFrame, schema: dict[str, Any]) -> np.ndarray:
    """Return the label column as float64."""
    labels: np.ndarray = frame[schema["target"]].to_numpy(dtype=np.float64)
    return labels


def describe(schema: dict[str, Any]) -> str:
    """The contract as plain text, one feature a line (stable: nbval checks it)."""
    lines = [
        f"target: {schema['target']} ({schema['task']})",
        f"timestamp: {schema['timestamp']}",
        f"ids: {', '.join(schema['ids']) or '-'}",
    ]
    for f in schema["features"]:
        null = "nullable" if f["nullable"] else "required"
        if f["kind"] == "categorical":
            lines.append(f"{f['name']}: categorical, {null}, {len(f['categories'])} categories")
        else:
            lines.append(f"{f['name']}: numeric, {null}")
    return "\n".join(lines)

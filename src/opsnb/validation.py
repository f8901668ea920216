"""Inferring the schema contract from the training split, and checking rows against it.

:func:`infer_schema` turns the training split into a :class:`~opsnb.schema.Schema`: each feature
numeric (with the observed range ``min``/``max`` and the accepted range ``lower``/``upper``,
widened by ``range_tolerance`` of the span) or categorical (with its categories). Whether a row
with an unseen category is accepted at all is the contract's ``unknown_categories`` (``reject``
or ``allow``). Columns that must not be features are recorded with why in ``excluded``:
identifiers, constant columns, and columns that (nearly) copy the target.

The contract is checked with pandera (:func:`pandera_schema`); :func:`violations` names the one
reason each bad row is refused for. The typed schema itself, encoding rows for the model and
the frozen contract live in :mod:`opsnb.schema`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors
from sklearn.metrics import roc_auc_score

from opsnb import config
from opsnb.errors import ConfigError, SchemaError
from opsnb.schema import (
    CATEGORICAL,
    FLOAT32_MAX,
    NUMERIC,
    SCHEMA_VERSION,
    UNKNOWN_POLICIES,
    Feature,
    Kind,
    Schema,
)

NUMERIC_SHARE = 0.9
"""A column whose present values parse as numbers at least this often is numeric."""
REASONS = (
    "label missing",
    "wrong type",
    "missing required value",
    "out of range",
    "unknown category",
    "duplicate row",
)
"""Quarantine reasons, in priority order: a row breaking several rules gets the first."""
_PANDERA_REASONS = {"not_nullable": REASONS[2], "in_range": REASONS[3], "isin": REASONS[4]}


# -- column kinds and guards -------------------------------------------------------------------
def _is_text(series: pd.Series) -> bool:
    return series.dtype.kind in "OSU" or isinstance(series.dtype, pd.StringDtype)


def _numeric_share(series: pd.Series) -> float:
    present = series.dropna()
    if present.empty:
        return 1.0
    return float(pd.to_numeric(present, errors="coerce").notna().mean())


def column_kind(series: pd.Series) -> Kind:
    """``"numeric"`` or ``"categorical"``: text that is mostly numbers is numeric (with typos)."""
    if isinstance(series.dtype, pd.CategoricalDtype) or series.dtype.kind == "b":
        return CATEGORICAL
    if _is_text(series):
        return NUMERIC if _numeric_share(series) >= NUMERIC_SHARE else CATEGORICAL
    return NUMERIC


def is_id_like(series: pd.Series) -> bool:
    """True for row identifiers: integers all distinct, or text (not numbers) >= 95 % distinct."""
    if len(series) < 2:
        return False
    if series.dtype.kind in "iu":
        return bool(series.is_unique)
    if _is_text(series) and column_kind(series) == "categorical":
        return bool(series.nunique() >= 0.95 * len(series))
    return False


def leakage(
    frame: pd.DataFrame,
    *,
    target: str,
    task: str,
    kinds: Mapping[str, str],
    threshold: float = 0.99,
) -> dict[str, str]:
    """Columns that nearly copy the target, each with the evidence.

    A numeric column leaks when it alone ranks the labels (binary: AUC or 1 - AUC) or the
    values (regression: Spearman |rho|) at ``threshold`` or better; a categorical one when its
    categories alone explain the target that well (binary: purity; regression: R² of the
    category means) while having fewer categories than a tenth of the rows.
    """
    found: dict[str, str] = {}
    y = pd.to_numeric(frame[target], errors="coerce")
    for name, kind in kinds.items():
        ok = y.notna() & frame[name].notna()
        if ok.sum() < 10:
            continue
        x, yy = frame.loc[ok, name], y[ok]
        if kind == NUMERIC:
            x = pd.to_numeric(x, errors="coerce")
            if task == "binary":
                if yy.nunique() < 2:
                    continue
                auc = float(roc_auc_score(yy, x.fillna(x.median())))
                value, measure = max(auc, 1 - auc), "AUC"
            else:
                value, measure = abs(float(x.corr(yy, method="spearman"))), "Spearman |rho|"
        else:
            groups = x.astype(str)
            if groups.nunique() > 0.1 * len(groups):
                continue
            means = yy.groupby(groups).transform("mean")
            if task == "binary":
                value, measure = float(((means >= 0.5) == (yy >= 0.5)).mean()), "purity"
            else:
                total = float(((yy - yy.mean()) ** 2).sum()) or 1.0
                value, measure = 1 - float(((yy - means) ** 2).sum()) / total, "R²"
        if value >= threshold:
            found[name] = f"leaks the target ({measure} {value:.3f} >= {threshold})"
    return found


# -- inference ---------------------------------------------------------------------------------
def infer_schema(
    frame: pd.DataFrame,
    *,
    target: str,
    task: str,
    timestamp: str | None = None,
    range_tolerance: float = config.RANGE_TOLERANCE,
    unknown_categories: str = "reject",
    label_mapping: dict[str, int] | None = None,
    leakage_threshold: float = 0.99,
) -> Schema:
    """Infer the contract from ``frame`` (the training split): features, kinds, ranges, categories.

    The target, the timestamp, ID-like, constant and target-leaking columns are recorded but are
    not features (``ids`` and ``excluded`` say which and why).
    """
    if target not in frame.columns:
        columns = ", ".join(map(str, frame.columns))
        raise SchemaError(
            f"target column {target!r} not found; columns are: {columns}", column=target
        )
    if unknown_categories not in UNKNOWN_POLICIES:
        raise ConfigError(
            f"unknown_categories {unknown_categories!r} is not a policy; expected one of "
            f"{', '.join(UNKNOWN_POLICIES)}"
        )
    candidates = [str(c) for c in frame.columns if c not in (target, timestamp)]
    ids = [c for c in candidates if is_id_like(frame[c])]
    excluded = dict.fromkeys(ids, "identifier (distinct in nearly every row)")
    for name in candidates:
        if name not in excluded and frame[name].nunique(dropna=False) <= 1:
            excluded[name] = f"constant (every value is {frame[name].iloc[0]!r})"
    kinds = {c: column_kind(frame[c]) for c in candidates if c not in excluded}
    excluded.update(
        leakage(frame, target=target, task=task, kinds=kinds, threshold=leakage_threshold)
    )
    features = [
        _feature(frame[name], kind, range_tolerance)
        for name, kind in kinds.items()
        if name not in excluded
    ]
    if not features:
        raise SchemaError(
            f"no usable feature column: every column is the target, the timestamp or excluded "
            f"({'; '.join(f'{k}: {v}' for k, v in excluded.items()) or 'no other columns'})"
        )
    return Schema(
        version=SCHEMA_VERSION,
        task=task,
        target=target,
        timestamp=timestamp,
        ids=tuple(ids),
        features=tuple(features),
        excluded=excluded,
        range_tolerance=range_tolerance,
        unknown_categories=unknown_categories,
        label_mapping=label_mapping,
    )


def _feature(column: pd.Series, kind: Kind, tolerance: float) -> Feature:
    name, nullable, dtype = str(column.name), bool(column.isna().any()), str(column.dtype)
    if kind == CATEGORICAL:
        categories = (
            list(column.cat.categories)
            if isinstance(column.dtype, pd.CategoricalDtype)
            else sorted(column.dropna().astype(str).unique())
        )
        return Feature(name, kind, nullable, dtype, categories=tuple(str(v) for v in categories))
    numbers = pd.to_numeric(column, errors="coerce")
    low, high = float(numbers.min()), float(numbers.max())
    margin = tolerance * (high - low)
    return Feature(
        name,
        kind,
        nullable,
        dtype,
        min=low,
        max=high,
        lower=max(low - margin, -FLOAT32_MAX),
        upper=min(high + margin, FLOAT32_MAX),
    )


# -- checking rows ------------------------------------------------------------------------
def pandera_schema(schema: Schema) -> pa.DataFrameSchema:
    """The contract's row checks as a pandera schema (features only; types are coerced first)."""
    columns: dict[str, pa.Column] = {}
    reject_unknown = schema.unknown_categories == "reject"
    for f in schema.features:
        checks = []
        if not f.is_categorical:
            lower, upper = f.accepted_range
            if lower is not None and upper is not None:
                checks.append(pa.Check.in_range(lower, upper))
        elif reject_unknown:
            checks.append(pa.Check.isin(list(f.categories)))
        columns[f.name] = pa.Column(checks=checks, nullable=f.nullable)
    return pa.DataFrameSchema(columns, strict=False, coerce=False)


def coerce(frame: pd.DataFrame, schema: Schema) -> tuple[pd.DataFrame, pd.Series]:
    """Return ``frame`` with numeric features as float64, and each row's first mistyped column.

    A value that is present but does not parse as a number in a numeric feature is a type
    error; it becomes NaN in the returned frame. The Series holds the column name or NA.

    Raises:
        SchemaError: a feature column is missing altogether.
    """
    schema.require_columns(frame)
    out = frame.copy()
    mistyped = pd.Series(pd.NA, index=frame.index, dtype="object")
    for f in schema.features:
        if f.is_categorical:
            continue
        column = frame[f.name]
        numbers = pd.to_numeric(column, errors="coerce").astype(np.float64)
        bad = column.notna() & numbers.isna()
        mistyped[bad & mistyped.isna()] = f.name
        out[f.name] = numbers
    return out, mistyped


def violations(frame: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """Each row that breaks the contract, with one reason and the column: index-aligned.

    Returns a frame with columns ``reason`` and ``column`` (NA for conforming rows). Reasons are
    ``wrong type``, ``missing required value``, ``out of range`` and ``unknown category``
    (rejected only when the contract's ``unknown_categories`` is ``reject``).
    """
    coerced, mistyped = coerce(frame, schema)
    found = pd.DataFrame({"reason": pd.NA, "column": mistyped}, index=frame.index, dtype="object")
    found.loc[mistyped.notna(), "reason"] = "wrong type"
    checked = coerced[schema.feature_names].reset_index(drop=True)
    try:
        pandera_schema(schema).validate(checked, lazy=True)
    except SchemaErrors as exc:
        cases = exc.failure_cases.dropna(subset=["index"])
        cases = cases.assign(
            reason=cases["check"].astype(str).str.split("(").str[0].map(_PANDERA_REASONS)
        ).dropna(subset=["reason"])
        cases = cases.assign(rank=cases["reason"].map(REASONS.index)).sort_values("rank")
        first = cases.drop_duplicates("index")
        rows = frame.index[first["index"].astype(int).to_numpy()]
        free = found.loc[rows, "reason"].isna().to_numpy()
        found.loc[rows[free], "reason"] = first["reason"].to_numpy()[free]
        found.loc[rows[free], "column"] = first["column"].to_numpy()[free]
    return found

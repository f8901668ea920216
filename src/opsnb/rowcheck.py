"""Every row of a batch checked against the frozen schema and encoded for the model, in one pass.

Batch scoring sees millions of rows: the contract check must cost about what encoding costs, so
it works column-wise on Arrow arrays (categories looked up in C with ``pyarrow.compute``, ranges
compared on numpy arrays) instead of row by row. The rules are those of
:func:`opsnb.validation.violations` (a test holds the two to the same answers):

- ``wrong type``: a numeric feature holds text that is not a number;
- ``missing required value``: a feature the schema marks required is missing;
- ``out of range``: a number outside the accepted ``[lower, upper]`` (infinity included: compiled
  trees would score it silently);
- ``unknown category``: a category the schema does not list, when its ``unknown_categories``
  is ``reject`` (with ``allow`` the model sees a missing value, as in :func:`to_matrix`).

A row breaking several rules gets the first of these reasons, and within a reason the first
feature in schema order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from opsnb.schema import Schema

REASONS = ("wrong type", "missing required value", "out of range", "unknown category")
_NONE = len(REASONS)


@dataclass
class Checked:
    """The outcome of :func:`check_rows` on one batch.

    Attributes:
        matrix: float32 model input of the conforming rows, features in schema order.
        ok: one flag per input row: True when it conforms.
        reason: per refused row (in input order) its reason.
        column: per refused row the feature that broke the rule.
        value: per refused row that feature's value, as text (``None`` when missing).
    """

    matrix: np.ndarray
    ok: np.ndarray
    reason: list[str]
    column: list[str]
    value: list[str | None]

    @property
    def refused(self) -> np.ndarray:
        """Positions of the refused rows in the batch."""
        return np.flatnonzero(~self.ok)


def _text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_dictionary(column.type):
        return column.cast(column.type.value_type)
    return column


def _numbers(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Float64 values (NaN where missing) and the rows holding something that is not a number."""
    kind = column.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        values = column.cast(pa.float64()).to_numpy()
        return values, np.zeros(len(values), bool)
    if pa.types.is_boolean(kind):
        values = column.cast(pa.uint8()).cast(pa.float64()).to_numpy()
        return values, np.zeros(len(values), bool)
    column = _text(column)
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        raw = pd.Series(column.to_numpy(zero_copy_only=False), dtype=object)
        values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        return values, raw.notna().to_numpy() & np.isnan(values)
    # dates, lists, binary ...: not a number in any row that holds a value
    present = column.is_valid().to_numpy(zero_copy_only=False)
    return np.full(len(column), np.nan), present


def category_codes(column: pa.ChunkedArray, categories: list[str] | tuple[str, ...]) -> np.ndarray:
    """Each value's position in ``categories``; -1 for a missing or unknown one."""
    lookup = pa.array(list(categories), pa.string())
    kind = column.type
    if pa.types.is_dictionary(kind) and pa.types.is_string(kind.value_type):
        parts = []
        for chunk in column.chunks:  # look up the dictionary once, then gather by index
            known = pc.fill_null(pc.index_in(chunk.dictionary, value_set=lookup), -1).to_numpy()
            known = np.append(known, -1)  # a null index points past the dictionary
            index = pc.fill_null(chunk.indices, len(chunk.dictionary)).to_numpy()
            parts.append(known[index.astype(np.int64)])
        return np.concatenate(parts) if parts else np.empty(0, np.int32)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        codes = pc.fill_null(pc.index_in(column, value_set=lookup), -1)
        return np.asarray(codes.to_numpy())
    # numbers or booleans as categories: compare as to_matrix does, through pandas' text form
    text = pd.Index(pd.Series(column.to_pandas()).astype("string"))
    return np.asarray(pd.Index(list(categories)).get_indexer(text))


def check_rows(table: pa.Table, schema: Schema) -> Checked:
    """Check ``table`` against ``schema`` and encode its conforming rows (see the module doc).

    ``table`` holds every feature column (others are ignored); types may be the training
    types, dictionary-encoded text, or text throughout (CSV).
    """
    n = table.num_rows
    features = schema.features
    reject_unknown = schema.unknown_categories == "reject"
    matrix = np.empty((n, len(features)), np.float32)
    rank = np.full(n, _NONE, np.int8)
    culprit = np.full(n, -1, np.int32)

    def mark(mask: np.ndarray, why: int, j: int) -> None:
        hit = mask & (rank > why)
        rank[hit] = why
        culprit[hit] = j

    for j, feature in enumerate(features):
        column = table.column(feature.name)
        required = not feature.nullable
        if feature.is_categorical:
            codes = category_codes(column, feature.categories)
            missing = column.is_null().to_numpy(zero_copy_only=False)
            if required:
                mark(missing, 1, j)
            if reject_unknown:
                mark((codes < 0) & ~missing, 3, j)
            out = codes.astype(np.float32)
            out[codes < 0] = np.nan
            matrix[:, j] = out
            continue
        values, mistyped = _numbers(column)
        missing = np.isnan(values)
        mark(mistyped, 0, j)
        if required:
            mark(missing & ~mistyped, 1, j)
        lower, upper = feature.accepted_range
        lower = -np.inf if lower is None else lower
        upper = np.inf if upper is None else upper
        with np.errstate(invalid="ignore"):
            mark((values < lower) | (values > upper), 2, j)
            with np.errstate(over="ignore"):
                matrix[:, j] = values
    ok = rank == _NONE
    bad = np.flatnonzero(~ok)
    reasons = [REASONS[r] for r in rank[bad]]
    columns = [features[c].name for c in culprit[bad]]
    values_out: list[str | None] = [None] * len(bad)
    for j in np.unique(culprit[bad]):
        at = np.flatnonzero(culprit[bad] == j)
        taken = table.column(features[j].name).take(pa.array(bad[at])).to_pylist()
        for k, v in zip(at, taken, strict=True):
            values_out[k] = None if v is None else str(v)
    return Checked(matrix[ok] if bad.size else matrix, ok, reasons, columns, values_out)

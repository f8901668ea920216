"""Golden edge rows and the two references every compiled model is held to.

The compiled library must predict what XGBoost's ``Booster.predict`` and Treelite's reference
interpreter (``treelite.gtil.predict``) predict, on the test split and on rows built to hit the
edges where engines disagree: a missing value in each feature and in all at once, an unseen
category code, the ends of the float32 range, both zeros, and values one float32 step either side
of each split threshold (``x < t`` must go the same way everywhere).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import treelite
import xgboost as xgb

from opsnb.parity import DEFAULT_TOLERANCE, check_parity, parity_report
from opsnb.schema import FLOAT32_MAX, Schema

AT_THRESHOLDS_PER_FEATURE = 256
"""Thresholds tried exactly per feature (all of them for XGBoost's default 256 histogram bins)."""

AROUND_THRESHOLDS_PER_FEATURE = 6
"""Thresholds also tried one float32 step below and above, spread over the sorted thresholds."""


def split_thresholds(model: treelite.Model) -> dict[int, list[float]]:
    """The distinct numeric split thresholds of ``model``, by feature index, sorted."""
    found: dict[int, set[float]] = {}
    for tree in json.loads(model.dump_as_json())["trees"]:
        for node in tree["nodes"]:
            if node.get("node_type") == "numerical_test_node":
                found.setdefault(node["split_feature_id"], set()).add(node["threshold"])
    return {fid: sorted(values) for fid, values in found.items()}


def edge_rows(
    model: treelite.Model, schema: Schema, base: np.ndarray
) -> tuple[np.ndarray, list[str]]:
    """Build the golden edge rows from a real ``base`` row (1-D, schema order).

    Returns:
        The rows (float32, one per edge) and a label per row naming the edge it tests.
    """
    base = np.asarray(base, np.float32).ravel()
    rows: list[np.ndarray] = [base.copy(), np.full_like(base, np.nan)]
    labels = ["base row", "NaN in every feature"]

    def vary(j: int, value: float, label: str) -> None:
        row = base.copy()
        row[j] = value
        rows.append(row)
        labels.append(f"{schema.features[j].name}: {label}")

    thresholds = split_thresholds(model)
    for j, feature in enumerate(schema.features):
        vary(j, np.nan, "NaN")
        if feature.is_categorical:
            vary(j, float(len(feature.categories)), "unseen category code")
            continue
        for value, label in [
            (0.0, "+0"),
            (-0.0, "-0"),
            (FLOAT32_MAX, "float32 max"),
            (-FLOAT32_MAX, "float32 lowest"),
        ]:
            vary(j, value, label)
        cuts = np.asarray(thresholds.get(j, []), dtype=np.float32)
        for t in _spread(cuts, AT_THRESHOLDS_PER_FEATURE):
            vary(j, float(t), f"at split {_text(t)}")
        for t in _spread(cuts, AROUND_THRESHOLDS_PER_FEATURE):
            vary(j, float(np.nextafter(t, np.float32(-np.inf))), f"just below split {_text(t)}")
            vary(j, float(np.nextafter(t, np.float32(np.inf))), f"just above split {_text(t)}")
    return np.vstack(rows).astype(np.float32), labels


def xgboost_predict(booster: xgb.Booster, rows: np.ndarray, schema: Schema) -> np.ndarray:
    """``Booster.predict`` on float32 rows in schema order (category codes split as categories)."""
    matrix = xgb.DMatrix(
        rows,
        feature_names=schema.feature_names,
        feature_types=schema.feature_types,
        enable_categorical=True,
        missing=np.nan,
    )
    return np.asarray(booster.predict(matrix), np.float64).ravel()


def gtil_predict(model: treelite.Model, rows: np.ndarray) -> np.ndarray:
    """Treelite's reference interpreter on float32 rows."""
    return np.asarray(treelite.gtil.predict(model, rows), np.float64).ravel()


def prove_parity(
    compiled: Callable[[np.ndarray], np.ndarray],
    *,
    booster: xgb.Booster,
    model: treelite.Model,
    schema: Schema,
    sample: np.ndarray,
    tolerance: float = DEFAULT_TOLERANCE,
) -> dict[str, Any]:
    """Hold ``compiled`` to both references on ``sample`` (the test split) and the golden rows.

    Returns:
        ``{"golden": {rows, expected, labels}, "reports": [...]}``: four passed reports
        (test split and golden rows, each against XGBoost and Treelite GTIL).

    Raises:
        ParityError: a report failed; its message names the worst row.
    """
    sample = np.ascontiguousarray(sample, np.float32)
    golden, labels = edge_rows(model, schema, sample[0] if len(sample) else _zeros(schema))
    expected = xgboost_predict(booster, golden, schema)
    reports = []
    for name, rows, row_labels, xgb_out in [
        ("test split", sample, None, xgboost_predict(booster, sample, schema)),
        ("golden rows", golden, labels, expected),
    ]:
        got = compiled(rows)
        for label, reference in [
            ("xgboost", xgb_out),
            ("treelite.gtil", gtil_predict(model, rows)),
        ]:
            report = parity_report(
                reference, got, tolerance=tolerance, label=label, row_labels=row_labels
            )
            report["rows_compared"] = name
            reports.append(check_parity(report))
    return {"golden": {"rows": golden, "expected": expected, "labels": labels}, "reports": reports}


def _text(value: np.float32) -> str:
    """The shortest text that reads back as the same float32."""
    return np.format_float_positional(value, unique=True, trim="-")


def _spread(values: np.ndarray, count: int) -> np.ndarray:
    """Up to ``count`` of ``values`` (sorted), evenly spread, both ends included."""
    if len(values) <= count:
        return values
    picked: np.ndarray = values[np.unique(np.linspace(0, len(values) - 1, count).astype(int))]
    return picked


def _zeros(schema: Schema) -> np.ndarray:
    return np.zeros(len(schema.features), np.float32)

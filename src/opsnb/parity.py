"""The parity contract: compiled predictions must equal a reference's within a tolerance.

Numpy only, so both sides use it: the compiler when it builds a bundle, and the predictor when it
loads one (``golden.json`` travels in the bundle). A report names the worst row; a failed report
stops whoever asked for it with :class:`~opsnb.errors.ParityError`.

``golden.json`` holds edge rows as lists in schema order, a missing value as ``null`` (JSON has no
NaN), with the expected output of each row and a label saying what the row tests.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from opsnb.artifacts import read_json, write_json
from opsnb.errors import ArtifactError, ParityError

DEFAULT_TOLERANCE = 1e-5
"""Max difference allowed in output space, relative to the output's size once it passes 1.

A probability is compared absolutely (|diff| <= 1e-5). A regression value of 150 summed over a
few hundred trees in float32 carries rounding of about 1e-4 whatever the engine, so there the
difference is measured against |reference|: |diff| <= 1e-5 * max(1, |reference|).
"""


def parity_report(
    reference: np.ndarray,
    compiled: np.ndarray,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    label: str = "xgboost",
    row_labels: list[str] | None = None,
) -> dict[str, Any]:
    """Compare two prediction vectors and name the worst row.

    Args:
        reference: what the reference engine predicted, one value per row.
        compiled: what the compiled library predicted for the same rows.
        tolerance: the largest difference that still passes, absolute for outputs within
            [-1, 1] and relative to |reference| beyond (see :data:`DEFAULT_TOLERANCE`).
        label: the reference's name, for the report and its error.
        row_labels: what each row is (golden rows say which edge they test).

    Returns:
        A JSON-ready dict: rows, max_abs_diff, worst_row (and its label), passed.
    """
    ref = np.asarray(reference, np.float64).ravel()
    got = np.asarray(compiled, np.float64).ravel()
    if ref.shape != got.shape:
        raise ParityError(
            f"{label} gave {ref.size} predictions but the compiled library gave {got.size}; "
            "both must score the same rows"
        )
    diff = np.abs(ref - got)
    # A NaN on either side is a failure, never a pass: nan > tolerance is False, so map it to inf.
    diff[np.isnan(diff)] = np.inf
    scaled = diff / np.maximum(1.0, np.nan_to_num(np.abs(ref), nan=1.0))
    worst = int(np.argmax(scaled)) if diff.size else -1
    report: dict[str, Any] = {
        "reference": label,
        "rows": int(diff.size),
        "max_abs_diff": float(diff.max()) if diff.size else 0.0,
        "max_scaled_diff": float(scaled[worst]) if diff.size else 0.0,
        "worst_row": worst,
        "tolerance": tolerance,
        "passed": bool(diff.size and scaled[worst] <= tolerance),
    }
    if diff.size:
        report["worst_reference"] = float(ref[worst])
        report["worst_compiled"] = float(got[worst])
        if row_labels is not None:
            report["worst_label"] = row_labels[worst]
    return report


def check_parity(report: dict[str, Any]) -> dict[str, Any]:
    """Return ``report`` if it passed; otherwise raise :class:`ParityError` naming the worst row."""
    if not report["passed"]:
        what = f" ({report['worst_label']})" if "worst_label" in report else ""
        gap = abs(report["worst_compiled"] - report["worst_reference"])
        raise ParityError(
            f"compiled predictions differ from {report['reference']} by "
            f"{gap:.3g} at row {report['worst_row']}{what}: "
            f"{report.get('worst_compiled')} vs {report.get('worst_reference')} "
            f"(tolerance {report['tolerance']:g}, {report['rows']} rows compared); "
            "the compiled library must not be used: recompile, or report the model"
        )
    return report


def write_golden(
    path: str | os.PathLike[str],
    rows: np.ndarray,
    expected: np.ndarray,
    *,
    labels: list[str],
    tolerance: float = DEFAULT_TOLERANCE,
) -> None:
    """Write golden rows (float32, NaN for missing) with their expected outputs."""
    matrix = np.asarray(rows, np.float32)
    encoded = [[None if math.isnan(v) else float(v) for v in row] for row in matrix.tolist()]
    write_json(
        path,
        {
            "rows": encoded,
            "expected": [float(v) for v in np.asarray(expected, np.float64)],
            "labels": list(labels),
            "tolerance": tolerance,
        },
    )


def read_golden(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Read ``golden.json``: the rows as float32, the expected outputs, and the whole document."""
    doc: dict[str, Any] = read_json(path)
    rows, expected = golden_arrays(doc, where=os.fspath(path))
    return rows, expected, doc


def golden_arrays(doc: Mapping[str, Any], *, where: str) -> tuple[np.ndarray, np.ndarray]:
    """The rows (float32, NaN for ``null``) and expected outputs of a parsed ``golden.json``.

    Raises:
        ArtifactError: ``doc`` is not a golden document (``where`` names it).
    """
    try:
        rows = np.array(
            [[np.nan if v is None else v for v in row] for row in doc["rows"]], dtype=np.float32
        )
        expected = np.asarray(doc["expected"], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(
            f"{where} is not a golden file: {exc}; expected keys rows, expected, labels",
            path=where,
        ) from exc
    return rows, expected


def summary(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One verdict over several parity reports: passed only if all did; the worst difference."""
    worst = max(reports, key=lambda r: r["max_abs_diff"])
    return {
        "passed": all(r["passed"] for r in reports),
        "max_abs_diff": worst["max_abs_diff"],
        "worst_reference": worst["reference"],
        "tolerance": max(r["tolerance"] for r in reports),
        "rows": sum(r["rows"] for r in reports),
        "reports": reports,
    }

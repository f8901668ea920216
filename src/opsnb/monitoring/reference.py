"""The training reference the monitor compares live traffic with, computed once per bundle.

``reference.json`` travels in the bundle (hashed in its manifest), so the monitor needs no
training data. Per feature it holds the missing share and, for a numeric feature, a fine grid
(the unique values when there are few, else 201 quantiles) with the training CDF at each grid
point: a window's values are counted into the same grid, which gives the Kolmogorov–Smirnov
statistic (at the grid's resolution), the PSI bins (grid bins merged to about a tenth of the
training mass each) and the histograms the plots draw, all from counts that add up chunk by
chunk. A categorical feature holds its category shares. The prediction's distribution on the
training split is kept like a numeric feature. For a binary model, the isotonic map from score
to observed frequency on the trusted holdout calibrates the performance estimate (CBPE).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from opsnb.errors import ConfigError
from opsnb.monitoring.checker import fit_checker, plain
from opsnb.schema import Schema, target_vector, to_matrix

FORMAT = "opsnb-reference/1"
GRID_POINTS = 201
"""Quantiles kept for a numeric feature with many distinct values (every 0.5 % of the mass)."""
PSI_BIN_MASS = 0.1
"""Grid bins are merged into PSI bins of at least this training mass (deciles when continuous)."""


def numeric_summary(values: np.ndarray) -> dict[str, Any]:
    """Grid, CDF, fine-bin shares and PSI bin map of one numeric column (NaN = missing)."""
    x = np.asarray(values, dtype=np.float64)
    missing = np.isnan(x)
    ok = np.sort(x[~missing])
    if ok.size == 0:
        grid = np.zeros(1)
    else:
        unique = np.unique(ok)
        grid = (
            unique
            if unique.size <= GRID_POINTS
            else np.unique(np.quantile(ok, np.linspace(0, 1, GRID_POINTS)))
        )
    # fine bin i holds values in (grid[i-1], grid[i]]; bin len(grid) holds values above the max
    counts = np.bincount(np.searchsorted(grid, ok, side="left"), minlength=grid.size + 1)
    shares = counts / max(ok.size, 1)
    return {
        "missing_share": float(missing.mean()) if x.size else 0.0,
        "rows": int(x.size),
        "grid": grid.tolist(),
        "cdf": np.cumsum(shares)[:-1].tolist(),
        "shares": shares.tolist(),
        "psi_map": psi_map(shares).tolist(),
        "mean": float(ok.mean()) if ok.size else None,
        "std": float(ok.std()) if ok.size else None,
    }


def psi_map(shares: np.ndarray, *, mass: float = PSI_BIN_MASS) -> np.ndarray:
    """Map each fine bin to a PSI bin: consecutive bins merged until each holds ``mass``.

    The last (above the training maximum) bin always joins the bin before it, so values past
    the training range count in the top bin, as for deciles.
    """
    out = np.zeros(len(shares), dtype=np.int64)
    current, filled = 0, 0.0
    for i, share in enumerate(shares[:-1]):
        out[i] = current
        filled += share
        if filled >= mass - 1e-12 and i < len(shares) - 2:
            current, filled = current + 1, 0.0
    if len(shares) >= 2 and filled < mass / 2 and current > 0:
        out[out == current] = current - 1  # a thin last bin joins its neighbour
    out[-1] = out[-2] if len(shares) >= 2 else 0
    return out


def categorical_summary(codes: np.ndarray, categories: list[str]) -> dict[str, Any]:
    """Category shares (by code, NaN = missing) of one categorical column."""
    x = np.asarray(codes, dtype=np.float64)
    missing = np.isnan(x)
    ok = x[~missing].astype(np.int64)
    counts = np.bincount(ok, minlength=len(categories))[: len(categories)]
    return {
        "missing_share": float(missing.mean()) if x.size else 0.0,
        "rows": int(x.size),
        "categories": [str(c) for c in categories],
        "shares": (counts / max(ok.size, 1)).tolist(),
    }


def calibration_map(scores: np.ndarray, labels: np.ndarray) -> dict[str, list[float]]:
    """Isotonic map from a binary model's score to the observed positive frequency.

    Fitted on the trusted holdout: the model's probabilities are only as good as its
    calibration, and CBPE's estimate is only as good as the probabilities it is given.
    """
    from sklearn.isotonic import IsotonicRegression  # noqa: PLC0415 - only when building a bundle

    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
    iso.fit(np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.float64))
    return {"x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()}


def build_reference(
    matrix: np.ndarray,
    schema: Schema | dict[str, Any],
    predictions: np.ndarray,
    *,
    trusted_scores: np.ndarray | None = None,
    trusted_labels: np.ndarray | None = None,
) -> dict[str, Any]:
    """The reference of a training split: per-feature summaries and the prediction's.

    Args:
        matrix: the training rows in schema order (categories as codes, NaN missing).
        schema: the frozen schema (feature names, kinds, categories, task).
        predictions: the model's outputs on those rows.
        trusted_scores: the model's outputs on the trusted holdout (binary: calibration).
        trusted_labels: the trusted holdout's labels.
    """
    schema = plain(schema)
    features = schema["features"]
    if matrix.ndim != 2 or matrix.shape[1] != len(features):
        raise ConfigError(
            f"reference matrix has shape {matrix.shape}; expected (rows, {len(features)}) in "
            "schema order (use validation.to_matrix)"
        )
    summaries = []
    for j, feature in enumerate(features):
        if feature["kind"] == "categorical":
            summary = categorical_summary(matrix[:, j], list(feature["categories"]))
        else:
            summary = numeric_summary(matrix[:, j])
        summaries.append({"name": feature["name"], "kind": feature["kind"], **summary})
    reference: dict[str, Any] = {
        "format": FORMAT,
        "task": schema["task"],
        "rows": int(matrix.shape[0]),
        "features": summaries,
        "prediction": numeric_summary(np.asarray(predictions, dtype=np.float64)),
        "calibration": None,
    }
    if schema["task"] == "binary" and trusted_scores is not None and trusted_labels is not None:
        reference["calibration"] = calibration_map(trusted_scores, trusted_labels)
        reference["trusted_rows"] = len(trusted_labels)
    return reference


def check_reference(reference: Any, schema: Schema | dict[str, Any]) -> dict[str, Any]:
    """Return ``reference`` after checking it describes ``schema``'s features."""
    schema = plain(schema)
    if not isinstance(reference, dict) or reference.get("format") != FORMAT:
        found = reference.get("format") if isinstance(reference, dict) else type(reference)
        raise ConfigError(
            f"reference.json has format {found!r}; expected {FORMAT!r}: rebuild the bundle with "
            "the operationalize stage"
        )
    names = [f["name"] for f in reference["features"]]
    expected = [f["name"] for f in schema["features"]]
    if names != expected:
        raise ConfigError(
            f"reference.json describes features {names}; the schema has {expected}: the bundle "
            "is inconsistent, rebuild it"
        )
    return reference


def monitor_files(
    schema: Schema,
    train: pd.DataFrame,
    trusted: pd.DataFrame,
    predict: Callable[[np.ndarray], np.ndarray],
) -> dict[str, dict[str, Any]]:
    """``reference.json`` and ``checker.json`` for a bundle, from the splits and its predictor.

    ``predict`` is the compiled model's (float32 rows in schema order -> outputs), so the
    reference's prediction distribution is the served model's own.
    """
    x_train, x_trusted = to_matrix(train, schema), to_matrix(trusted, schema)
    y_train, y_trusted = target_vector(train, schema), target_vector(trusted, schema)
    served_train = np.asarray(predict(x_train), dtype=np.float64)
    served_trusted = np.asarray(predict(x_trusted), dtype=np.float64)
    reference = build_reference(
        x_train, schema, served_train, trusted_scores=served_trusted, trusted_labels=y_trusted
    )
    second = fit_checker(
        x_train, y_train, x_trusted, y_trusted, served_trusted=served_trusted, schema=schema
    )
    return {"reference.json": reference, "checker.json": second}

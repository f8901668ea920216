"""A second opinion: a model of another family that scores the same traffic as the served one.

The checker is a regularised linear model (logistic regression for a binary task, ridge for
regression) on standardised numeric features with missing-value indicators and one-hot
categories. It is fitted on the training split and, for a binary task, Platt-calibrated on the
trusted holdout. Being linear, it extrapolates where trees saturate, so the two disagree more
when traffic leaves the training distribution — before any label arrives.

Decision (documented in the README): the checker travels in the bundle as ``checker.json``
(plain numbers, no pickle), written by the operationalize stage beside ``reference.json`` and
hashed in the manifest, so the monitor scores with numpy alone and needs no training data. The
same file records the disagreement threshold (the 95th percentile of |served − checker| on the
trusted holdout) and the share of trusted rows past it: the rate a healthy window shows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from opsnb.errors import ConfigError
from opsnb.schema import Schema

FORMAT = "opsnb-checker/1"
DISAGREEMENT_QUANTILE = 0.95


def plain(schema: Schema | dict[str, Any]) -> dict[str, Any]:
    """``schema.json`` as a dict, from a :class:`~opsnb.schema.Schema` or the dict itself."""
    return schema.to_dict() if isinstance(schema, Schema) else schema


def _design(matrix: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """Model input: standardised numerics (missing -> mean), missing flags, one-hot codes."""
    x = np.asarray(matrix, dtype=np.float64)
    parts = []
    for j, column in enumerate(spec["columns"]):
        values = x[:, j]
        missing = np.isnan(values)
        if column["kind"] == "categorical":
            codes = np.where(missing, -1, values).astype(np.int64)
            width = len(column["categories"])
            onehot = codes[:, None] == np.arange(width)[None, :]
            parts.append(onehot.astype(np.float64))
        else:
            z = (np.where(missing, column["mean"], values) - column["mean"]) / column["scale"]
            parts.append(np.clip(z, -50.0, 50.0)[:, None])
        if column["has_missing"]:
            parts.append(missing.astype(np.float64)[:, None])
    return np.hstack(parts)


def _columns(matrix: np.ndarray, schema: dict[str, Any]) -> list[dict[str, Any]]:
    columns = []
    for j, feature in enumerate(schema["features"]):
        values = matrix[:, j].astype(np.float64)
        ok = values[~np.isnan(values)]
        column: dict[str, Any] = {
            "name": feature["name"],
            "kind": feature["kind"],
            "has_missing": bool(np.isnan(values).any()),
        }
        if feature["kind"] == "categorical":
            column["categories"] = [str(c) for c in feature["categories"]]
        else:
            column["mean"] = float(ok.mean()) if ok.size else 0.0
            column["scale"] = float(ok.std()) if ok.size and ok.std() > 0 else 1.0
        columns.append(column)
    return columns


def fit_checker(
    train: np.ndarray,
    y_train: np.ndarray,
    trusted: np.ndarray,
    y_trusted: np.ndarray,
    *,
    served_trusted: np.ndarray,
    schema: Schema | dict[str, Any],
    strength: float = 1.0,
) -> dict[str, Any]:
    """Fit the checker on the training split, calibrate and set its threshold on trusted rows.

    Args:
        train: training rows in schema order (categories as codes, NaN missing).
        y_train: training labels.
        trusted: trusted-holdout rows in schema order.
        y_trusted: trusted-holdout labels.
        served_trusted: the served model's outputs on the trusted rows.
        schema: the frozen schema.
        strength: L2 regularisation strength (``C = 1 / strength`` / ridge ``alpha``).

    Returns:
        The checker as a JSON-ready dict (see :func:`score_checker`).
    """
    # only when building a bundle: the monitor scores with numpy alone
    from sklearn.linear_model import LogisticRegression, Ridge  # noqa: PLC0415

    schema = plain(schema)
    if len(trusted) < 20:
        raise ConfigError(
            f"the trusted holdout has {len(trusted)} rows; the checker needs >= 20 to calibrate"
        )
    spec: dict[str, Any] = {
        "format": FORMAT,
        "task": schema["task"],
        "columns": _columns(train, schema),
    }
    x_train = _design(train, spec)
    if schema["task"] == "binary":
        linear = LogisticRegression(C=1.0 / strength, max_iter=2000)
        linear.fit(x_train, y_train)
        spec["family"] = "logistic regression (L2)"
        spec["coef"] = linear.coef_[0].tolist()
        spec["intercept"] = float(linear.intercept_[0])
        raw = _design(trusted, spec) @ np.asarray(spec["coef"]) + spec["intercept"]
        platt = LogisticRegression(C=1e6, max_iter=1000).fit(raw[:, None], y_trusted)
        spec["platt"] = [float(platt.coef_[0, 0]), float(platt.intercept_[0])]
    else:
        center = float(np.mean(y_train))
        ridge = Ridge(alpha=strength).fit(x_train, np.asarray(y_train) - center)
        spec["family"] = "ridge regression"
        spec["coef"] = ridge.coef_.tolist()
        spec["intercept"] = float(ridge.intercept_) + center
        spec["platt"] = None
    gap = np.abs(np.asarray(served_trusted, dtype=np.float64) - score_checker(spec, trusted))
    threshold = float(np.quantile(gap, DISAGREEMENT_QUANTILE))
    spec["disagreement_threshold"] = threshold
    spec["baseline_rate"] = float(np.mean(gap > threshold))
    spec["trusted_rows"] = len(trusted)
    return spec


def check_checker(spec: Any, schema: Schema | dict[str, Any]) -> dict[str, Any]:
    """Return ``spec`` after checking it is a checker for ``schema``'s features."""
    schema = plain(schema)
    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        raise ConfigError(
            f"checker.json is not an opsnb checker (format {FORMAT!r} expected); rebuild the "
            "bundle with the operationalize stage"
        )
    names = [c["name"] for c in spec["columns"]]
    if names != [f["name"] for f in schema["features"]]:
        raise ConfigError(f"checker.json was fitted on features {names}, not this schema's")
    return spec


def score_checker(spec: dict[str, Any], matrix: np.ndarray) -> np.ndarray:
    """The checker's outputs (probability or value) for rows in schema order."""
    raw = _design(matrix, spec) @ np.asarray(spec["coef"]) + spec["intercept"]
    if spec["task"] != "binary":
        return np.asarray(raw, dtype=np.float64)
    a, b = spec["platt"]
    out: np.ndarray = 1.0 / (1.0 + np.exp(-np.clip(a * raw + b, -50, 50)))
    return out

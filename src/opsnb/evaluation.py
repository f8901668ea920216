"""Metrics and calibration, always computed from a sealed model file's predictions."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from opsnb.problem import HIGHER_IS_BETTER, meets_floor


def score(task: str, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Headline metrics: AUC, log loss and accuracy (binary) or RMSE, MAE and R² (regression)."""
    if task == "binary":
        p = np.clip(y_pred, 1e-7, 1 - 1e-7)
        return {
            "auc": round(float(skm.roc_auc_score(y_true, p)), 5),
            "logloss": round(float(skm.log_loss(y_true, p, labels=[0, 1])), 5),
            "accuracy": round(float(skm.accuracy_score(y_true, p >= 0.5)), 5),
            "positive_rate": round(float(np.mean(y_true)), 5),
        }
    return {
        "rmse": round(float(np.sqrt(skm.mean_squared_error(y_true, y_pred))), 5),
        "mae": round(float(skm.mean_absolute_error(y_true, y_pred)), 5),
        "r2": round(float(skm.r2_score(y_true, y_pred)), 5),
    }


def baseline(task: str, y_train: np.ndarray, y_eval: np.ndarray) -> dict[str, float]:
    """Scores of the trivial model that always predicts the training mean."""
    return score(task, y_eval, np.full(len(y_eval), float(np.mean(y_train))))


def calibration_table(y_true: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict[str, Any]]:
    """Predicted versus observed positive rate in ``bins`` equal-width probability bins."""
    edges = np.linspace(0, 1, bins + 1)
    index = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    table = []
    for b in range(bins):
        mask = index == b
        if mask.any():
            table.append(
                {
                    "bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}",
                    "rows": int(mask.sum()),
                    "mean_predicted": round(float(p[mask].mean()), 4),
                    "observed_rate": round(float(y_true[mask].mean()), 4),
                }
            )
    return table


def metrics_frame(metrics: dict[str, float], floor_metric: str, floor: float) -> pd.DataFrame:
    """The metrics as a table with the problem's floor beside the headline metric."""
    rows = [
        {"metric": k, "value": v, "floor": floor if k == floor_metric else None}
        for k, v in metrics.items()
    ]
    return pd.DataFrame(rows)


def evaluate(
    task: str, y_true: np.ndarray, y_pred: np.ndarray, *, metric: str, floor: float
) -> dict[str, Any]:
    """Scores, the calibration table (binary) and whether the headline metric meets its floor."""
    scores = score(task, y_true, y_pred)
    return {
        "rows": len(y_true),
        "scores": scores,
        "metric": metric,
        "floor": floor,
        "meets_floor": meets_floor(metric, scores[metric], floor),
        "calibration": calibration_table(y_true, y_pred) if task == "binary" else [],
    }


def _metric_value(task: str, metric: str, y_true: np.ndarray, y_pred: np.ndarray) -> float:
    if metric == "auc":
        return float(skm.roc_auc_score(y_true, y_pred))
    return float(score(task, y_true, y_pred)[metric])


def weighted_auc(y_true: np.ndarray, y_pred: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUC of ``y_pred`` for each row of ``weights`` (resample counts per row), ties counted half.

    One sort serves every resample: per distinct score, the weight of positives times the
    weight of negatives ranked below it (plus half of those tied), over all pairs.
    """
    order = np.argsort(y_pred, kind="stable")
    scores, positive = y_pred[order], np.asarray(y_true, dtype=bool)[order]
    starts = np.flatnonzero(np.r_[True, scores[1:] != scores[:-1]])
    w = np.atleast_2d(weights)[:, order].astype(np.float64)
    pos = np.add.reduceat(w * positive, starts, axis=1)
    neg = np.add.reduceat(w * ~positive, starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    pairs = pos.sum(axis=1) * neg.sum(axis=1)
    auc: np.ndarray = (pos * (below + 0.5 * neg)).sum(axis=1) / np.where(pairs > 0, pairs, np.nan)
    return auc


def paired_bootstrap(
    task: str,
    metric: str,
    y_true: np.ndarray,
    pred_new: np.ndarray,
    pred_old: np.ndarray,
    *,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """The metric of ``pred_new`` minus that of ``pred_old`` on the same rows, with a paired CI.

    Both predictions are scored on the same bootstrap resamples of the rows, so the interval
    reflects the difference between the models, not the sampling noise each has alone.
    Resamples holding a single class (AUC undefined) are left out.

    Returns:
        ``new``, ``old``, ``delta`` (new - old on all rows), ``low`` and ``high`` (the
        percentile interval at ``level``), ``resamples`` and ``level``.
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    rng = np.random.default_rng(seed)
    n = len(y_true)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples)
    if metric == "auc":
        deltas = weighted_auc(y_true, pred_new, counts) - weighted_auc(y_true, pred_old, counts)
        deltas = deltas[~np.isnan(deltas)]
    else:
        deltas = np.array(
            [
                _metric_value(task, metric, np.repeat(y_true, c), np.repeat(pred_new, c))
                - _metric_value(task, metric, np.repeat(y_true, c), np.repeat(pred_old, c))
                for c in counts
            ]
        )
    new = _metric_value(task, metric, y_true, pred_new)
    old = _metric_value(task, metric, y_true, pred_old)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(deltas, [tail, 100 - tail])
    return {
        "new": round(new, 5),
        "old": round(old, 5),
        "delta": round(new - old, 5),
        "low": round(float(low), 5),
        "high": round(float(high), 5),
        "resamples": len(deltas),
        "level": level,
    }


def verdict(metrics: dict[str, Any]) -> dict[str, Any]:
    """The train stage's verdict: the headline metric on the test split against its floor."""
    metric, floor, passed = metrics["metric"], metrics["floor"], bool(metrics["meets_floor"])
    value = metrics["scores"][metric]
    side = (">=" if passed else "<") if metric in HIGHER_IS_BETTER else ("<=" if passed else ">")
    text = (
        f"{'PASS' if passed else 'FAIL'}: {metric} {value:.3f} {side} floor {floor:g} "
        f"on {metrics['rows']:,} test rows, computed from the sealed model file"
    )
    return {"text": text, "passed": passed}

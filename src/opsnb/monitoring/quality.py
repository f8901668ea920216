"""Live quality per window: realized from labels, estimated before labels (CBPE).

Realized: the task's metrics over a window's labelled rows (AUC needs both classes), with the
standard error of AUC (Hanley & McNeil) so a window with few labels is judged with its
uncertainty. Estimated (binary only): confidence-based performance estimation as NannyML's
CBPE does it — the served scores are first mapped through the isotonic calibration fitted on
the trusted holdout (``reference.json``), then each row counts as ``p`` of a positive and
``1 - p`` of a negative; the expected confusion counts at every threshold give the expected ROC
curve and its area, the expected accuracy at 0.5 and the expected log loss. Regression has no
estimate: its outputs carry no statement of their own error.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

MIN_CLASS_LABELS = 10
"""A window's realized AUC needs at least this many labels of each class."""


def calibrate(scores: np.ndarray, calibration: dict[str, list[float]] | None) -> np.ndarray:
    """Calibrated probabilities of served scores (identity when there is no map)."""
    s = np.asarray(scores, dtype=np.float64)
    if not calibration:
        return np.clip(s, 0.0, 1.0)
    out: np.ndarray = np.interp(s, calibration["x"], calibration["y"])
    return out


def expected_auc(scores: np.ndarray, p: np.ndarray) -> float:
    """Area under the expected ROC curve when row i is positive with probability ``p[i]``."""
    if len(scores) < 2:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    s, w = scores[order], p[order]
    # rows with equal scores move together along the curve (a diagonal step)
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]
    tp, fp = np.cumsum(w)[last], np.cumsum(1 - w)[last]
    if tp[-1] <= 0 or fp[-1] <= 0:
        return float("nan")
    tpr, fpr = np.r_[0.0, tp / tp[-1]], np.r_[0.0, fp / fp[-1]]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def estimate(scores: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """CBPE estimates of AUC, accuracy (at 0.5) and log loss for one window."""
    q = np.clip(scores, 1e-7, 1 - 1e-7)
    return {
        "auc": expected_auc(scores, p),
        "accuracy": float(np.mean(np.where(scores >= 0.5, p, 1 - p))) if len(p) else np.nan,
        "logloss": float(np.mean(-(p * np.log(q) + (1 - p) * np.log(1 - q)))) if len(p) else np.nan,
    }


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann–Whitney with midranks for ties)."""
    positive = labels == 1
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if not n_pos or not n_neg:
        return float("nan")
    ranks = stats.rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auc_standard_error(auc: float, positives: int, negatives: int) -> float:
    """Hanley & McNeil's standard error of an AUC from its class counts."""
    if positives < 1 or negatives < 1 or not np.isfinite(auc):
        return float("nan")
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    var = (auc * (1 - auc) + (positives - 1) * (q1 - auc**2) + (negatives - 1) * (q2 - auc**2)) / (
        positives * negatives
    )
    return float(np.sqrt(max(var, 0.0)))


def realized(task: str, labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """The task's metrics over a window's labelled rows; NaN where they are undefined."""
    n = len(labels)
    if task != "binary":
        if n < 2:
            return {"rmse": np.nan, "mae": np.nan, "r2": np.nan}
        return {
            "rmse": float(np.sqrt(np.mean((labels - scores) ** 2))),
            "mae": float(np.mean(np.abs(labels - scores))),
            "r2": float(
                1
                - np.sum((labels - scores) ** 2)
                / max(np.sum((labels - labels.mean()) ** 2), 1e-300)
            ),
        }
    positives = int(labels.sum())
    negatives = n - positives
    enough = min(positives, negatives) >= MIN_CLASS_LABELS
    area = auc(labels, scores) if enough else np.nan
    q = np.clip(scores, 1e-7, 1 - 1e-7)
    return {
        "auc": area,
        "auc_se": auc_standard_error(area, positives, negatives),
        "accuracy": float(np.mean((scores >= 0.5) == (labels == 1))) if n else np.nan,
        "logloss": float(np.mean(-(labels * np.log(q) + (1 - labels) * np.log(1 - q))))
        if n
        else np.nan,
        "positive_rate": float(labels.mean()) if n else np.nan,
        "mean_score": float(scores.mean()) if n else np.nan,
    }


def quality_table(
    task: str,
    *,
    window: np.ndarray,
    scores: np.ndarray,
    labelled: np.ndarray,
    labels: np.ndarray,
    windows: int,
    calibration: dict[str, list[float]] | None,
) -> pd.DataFrame:
    """Per window: rows, labels, realized metrics and (binary) CBPE estimates side by side.

    Args:
        task: ``"binary"`` or ``"regression"``.
        window: the window index of every row.
        scores: the served output of every row.
        labelled: which rows have a label.
        labels: the label of every row (ignored where ``labelled`` is False).
        windows: how many windows there are.
        calibration: the isotonic map of ``reference.json`` (binary).
    """
    p = calibrate(scores, calibration) if task == "binary" else scores
    order = np.argsort(window, kind="stable")
    bounds = np.searchsorted(window[order], np.arange(windows + 1))
    rows: list[dict[str, Any]] = []
    for w in range(windows):
        idx = order[bounds[w] : bounds[w + 1]]
        have = idx[labelled[idx]]
        record: dict[str, Any] = {"window": w, "rows": len(idx), "labels": len(have)}
        for name, value in realized(task, labels[have], scores[have]).items():
            record[name] = value
        if task == "binary":
            for name, value in estimate(scores[idx], p[idx]).items():
                record[f"estimated_{name}"] = value
        rows.append(record)
    return pd.DataFrame(rows)

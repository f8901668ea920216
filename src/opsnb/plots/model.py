"""Plots of the model: design (CV curves), train (ROC, calibration, quality), serving latency."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score, roc_curve

from opsnb.plots.style import (
    ACCENT,
    GREY,
    INK,
    _title,
    colours,
    new_figure,
    rule,
)


# -- design --------------------------------------------------------------------------------------
def cv_curves(
    scores: Sequence[Mapping[str, Any]], *, metric: str, baseline: float | None = None
) -> Figure:
    """Cross-validated loss per boosting round for each candidate; the winner dark.

    Each score holds its hyperparameters, ``cv_<metric>`` and ``cv_curve`` (the test-fold mean
    per round). A candidate that ends no better than the ``baseline`` (dashed) is accented.
    """
    key = f"cv_{metric}"
    fig, ax = new_figure(6.4, 3.6)
    winner = min(scores, key=lambda s: s[key])
    hyper = [k for k in winner if k not in (key, "rounds", "cv_curve")]
    for score in scores:
        curve = np.asarray(score.get("cv_curve") or [score[key]], dtype=float)
        label = ", ".join(f"{k}={score[k]}" for k in hyper)
        fails = baseline is not None and score[key] >= baseline
        colour = ACCENT if fails else INK if score is winner else GREY
        width = 1.8 if score is winner else 1.1
        ax.plot(np.arange(1, len(curve) + 1), curve, color=colour, linewidth=width, label=label)
    ax.scatter([winner["rounds"]], [winner[key]], color=INK, zorder=3)
    if baseline is not None:
        rule(ax, baseline, f"baseline (predict the mean): {baseline:.3f}")
    ax.set_xlabel("boosting rounds (trees)")
    ax.set_ylabel(f"held-out CV {metric} (lower: better)")
    ax.legend(fontsize=7, frameon=False)
    chosen = ", ".join(f"{k}={winner[k]}" for k in hyper)
    versus = f" vs baseline {baseline:.3f}" if baseline is not None else ""
    _title(
        fig, f"{chosen} wins: CV {metric} {winner[key]:.3f} at {winner['rounds']} rounds{versus}"
    )
    return fig


# -- train ---------------------------------------------------------------------------------------
def roc(y_true: np.ndarray, p: np.ndarray, *, floor: float) -> Figure:
    """The ROC curve on the test split; accented when its AUC is below the problem's ``floor``."""
    fpr, tpr, _ = roc_curve(y_true, p)
    auc = float(roc_auc_score(y_true, p))
    fig, ax = new_figure(4.6, 4.2)
    ax.plot(
        fpr, tpr, color=ACCENT if auc < floor else INK, linewidth=1.8, label=f"model: AUC {auc:.3f}"
    )
    ax.plot([0, 1], [0, 1], color=GREY, linestyle=":", label="chance: AUC 0.5")
    ax.set_xlabel("false positive rate (share of negatives flagged)")
    ax.set_ylabel("true positive rate (share of positives caught)")
    ax.set_aspect("equal")
    ax.legend(fontsize=8, frameon=False, loc="lower right")
    verdict = "meets" if auc >= floor else "is below"
    _title(fig, f"AUC {auc:.3f} on {len(y_true):,} test rows {verdict} the floor {floor:g}")
    return fig


def calibration(table: Sequence[Mapping[str, Any]], *, tolerance: float = 0.05) -> Figure:
    """Observed against predicted positive rate per probability bin; off-diagonal bins accented.

    ``table`` is :func:`opsnb.evaluation.calibration_table`'s output. A bin is off when its
    observed rate is more than ``tolerance`` from its mean prediction *and* more than two
    standard errors of a bin of its size (so a 12-row bin is not blamed for its noise).
    """
    predicted = np.array([float(r["mean_predicted"]) for r in table])
    observed = np.array([float(r["observed_rate"]) for r in table])
    rows = np.array([int(r["rows"]) for r in table])
    gap = np.abs(observed - predicted)
    noise = 2 * np.sqrt(np.clip(predicted * (1 - predicted), 1e-6, None) / np.maximum(rows, 1))
    breaks = (gap > tolerance) & (gap > noise)
    fig, ax = new_figure(4.6, 4.2)
    ax.plot([0, 1], [0, 1], color=INK, linestyle="--", linewidth=1.2, label="perfectly calibrated")
    sizes = 20 + 180 * rows / max(int(rows.max()) if len(rows) else 1, 1)
    ax.scatter(predicted, observed, s=sizes, color=colours(breaks), zorder=3,
               label=f"bin (size ∝ rows); off by > {tolerance:g} and 2 s.e. accented")  # fmt: skip
    ax.set_xlim(-0.03, 1.03)
    ax.set_ylim(-0.03, 1.03)
    ax.set_aspect("equal")
    ax.set_xlabel("mean predicted probability in bin")
    ax.set_ylabel("observed positive rate in bin")
    ax.legend(fontsize=7, frameon=False, loc="upper left")
    good = int((~breaks).sum())
    worst = float(gap.max()) if len(table) else 0.0
    total = int(rows.sum())
    _title(
        fig, f"Calibrated in {good} of {len(table)} bins (largest gap {worst:.3f}, {total:,} rows)"
    )
    return fig


def predicted_vs_actual(
    y_true: np.ndarray, y_pred: np.ndarray, *, metric: str, value: float, floor: float, ok: bool
) -> Figure:
    """Regression: predictions against the truth on the test split, the diagonal as the rule."""
    fig, ax = new_figure(4.6, 4.2)
    ax.scatter(y_true, y_pred, s=6, alpha=0.5, color=GREY if ok else ACCENT)
    low = float(min(np.min(y_true), np.min(y_pred)))
    high = float(max(np.max(y_true), np.max(y_pred)))
    ax.plot([low, high], [low, high], color=INK, linestyle="--", label="prediction = truth")
    ax.set_xlabel("true value (target units)")
    ax.set_ylabel("predicted value (target units)")
    ax.legend(fontsize=8, frameon=False)
    verdict = "meets" if ok else "misses"
    _title(fig, f"{metric} {value:.3f} on {len(y_true):,} test rows {verdict} the floor {floor:g}")
    return fig


def model_quality(
    task: str, y_true: np.ndarray, y_pred: np.ndarray, metrics: Mapping[str, Any]
) -> dict[str, Figure]:
    """The train stage's evidence by task: ROC and calibration (binary), or predicted vs actual.

    ``metrics`` is :func:`opsnb.evaluation.evaluate`'s output for the same rows.
    """
    if task == "binary":
        return {
            "roc": roc(y_true, y_pred, floor=float(metrics["floor"])),
            "calibration": calibration(metrics["calibration"]),
        }
    metric = str(metrics["metric"])
    return {
        "predicted vs actual": predicted_vs_actual(
            y_true,
            y_pred,
            metric=metric,
            value=float(metrics["scores"][metric]),
            floor=float(metrics["floor"]),
            ok=bool(metrics["meets_floor"]),
        )
    }


# -- operationalize ------------------------------------------------------------------------------
def latency_vs_batch(rows: Sequence[Mapping[str, Any]], *, budget_ms: float) -> Figure:
    """Milliseconds per call against rows per call: p50 grey, p99 dark, over budget accented.

    ``rows`` hold ``batch``, ``p50_ms`` and ``p99_ms`` (:mod:`opsnb.latency`).
    """
    batches = np.array([int(r["batch"]) for r in rows])
    p50 = np.array([float(r["p50_ms"]) for r in rows])
    p99 = np.array([float(r["p99_ms"]) for r in rows])
    over = p99 > budget_ms
    fig, ax = new_figure(6.4, 3.6)
    ax.plot(batches, p50, color=GREY, marker="o", markersize=4, label="p50 per call")
    ax.plot(batches, p99, color=INK, linewidth=1.6, label="p99 per call")
    ax.scatter(batches, p99, color=colours(over), zorder=3, s=28)
    rule(ax, budget_ms, f"p99 budget: {budget_ms:g} ms")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("rows per call (batch size)")
    ax.set_ylabel("latency per call (ms, log scale)")
    ax.legend(fontsize=8, frameon=False, loc="lower right")
    if not over.any():
        _title(fig, f"p99 within the {budget_ms:g} ms budget up to {batches.max():,} rows per call")
    else:
        first = int(batches[over].min())
        _title(fig, f"p99 over the {budget_ms:g} ms budget from {first:,} rows per call")
    return fig

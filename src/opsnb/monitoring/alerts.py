"""Alerts as records: what fired, where, on what evidence, how bad, and what to do about it.

Every alert is a dict with the same fields: ``kind``, ``subject`` (the feature or metric),
``window``, ``statistic``, ``value``, ``threshold``, ``p_value`` (where a test decided),
``evidence`` (one sentence), ``severity`` (``low``, ``medium``, ``high``) and ``action``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

FIELDS = (
    "kind",
    "subject",
    "window",
    "statistic",
    "value",
    "threshold",
    "p_value",
    "evidence",
    "severity",
    "action",
)
INVESTIGATE = (
    "investigate the source of the change; if it is real, update through the admission gate"
)
ROLLBACK = "roll back to the champion model; then investigate"
SCREEN_LABELS = "screen the recent labels for poisoning (opsnb update) before training on them"
REVIEW = "review monitor/review.parquet and label its requests through /feedback"
FIX_PRODUCER = "fix the producer or extend the contract through the admission gate"


@dataclass(frozen=True)
class Thresholds:
    """When a statistic becomes an alert; the defaults match ``problem.json``'s.

    Attributes:
        psi: PSI (after removing its sampling noise) at which drift counts (0.1 moderate,
            0.2 major by the usual convention: twice this is ``high`` severity).
        alpha: family-wise false alarm rate; each test uses ``alpha / tests`` (Bonferroni).
        missing_delta: change of a feature's missing share (absolute) that counts.
        new_category_share: share of a window's rows with an unseen category that counts.
        checker_ratio: disagreement rate over the trusted baseline that counts.
        gap: smallest |realized - estimated| metric gap that counts (beyond its noise).
    """

    psi: float = 0.1
    alpha: float = 0.01
    missing_delta: float = 0.05
    new_category_share: float = 0.01
    checker_ratio: float = 2.0
    gap: float = 0.03


def record(  # noqa: PLR0917 - the fields in their documented order read best at call sites
    kind: str,
    subject: str,
    window: int | None,
    statistic: str,
    value: float,
    threshold: float,
    evidence: str,
    severity: str,
    action: str,
    p_value: float | None = None,
) -> dict[str, Any]:
    """One alert record (rounded for reading)."""
    return {
        "kind": kind,
        "subject": subject,
        "window": window,
        "statistic": statistic,
        "value": round(float(value), 4),
        "threshold": round(float(threshold), 4),
        "p_value": None if p_value is None else float(f"{p_value:.3g}"),
        "evidence": evidence,
        "severity": severity,
        "action": action,
    }


def table(alerts: list[dict[str, Any]]) -> pd.DataFrame:
    """Alerts grouped by kind and subject: first and last window, how many windows, worst value."""
    if not alerts:
        return pd.DataFrame(
            columns=["kind", "subject", "severity", "first_window", "windows", "worst", "action"]
        )
    frame = pd.DataFrame(alerts, columns=list(FIELDS))
    rank = {"high": 2, "medium": 1, "low": 0}
    rows = []
    for (kind, subject), group in frame.groupby(["kind", "subject"], sort=False):
        worst = group.iloc[int(group["severity"].map(rank).to_numpy().argmax())]
        known = group["window"].dropna()
        rows.append(
            {
                "kind": kind,
                "subject": subject,
                "severity": worst["severity"],
                "first_window": int(known.min()) if len(known) else None,
                "windows": len(group),
                "worst": worst["evidence"],
                "action": worst["action"],
            }
        )
    out = pd.DataFrame(rows)
    return out.sort_values(["first_window", "kind"], ignore_index=True)


def drift_alerts(
    drift: pd.DataFrame, limits: Thresholds, n_windows: int, n_features: int
) -> list[dict[str, Any]]:
    """Drift, prediction drift, missing-share and unseen-category alerts per feature and window."""
    found: list[dict[str, Any]] = []
    cut = limits.alpha / max(n_windows * (n_features + 1), 1)
    for r in drift.to_dict("records"):
        if not r["rows"]:
            continue
        w = int(r["window"])
        is_pred = r["feature"] == "(prediction)"
        if r["psi_adjusted"] >= limits.psi and r["p_value"] < cut:
            severity = "high" if r["psi_adjusted"] >= 2 * limits.psi else "medium"
            found.append(
                record(
                    "prediction_drift" if is_pred else "drift",
                    r["feature"],
                    w,
                    "psi_adjusted",
                    r["psi_adjusted"],
                    limits.psi,
                    f"{r['feature']}: PSI {r['psi']:.3f} ({r['psi_adjusted']:.3f} beyond "
                    f"sampling noise) over {r['rows']} rows, {r['test']} p = "
                    f"{r['p_value']:.2g} < {cut:.2g}",
                    severity,
                    INVESTIGATE,
                    r["p_value"],
                )
            )
        delta = abs(r["missing_share"] - r["reference_missing"])
        if delta >= limits.missing_delta and r["missing_p_value"] < cut:
            found.append(
                record(
                    "missing",
                    r["feature"],
                    w,
                    "missing_share",
                    r["missing_share"],
                    r["reference_missing"] + limits.missing_delta,
                    f"{r['feature']}: {r['missing_share']:.1%} missing against "
                    f"{r['reference_missing']:.1%} in training",
                    "medium",
                    FIX_PRODUCER,
                    r["missing_p_value"],
                )
            )
        if r["new_share"] >= limits.new_category_share and r["new_rows"] >= 5:
            found.append(
                record(
                    "new_category",
                    r["feature"],
                    w,
                    "new_share",
                    r["new_share"],
                    limits.new_category_share,
                    f"{r['feature']}: {int(r['new_rows'])} rows ({r['new_share']:.1%}) carry a "
                    "category never seen in training",
                    "high",
                    FIX_PRODUCER,
                )
            )
    return found


def checker_alerts(check: pd.DataFrame, limits: Thresholds, n_windows: int) -> list[dict[str, Any]]:
    """Windows where the checker disagrees with the served model more than on trusted rows."""
    found: list[dict[str, Any]] = []
    check_cut = limits.alpha / max(n_windows, 1)
    for r in check.to_dict("records"):
        over = r["disagreement_rate"] >= limits.checker_ratio * max(r["baseline_rate"], 1e-3)
        if r["rows"] and over and r["p_value"] < check_cut:
            found.append(
                record(
                    "checker",
                    "disagreement_rate",
                    int(r["window"]),
                    "disagreement_rate",
                    r["disagreement_rate"],
                    limits.checker_ratio * r["baseline_rate"],
                    f"the checker disagrees on {r['disagreement_rate']:.1%} of {r['rows']} rows "
                    f"against {r['baseline_rate']:.1%} on the trusted holdout",
                    "medium",
                    REVIEW,
                    r["p_value"],
                )
            )
    return found


def quality_alerts(
    qual: pd.DataFrame, limits: Thresholds, metric: str | None, floor: float | None
) -> list[dict[str, Any]]:
    """Realized quality past the floor, the estimate past it before labels, and the gap."""
    found: list[dict[str, Any]] = []
    if metric is None or metric not in qual:
        return found
    higher = metric in ("auc", "accuracy", "r2")
    for r in qual.to_dict("records"):
        w, value = int(r["window"]), r[metric]
        se = r.get("auc_se", np.nan) if metric == "auc" else np.nan
        margin = 1.645 * se if np.isfinite(se) else 0.0
        if floor is not None and np.isfinite(value) and r["labels"] >= 30:
            bad = value + margin < floor if higher else value - margin > floor
            if bad:
                found.append(
                    record(
                        "quality",
                        metric,
                        w,
                        metric,
                        value,
                        floor,
                        f"realized {metric} {value:.3f} over {r['labels']} labels is "
                        f"{'below' if higher else 'above'} the floor {floor}"
                        + (f" (± {margin:.3f} at 95 %)" if margin else ""),
                        "high",
                        ROLLBACK,
                    )
                )
        estimated = r.get(f"estimated_{metric}", np.nan)
        early = floor is not None and np.isfinite(estimated) and r["labels"] < 30
        if early and ((estimated < floor) if higher else (estimated > floor)):
            found.append(
                record(
                    "estimated_quality",
                    metric,
                    w,
                    f"estimated_{metric}",
                    estimated,
                    float(floor or 0.0),
                    f"estimated {metric} {estimated:.3f} (CBPE, before labels) is past the "
                    f"floor {floor}",
                    "medium",
                    INVESTIGATE,
                )
            )
        if np.isfinite(value) and np.isfinite(estimated):
            gap = value - estimated
            noise = 2.576 * se if np.isfinite(se) else 0.0
            if abs(gap) >= max(limits.gap, noise):
                found.append(
                    record(
                        "estimate_gap",
                        metric,
                        w,
                        f"realized - estimated {metric}",
                        gap,
                        max(limits.gap, noise),
                        f"realized {metric} {value:.3f} against {estimated:.3f} expected from the "
                        f"model's own confidence ({r['labels']} labels): the labels do not behave "
                        "as the model's probabilities say",
                        "high",
                        SCREEN_LABELS,
                    )
                )
    return found


def refusal_alerts(
    refusals: dict[str, Any], limits: Thresholds, window_rows: int | None
) -> list[dict[str, Any]]:
    """Contract refusals the replay saw (never logged: the server refused them)."""
    found = []
    total = max(int(refusals.get("requests", 0)), 1)
    for name, seen in refusals.get("fields", {}).items():
        share = seen["count"] / total
        if share >= limits.new_category_share:
            found.append(
                record(
                    "contract",
                    name,
                    seen["first_index"] // window_rows if window_rows else None,
                    "refused_share",
                    share,
                    limits.new_category_share,
                    f"{seen['count']} requests refused on field {name!r} (e.g. "
                    f"{seen['examples'][:2]}): {seen['reason']}",
                    "high",
                    FIX_PRODUCER,
                )
            )
    return found

"""Alerts as records: what fired, where, on what evidence, how bad, and what to do about it.

Every alert is a dict with the same fields: ``kind``, ``subject`` (the feature or metric),
``window``, ``statistic``, ``value``, ``threshold``, ``p_value`` (where a test decided),
``evidence`` (one sentence), ``severity`` (``low``, ``medium``, ``high``) and ``action``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
INVESTIGATE = "investigate the source of the change; if it is real, update through the admission gate"
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


def record(
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
        worst = group.loc[group["severity"].map(rank).idxmax()]
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

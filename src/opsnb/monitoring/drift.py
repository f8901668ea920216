"""Drift of each feature and of the prediction, per window, against the training reference.

Counts add up chunk by chunk (:class:`DriftCounts`), so a log of any length is read once. Per
window and feature: PSI over the reference's PSI bins (missing values a bin of their own, an
unseen category another), the Kolmogorov–Smirnov statistic and p-value (numeric) or the
chi-square goodness-of-fit p-value (categorical), the missing share and the share of unseen
categories.

A drift alert needs both an effect and evidence, so small windows do not cry wolf: PSI minus
what sampling alone gives it on average (``(bins - 1) * (1/n + 1/N)`` for a window of ``n``
rows and a reference of ``N``) must reach the PSI threshold, and the test's p-value must be below
``alpha`` divided by the number of tests (features x windows, Bonferroni).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import special, stats

from opsnb.monitoring.reference import categorical_summary, numeric_summary, psi_map

PSI_MODERATE = 0.1
PSI_MAJOR = 0.2
_EPS = 1e-4


def _psi(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """PSI of shares ``q`` (rows: windows) against ``p`` (one row), shares floored at 1e-4."""
    p, q = np.clip(p, _EPS, None), np.clip(q, _EPS, None)
    out: np.ndarray = np.sum((q - p) * np.log(q / p), axis=-1)
    return out


def _bin_index(summary: dict[str, Any], values: np.ndarray) -> np.ndarray:
    """Fine-bin index per value (numeric: grid bin; categorical: code; unseen: last code)."""
    ok = values[~np.isnan(values)]
    if summary["kind"] == "categorical":
        codes: np.ndarray = np.minimum(ok.astype(np.int64), len(summary["categories"]))
        return codes
    index: np.ndarray = np.searchsorted(np.asarray(summary["grid"]), ok, side="left")
    return index


def _width(summary: dict[str, Any]) -> int:
    if summary["kind"] == "categorical":
        return len(summary["categories"]) + 1  # + one bin for categories never seen
    return len(summary["grid"]) + 1


@dataclass
class DriftCounts:
    """Per window, per feature (and the prediction): fine-bin counts and missing counts."""

    summaries: list[dict[str, Any]]
    windows: int
    counts: list[np.ndarray] = field(init=False)
    missing: np.ndarray = field(init=False)
    rows: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.counts = [np.zeros((self.windows, _width(s)), np.int64) for s in self.summaries]
        self.missing = np.zeros((self.windows, len(self.summaries)), np.int64)
        self.rows = np.zeros(self.windows, np.int64)

    def add(self, window: np.ndarray, columns: np.ndarray) -> None:
        """Count rows (``columns`` in summary order) whose window index is ``window``."""
        self.rows += np.bincount(window, minlength=self.windows)
        for j, summary in enumerate(self.summaries):
            values = columns[:, j]
            missing = np.isnan(values)
            self.missing[:, j] += np.bincount(window[missing], minlength=self.windows)
            width = _width(summary)
            flat = window[~missing] * width + _bin_index(summary, values)
            self.counts[j] += np.bincount(flat, minlength=self.windows * width).reshape(
                self.windows, width
            )

    def merge(self, other: DriftCounts) -> None:
        """Add the counts of another pass over other rows (same summaries and windows)."""
        for mine, theirs in zip(self.counts, other.counts, strict=True):
            np.add(mine, theirs, out=mine)
        self.missing += other.missing
        self.rows += other.rows


def feature_stats(summary: dict[str, Any], counts: np.ndarray, missing: np.ndarray) -> pd.DataFrame:
    """PSI, its sampling-adjusted value, the test and its p-value, per window, for one feature."""
    n_ok = counts.sum(axis=1)
    n = n_ok + missing
    safe_n = np.maximum(n, 1)
    ref_missing = summary["missing_share"]
    ref_rows = max(int(summary.get("rows", 0)), 1)
    out = pd.DataFrame({"rows": n, "missing_share": missing / safe_n})
    if summary["kind"] == "categorical":
        ref = np.append(np.asarray(summary["shares"]), 0.0) * (1 - ref_missing)
        live = counts
        out["new_share"] = counts[:, -1] / safe_n
    else:
        groups = np.asarray(summary["psi_map"])
        ref = np.bincount(groups, weights=summary["shares"]) * (1 - ref_missing)
        live = np.zeros((len(counts), ref.size), np.int64)
        for b in range(ref.size):
            live[:, b] = counts[:, groups == b].sum(axis=1)
        out["new_share"] = 0.0
    p = np.append(ref, ref_missing)
    q = np.column_stack([live, missing]) / safe_n[:, None]
    value = _psi(p, q)
    bins = int((p > 0).sum())
    noise = (bins - 1) * (1 / safe_n + 1 / ref_rows)
    out["psi"] = value
    out["psi_adjusted"] = np.maximum(value - noise, 0.0)
    if summary["kind"] == "categorical":
        expected = np.clip(p, _EPS, None) * safe_n[:, None]
        observed = np.column_stack([live, missing])
        chi2 = (((observed - expected) ** 2) / expected).sum(axis=1)
        out["test"] = "chi2"
        out["statistic"] = chi2
        out["p_value"] = stats.chi2.sf(chi2, max(bins - 1, 1))
    else:
        cdf_live = np.cumsum(counts[:, :-1], axis=1) / np.maximum(n_ok, 1)[:, None]
        d = np.abs(cdf_live - np.asarray(summary["cdf"])[None, :]).max(axis=1)
        n_eff = n_ok * ref_rows / np.maximum(n_ok + ref_rows, 1)
        out["test"] = "ks"
        out["statistic"] = d
        out["p_value"] = np.where(n_ok > 0, special.kolmogorov(np.sqrt(n_eff) * d), 1.0)
    out.loc[n == 0, ["psi", "psi_adjusted", "statistic", "p_value", "missing_share"]] = np.nan
    return out


def missing_p_value(share: np.ndarray, rows: np.ndarray, reference: float) -> np.ndarray:
    """Two-sided p-value that a window's missing share differs from the reference's (normal)."""
    p0 = min(max(reference, 1e-3), 1 - 1e-3)
    z = (share - p0) / np.sqrt(p0 * (1 - p0) / np.maximum(rows, 1))
    out: np.ndarray = 2 * stats.norm.sf(np.abs(z))
    return out


def shift_test(summary: dict[str, Any], values: np.ndarray) -> dict[str, Any]:
    """One batch of one feature against its reference summary: PSI, the test, its p-value.

    ``summary`` is a feature entry of ``reference.json`` (``kind`` plus the summary fields);
    ``values`` are the batch's values in model encoding (codes for categories, NaN missing).
    """
    counts = DriftCounts([summary], 1)
    column = np.asarray(values, dtype=np.float64)[:, None]
    counts.add(np.zeros(len(column), np.int64), column)
    row = feature_stats(summary, counts.counts[0], counts.missing[:, 0]).iloc[0]
    return {str(k): (v.item() if hasattr(v, "item") else v) for k, v in row.items()}


def psi(
    reference: np.ndarray, current: np.ndarray, *, categorical: bool = False, bins: int = 10
) -> float:
    """Population stability index of ``current`` against ``reference``; NaN is its own bin.

    Numeric values are binned at the reference's deciles (``bins``); categorical codes per value.
    """
    ref = np.asarray(reference, dtype=np.float64)
    if categorical:
        ok = ref[~np.isnan(ref)]
        top = int(max(np.nanmax(ref, initial=0), np.nanmax(current, initial=0))) + 1
        summary = {"kind": "categorical", **categorical_summary(ok, [str(i) for i in range(top)])}
        summary["missing_share"] = float(np.isnan(ref).mean())
        summary["rows"] = len(ref)
    else:
        summary = {"kind": "numeric", **numeric_summary(ref)}
        if bins != 10:
            summary["psi_map"] = psi_map(np.asarray(summary["shares"]), mass=1 / bins).tolist()
    return float(shift_test(summary, np.asarray(current, dtype=np.float64))["psi"])


def drift_table(
    reference: np.ndarray, current: np.ndarray, names: list[str], kinds: list[str]
) -> pd.DataFrame:
    """PSI per feature with its level (``stable``, ``moderate``, ``major``), worst first."""
    rows = []
    for j, (name, kind) in enumerate(zip(names, kinds, strict=True)):
        value = psi(reference[:, j], current[:, j], categorical=kind == "categorical")
        level = "major" if value >= PSI_MAJOR else "moderate" if value >= PSI_MODERATE else "stable"
        rows.append({"feature": name, "psi": round(value, 4), "level": level})
    return pd.DataFrame(rows).sort_values("psi", ascending=False, ignore_index=True)

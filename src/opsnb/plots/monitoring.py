"""Plots of monitoring: drift now and over windows, quality over windows, alerts."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure

from opsnb.plots.style import (
    ACCENT,
    GREY,
    INK,
    LIGHT,
    _title,
    colours,
    new_figure,
    rule,
)


# -- monitor -------------------------------------------------------------------------------------
def drift(table: pd.DataFrame, *, threshold: float, limit: int = 20) -> Figure:
    """PSI per feature (worst first, up to ``limit``) against the drift ``threshold``."""
    shown = table.sort_values("psi", ascending=False).head(limit)
    values = shown["psi"].to_numpy(dtype=float)
    breaks = values >= threshold
    fig, ax = new_figure(6.4, 0.6 + 0.28 * max(len(shown), 3))
    ax.barh(shown["feature"].astype(str), values, color=colours(breaks))
    ax.invert_yaxis()
    rule(ax, threshold, f"drift threshold: PSI {threshold:g}", axis="x")
    ax.grid(axis="y", visible=False)
    ax.grid(axis="x", color="#e8e8e8", linewidth=0.6)
    ax.set_xlabel("population stability index, production vs training (unitless)")
    ax.legend(fontsize=8, frameon=False, loc="lower right")
    drifted = int((table["psi"] >= threshold).sum())
    if drifted:
        _title(fig, f"{drifted} of {len(table)} features drifted (PSI ≥ {threshold:g})")
    else:
        top = float(table["psi"].max()) if len(table) else 0.0
        _title(fig, f"No feature drifted: largest PSI {top:.3f} < {threshold:g}")
    return fig


# -- monitoring over windows (07_monitor, opsnb monitor) -------------------------------------


def drift_heatmap(heatmap: pd.DataFrame, threshold: float, drifted: list[str]) -> Figure:
    """PSI (beyond sampling noise) per feature and window; drifted rows' labels in the accent."""
    fig = Figure(figsize=(max(6.0, 0.45 * heatmap.shape[1] + 3), 0.35 * len(heatmap) + 1.6))
    ax = fig.subplots()
    values = heatmap.to_numpy(dtype=float)
    cmap = LinearSegmentedColormap.from_list("drift", ["#ffffff", LIGHT, ACCENT])
    image = ax.imshow(
        np.nan_to_num(values), aspect="auto", cmap=cmap, vmin=0, vmax=max(4 * threshold, 1e-9)
    )
    ax.set_yticks(range(len(heatmap)), heatmap.index)
    ax.set_xticks(range(heatmap.shape[1]), [str(c) for c in heatmap.columns])
    for label in ax.get_yticklabels():
        label.set_color(ACCENT if label.get_text() in drifted else INK)
    ax.set_xlabel("window")
    fig.colorbar(image, ax=ax, label=f"PSI beyond sampling noise (alert >= {threshold:g})")
    first = [
        int(np.argmax(values[i] >= threshold))
        for i, name in enumerate(heatmap.index)
        if name in drifted
    ]
    title = (
        f"{len(drifted)} of {len(heatmap) - 1} features drifted, first in window {min(first)}"
        if drifted and first
        else "no feature drifted beyond its threshold"
    )
    ax.set_title(title)
    fig.tight_layout()
    return fig


def drift_distributions(
    reference: dict[str, Any], live_counts: dict[str, np.ndarray], features: list[str]
) -> Figure:
    """Training against live distribution of each named feature (shares per reference bin)."""
    shown = features[:6] or [reference["features"][0]["name"]]
    fig = Figure(figsize=(4.2 * min(len(shown), 3), 3.2 * ((len(shown) + 2) // 3)))
    axes = np.atleast_1d(fig.subplots((len(shown) + 2) // 3, min(len(shown), 3))).ravel()
    summaries = {s["name"]: s for s in reference["features"]}
    for ax, name in zip(axes, shown, strict=False):
        summary, counts = summaries[name], np.asarray(live_counts[name], dtype=float)
        live = counts / max(counts.sum(), 1)
        if summary["kind"] == "categorical":
            labels = [*summary["categories"], "(unseen)"]
            train = [*summary["shares"], 0.0]
            x = np.arange(len(labels))
            ax.bar(x - 0.2, train, 0.4, color=GREY, label="training")
            ax.bar(x + 0.2, live, 0.4, color=ACCENT, label="live")
            ax.set_xticks(x, labels, rotation=60, ha="right", fontsize=7)
        else:
            grid = np.asarray(summary["grid"])
            train_cdf = np.r_[summary["cdf"], 1.0]
            live_cdf = np.cumsum(live)
            edges = np.r_[grid, grid[-1] if grid.size else 0.0]
            ax.step(edges, train_cdf, where="post", color=GREY, label="training")
            ax.step(edges, live_cdf, where="post", color=ACCENT, label="live")
            ax.set_ylabel("cumulative share")
        ax.set_title(name)
        ax.set_xlabel(name)
        ax.legend(fontsize=7)
    for ax in axes[len(shown) :]:
        ax.set_visible(False)
    fig.suptitle(
        f"{len(features)} drifted feature(s): training vs live" if features else "no drift"
    )
    fig.tight_layout()
    return fig


def quality_over_windows(quality: pd.DataFrame, metric: str, floor: float | None) -> Figure:
    """Realized metric (with labels) and its CBPE estimate (before labels) per window."""
    fig = Figure(figsize=(7.5, 3.6))
    ax = fig.subplots()
    w = quality["window"].to_numpy()
    realized = (
        quality[metric].to_numpy(dtype=float) if metric in quality else np.full(len(w), np.nan)
    )
    estimated_col = f"estimated_{metric}"
    if estimated_col in quality:
        ax.plot(w, quality[estimated_col], "o--", color=GREY, label=f"estimated {metric} (CBPE)")
    ax.plot(w, realized, "o-", color=INK, label=f"realized {metric} (labels)")
    title = f"{metric} per window"
    if floor is not None:
        ax.axhline(floor, color=ACCENT, lw=1, label=f"floor {floor:g}")
        below = np.isfinite(realized) & (realized < floor)
        ax.plot(w[below], realized[below], "o", color=ACCENT)
        title = (
            f"realized {metric} below the floor in {int(below.sum())} window(s)"
            if below.any()
            else f"{metric} stays above the floor {floor:g} where labels exist"
        )
    ax.set_xlabel("window")
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def alert_timeline(alerts: list[dict[str, Any]], windows: int) -> Figure:
    """Which alert fired in which window; high severity in the accent colour."""
    fig = Figure(
        figsize=(7.5, 0.35 * max(len({(a["kind"], a["subject"]) for a in alerts}), 1) + 1.6)
    )
    ax = fig.subplots()
    rows = sorted({(a["kind"], a["subject"]) for a in alerts})
    for y, (kind, subject) in enumerate(rows):
        hits = [a for a in alerts if (a["kind"], a["subject"]) == (kind, subject)]
        xs = [a["window"] if a["window"] is not None else -0.5 for a in hits]
        colours = [ACCENT if a["severity"] == "high" else GREY for a in hits]
        ax.scatter(xs, [y] * len(xs), c=colours, s=40)
    ax.set_yticks(range(len(rows)), [f"{k}: {s}" for k, s in rows])
    ax.set_xlim(-1, max(windows, 1))
    ax.set_xlabel("window")
    first = min((a["window"] for a in alerts if a["window"] is not None), default=None)
    ax.set_title(
        f"{len(alerts)} alert(s), the first in window {first}" if alerts else "no alert fired"
    )
    fig.tight_layout()
    return fig

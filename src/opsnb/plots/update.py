"""Plots of the update stage: the screen of new labelled data and the metric deltas."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from opsnb.plots.style import (
    ACCENT,
    GREY,
    INK,
    _title,
    colours,
    new_figure,
    rule,
)


# -- the update stage ------------------------------------------------------------------------
def screen_counts(flagged: Mapping[str, int], rows: int, *, limit_share: float) -> Figure:
    """Rows flagged per check of the update screen, against the share that refuses the batch."""
    fig, ax = new_figure(6.4, 2.8)
    names = list(flagged)
    values = [flagged[n] for n in names]
    total = sum(values)
    over = total > limit_share * rows
    ax.barh(names, values, color=colours([bool(v) and over for v in values]))
    rule(ax, limit_share * rows, f"refuse the batch above {limit_share:.0%} of {rows:,} rows",
         axis="x")  # fmt: skip
    ax.set_xlabel("rows flagged")
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    _title(fig, f"{total:,} of {rows:,} rows flagged ({total / max(rows, 1):.1%})")
    return fig


def backdoor_groups(table: pd.DataFrame, *, top: int = 12) -> Figure:
    """The most significant groups of the backdoor scan: batch purity against its reference."""
    if "purity" not in table:  # no group was scanned (a regression target has no label purity)
        fig, ax = new_figure(6.4, 1.6)
        ax.set_axis_off()
        _title(fig, "no backdoor scan: 0 groups tested (it needs class labels)")
        return fig
    shown = table.head(top).iloc[::-1]
    fig, ax = new_figure(7.2, 0.35 * max(len(shown), 1) + 1.4)
    labels = [
        f"{r.feature} {'in' if r.kind == 'range' else '='} {r.value}" for r in shown.itertuples()
    ]
    flagged = (
        (shown["flagged"].to_numpy() > 0) if "flagged" in shown else np.zeros(len(shown), bool)
    )
    ax.barh(labels, shown["purity"], color=colours(flagged), label="purity in the batch")
    ax.scatter(shown["reference"], labels, color=INK, zorder=3, label="reference purity")
    ax.set_xlim(0, 1.05)
    ax.set_xlabel("share of the group's majority label")
    ax.tick_params(axis="y", labelsize=7)
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    found = int(flagged.sum())
    _title(fig, f"{found} group(s) far purer in the batch than in trusted data" if found
           else "no group is purer in the batch than trusted data says")  # fmt: skip
    return fig


def shift_psi(table: pd.DataFrame, *, threshold: float) -> Figure:
    """PSI per feature of a batch against the trusted holdout, with the refusal threshold."""
    shown = table.iloc[::-1]
    fig, ax = new_figure(6.4, 0.3 * max(len(shown), 1) + 1.4)
    over = (
        shown["shifted"].to_numpy() if "shifted" in shown else shown["psi"].to_numpy() >= threshold
    )
    ax.barh(shown["feature"], shown["psi"], color=colours(over))
    rule(ax, threshold, f"PSI {threshold} (and significant)", axis="x")
    ax.set_xlabel("PSI against the trusted holdout")
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    n = int(np.sum(over))
    _title(fig, f"{n} of {len(table)} features shifted" if n else "no feature shifted")
    return fig


def metric_deltas(
    comparisons: Mapping[str, Mapping[str, Any] | None], *, tolerance: float
) -> Figure:
    """Each comparison's metric difference (new - current) with its confidence interval."""
    shown = {k: v for k, v in comparisons.items() if v}
    fig, ax = new_figure(6.4, 0.5 * max(len(shown), 1) + 1.6)
    for i, c in enumerate(shown.values()):
        bad = c["high"] < 0 and c["delta"] < -tolerance
        ax.errorbar(c["delta"], i, xerr=[[c["delta"] - c["low"]], [c["high"] - c["delta"]]],
                    fmt="o", color=ACCENT if bad else GREY, capsize=4)  # fmt: skip
    ax.axvline(0, color=GREY, linewidth=0.8)
    rule(ax, -tolerance, f"tolerance -{tolerance:g}", axis="x")
    ax.set_yticks(range(len(shown)), list(shown))
    metric = next(iter(shown.values()))["metric"] if shown else "metric"
    ax.set_xlabel(f"{metric} difference on the trusted holdout (new - current)")
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    worst = min((c["delta"] for c in shown.values()), default=0.0)
    _title(fig, f"worst {metric} change {worst:+.4f} (bars: 95% CI)")
    return fig

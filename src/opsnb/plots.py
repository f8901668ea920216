"""Plotting helpers in one style: each takes data and returns a ``matplotlib.figure.Figure``.

The title states the answer, axes are labelled with units, the threshold the data is judged
against is drawn as a line, one accent colour marks what breaks the rule and grey the rest.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from matplotlib.figure import Figure

ACCENT = "#d62728"
GREY = "#9e9e9e"


def _figure(width: float = 6.4, height: float = 3.2) -> tuple[Figure, Any]:
    figure = Figure(figsize=(width, height), layout="constrained")
    return figure, figure.subplots()


def screen_counts(flagged: dict[str, int], rows: int, *, limit_share: float) -> Figure:
    """Rows flagged per check, against the share above which the whole batch is refused."""
    figure, ax = _figure()
    names = list(flagged)
    values = [flagged[n] for n in names]
    total = sum(values)
    over = total > limit_share * rows
    ax.barh(names, values, color=[ACCENT if v and over else GREY for v in values])
    ax.axvline(
        limit_share * rows,
        color="black",
        linestyle="--",
        linewidth=1,
        label=f"refuse the batch above {limit_share:.0%} of {rows} rows",
    )
    ax.set_xlabel("rows flagged")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"{total} of {rows} rows flagged ({total / rows:.1%})", fontsize=10)
    return figure


def backdoor_groups(table: pd.DataFrame, *, top: int = 12) -> Figure:
    """The most significant groups: label purity in the batch against its reference."""
    figure, ax = _figure(7.2, 0.35 * min(top, max(len(table), 1)) + 1.2)
    shown = table.head(top).iloc[::-1]
    labels = [
        f"{r.feature} {'in' if r.kind == 'range' else '='} {r.value}" for r in shown.itertuples()
    ]
    flagged = shown.get("flagged", pd.Series(0, index=shown.index)).to_numpy() > 0
    ax.barh(labels, shown["purity"], color=[ACCENT if f else GREY for f in flagged], label="batch")
    ax.scatter(shown["reference"], labels, color="black", zorder=3, label="reference")
    ax.set_xlim(0, 1.05)
    ax.set_xlabel("share of the group's majority label")
    ax.tick_params(axis="y", labelsize=7)
    ax.legend(loc="lower right", fontsize=8)
    found = int(flagged.sum())
    ax.set_title(
        f"{found} group(s) far purer in the batch than expected"
        if found
        else "no group is purer in the batch than expected",
        fontsize=10,
    )
    return figure


def shift_psi(table: pd.DataFrame, *, threshold: float) -> Figure:
    """PSI per feature of the batch against the trusted holdout, with the refusal threshold."""
    figure, ax = _figure(6.4, 0.3 * max(len(table), 1) + 1.2)
    shown = table.iloc[::-1]
    over = shown["psi"].to_numpy() >= threshold
    ax.barh(shown["feature"], shown["psi"], color=[ACCENT if o else GREY for o in over])
    ax.axvline(threshold, color="black", linestyle="--", linewidth=1, label=f"PSI {threshold}")
    ax.set_xlabel("PSI against the trusted holdout")
    ax.legend(loc="lower right", fontsize=8)
    n = int(over.sum())
    ax.set_title(
        f"{n} of {len(table)} features shifted" if n else "no feature shifted", fontsize=10
    )
    return figure


def metric_deltas(comparisons: dict[str, dict[str, Any] | None], *, tolerance: float) -> Figure:
    """Each comparison's metric difference (new - old) with its confidence interval."""
    figure, ax = _figure(6.4, 2.4)
    shown = {k: v for k, v in comparisons.items() if v}
    names = list(shown)
    for i, name in enumerate(names):
        c = shown[name]
        bad = c["high"] < 0 and c["delta"] < -tolerance
        ax.errorbar(
            c["delta"],
            i,
            xerr=[[c["delta"] - c["low"]], [c["high"] - c["delta"]]],
            fmt="o",
            color=ACCENT if bad else GREY,
            capsize=4,
        )
    ax.axvline(0, color="black", linewidth=0.8)
    ax.axvline(-tolerance, color="black", linestyle="--", linewidth=1, label=f"-{tolerance:g}")
    ax.set_yticks(range(len(names)), names)
    metric = next(iter(shown.values()))["metric"] if shown else "metric"
    ax.set_xlabel(f"{metric} difference on the trusted holdout (new - current)")
    ax.legend(loc="lower right", fontsize=8)
    worst = min((c["delta"] for c in shown.values()), default=0.0)
    ax.set_title(f"worst {metric} change {worst:+.4f} (95% CI bars)", fontsize=10)
    return figure

"""Cost plots in the house style of :mod:`opsnb.plots`: the usage heatmap and the scaling schedule.

Each helper takes plain data (the frames :mod:`opsnb.sizing` returns) and returns a ``Figure``
whose title states the answer.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from opsnb.plots import ACCENT, GREY, INK, new_figure, rule

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_PANELS = (
    ("requests", "requests"),
    ("cpu_s", "server CPU-s (requests x CPU-s/request)"),
    ("p99_ms", "p99 latency (ms)"),
)


def usage_heatmap(heat: pd.DataFrame, p99_budget_ms: float) -> Figure:
    """Hour-of-day x weekday of request volume, CPU use and p99; cells over budget outlined."""
    fig = Figure(figsize=(11.0, 7.2), layout="constrained")
    axes = fig.subplots(3, 1, sharex=True)
    cmap = LinearSegmentedColormap.from_list("usage", ["#ffffff", GREY, INK])
    for ax, (column, label) in zip(axes, _PANELS, strict=True):
        grid = heat.pivot(index="weekday", columns="hour", values=column).reindex(range(7))
        values = grid.to_numpy(dtype=float)
        image = ax.imshow(np.nan_to_num(values), aspect="auto", cmap=cmap)
        ax.set_yticks(range(7), WEEKDAYS)
        ax.tick_params(labelsize=8)
        fig.colorbar(image, ax=ax, label=label)
        if column == "p99_ms":
            over = np.argwhere(np.nan_to_num(values) > p99_budget_ms)
            for row, col in over:
                ax.add_patch(_outline(col, row))
    axes[-1].set_xticks(range(0, 24, 2), [f"{h:02d}" for h in range(0, 24, 2)])
    axes[-1].set_xlabel("hour of day (event time)")
    busiest = heat.iloc[int(np.argmax(heat["requests"].to_numpy()))]
    quiet = heat["requests"].min()
    over_cells = int((heat["p99_ms"].fillna(0) > p99_budget_ms).sum())
    fig.suptitle(
        f"busiest hour {WEEKDAYS[int(busiest['weekday'])]} {int(busiest['hour']):02d}:00 "
        f"({int(busiest['requests'])} requests vs {int(quiet)} in the quietest); "
        f"{over_cells} of 168 hours over the {p99_budget_ms:g} ms p99 budget"
    )
    return fig


def _outline(col: int, row: int) -> Rectangle:
    return Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, edgecolor=ACCENT, linewidth=1.5)


def scaling_schedule(plan: pd.DataFrame, saving: dict[str, float]) -> Figure:
    """Replicas hour by hour over the week against holding the peak all week."""
    fig, ax = new_figure(9.0, 3.4)
    hours = np.arange(len(plan))
    ax.step(hours, plan["replicas"], where="mid", color=INK, label="scheduled replicas")
    rule(ax, float(plan["replicas"].max()), "peak held all week")
    ax.set_xticks(range(0, len(plan), 24), WEEKDAYS[: (len(plan) + 23) // 24])
    ax.set_xlabel("hour of the week (event time)")
    ax.set_ylabel("replicas")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(
        f"following demand saves {saving['saving_share']:.0%}: "
        f"\\${saving['scheduled_usd_per_week']:.2f} vs \\${saving['peak_usd_per_week']:.2f} a week"
    )
    return fig

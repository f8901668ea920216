"""The house style every plot shares: colours, a styled figure, the rule line, the title.

The style (STYLE.md, "Plots and reports"): the title states the answer; axes are labelled with
units; the threshold or budget is a dashed line named in the legend; :data:`ACCENT` marks what
breaks the rule, :data:`GREY` the rest, :data:`INK` the chosen or reference series.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

ACCENT = "#d1495b"
"""What breaks the rule."""
GREY = "#a7adb4"
"""Everything that keeps the rule."""
INK = "#2b2d42"
"""The chosen series, the reference, rules and text."""


def new_figure(width: float = 6.4, height: float = 3.6) -> tuple[Figure, Axes]:
    """A figure with one axes in the house style."""
    fig = Figure(figsize=(width, height), layout="constrained")
    ax = fig.subplots()
    _style(ax)
    return fig, ax


def _style(ax: Axes) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(labelsize=8)
    ax.grid(axis="y", color="#e8e8e8", linewidth=0.6)
    ax.set_axisbelow(True)


def colours(breaks: Sequence[bool] | np.ndarray) -> list[str]:
    """:data:`ACCENT` where the rule is broken, :data:`GREY` elsewhere."""
    return [ACCENT if b else GREY for b in breaks]


def rule(ax: Axes, value: float, label: str, *, axis: str = "y") -> None:
    """Draw the threshold or budget ``value`` as a dashed line named ``label`` in the legend."""
    draw = ax.axhline if axis == "y" else ax.axvline
    draw(value, color=INK, linestyle="--", linewidth=1.2, label=label)


def _title(fig: Figure, text: str) -> None:
    # ~11 characters per inch at 11 pt: wrap rather than cut the answer off at the edge.
    width = max(20, int(fig.get_figwidth() * 11))
    fig.suptitle(textwrap.fill(text, width), fontsize=11, x=0.01, horizontalalignment="left")


def _pct(value: float) -> str:
    return f"{value:.1%}"


LIGHT = "#e4e6e9"
"""The middle of the drift heatmap's scale."""

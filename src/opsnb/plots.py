"""Plotting helpers in one house style: each takes data and returns a matplotlib Figure.

The title states the answer, axes carry units, the budget or floor a figure is judged against is
drawn as a line, one accent colour marks what breaks the rule and grey the rest.
"""

from __future__ import annotations

import math
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

ACCENT = "#d62728"
GREY = "#8c8c8c"
DARK = "#333333"
SIZE = (6.4, 3.6)


def _figure() -> tuple[Figure, Any]:
    fig, ax = plt.subplots(figsize=SIZE, layout="constrained")
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def _not_applicable(summary: dict[str, Any]) -> Figure:
    fig, ax = _figure()
    ax.set_axis_off()
    ax.set_title("Robustness does not apply to this model")
    ax.text(0.5, 0.5, summary.get("reason", ""), ha="center", va="center", wrap=True)
    plt.close(fig)
    return fig


def robust_accuracy_curve(summary: dict[str, Any]) -> Figure:
    """Accuracy against the L∞ budget: under attack, certified, under random noise."""
    if not summary["applies"]:
        return _not_applicable(summary)
    curve = summary["curve_epsilon"]
    eps = [c["epsilon"] for c in curve]
    at = summary["at_epsilon"]
    fig, ax = _figure()
    ax.plot(eps, [c["noise_accuracy"] for c in curve], color=GREY, ls="--", marker=".",
            label="random noise of the same size")  # fmt: skip
    ax.plot(eps, [c["robust_accuracy"] for c in curve], color=ACCENT, marker="o",
            label="under attack (found flips)")  # fmt: skip
    ax.plot(eps, [c["certified_accuracy"] for c in curve], color=DARK, ls=":", marker=".",
            label="certified (no flip exists)")  # fmt: skip
    ax.axhline(at["clean_accuracy"], color=GREY, lw=0.8)
    ax.axvline(at["epsilon"], color=GREY, lw=0.8)
    gate = summary.get("gate") or {}
    if gate.get("floor") is not None:
        ax.axhline(gate["floor"], color=ACCENT, lw=0.8, ls="-.", label="robustness floor")
    ax.set_xlabel("L∞ budget ε (features scaled to [0, 1] by the training range)")
    ax.set_ylabel("accuracy on attacked test rows")
    ax.set_ylim(0, 1.02)
    ax.legend(frameon=False, fontsize=8)
    ax.set_title(
        f"At ε {at['epsilon']}: accuracy {at['clean_accuracy']:.2f} clean, "
        f"{at['robust_accuracy']:.2f} under attack, {at['noise_accuracy']:.2f} under noise",
        fontsize=10,
    )
    plt.close(fig)
    return fig


def robust_accuracy_by_k(summary: dict[str, Any]) -> Figure:
    """Accuracy against the L0 budget k (features changed)."""
    if not summary["applies"]:
        return _not_applicable(summary)
    curve = summary["curve_k"]
    ks = [c["k"] for c in curve]
    values = [c["robust_accuracy"] for c in curve]
    k = summary["at_k"]["k"]
    fig, ax = _figure()
    colors = [ACCENT if c == k else GREY for c in ks]
    ax.bar(ks, values, color=colors)
    ax.axhline(summary["at_epsilon"]["clean_accuracy"], color=DARK, lw=0.8, label="clean")
    ax.set_xlabel("features an attacker may change (k)")
    ax.set_ylabel("accuracy on attacked test rows")
    ax.set_ylim(0, 1.02)
    ax.set_xticks(ks)
    ax.legend(frameon=False, fontsize=8)
    ax.set_title(
        f"Changing {k} feature(s) leaves accuracy {summary['at_k']['robust_accuracy']:.2f}"
    )
    plt.close(fig)
    return fig


def minimal_perturbation(summary: dict[str, Any], linf: np.ndarray) -> Figure:
    """The distribution of the smallest flip found per row, the budget drawn as a line."""
    if not summary["applies"]:
        return _not_applicable(summary)
    eps = summary["at_epsilon"]["epsilon"]
    found = np.asarray(linf)[np.isfinite(linf)]
    fig, ax = _figure()
    if found.size:
        bins = np.linspace(0, max(float(found.max()), eps) * 1.05, 30)
        ax.hist(found[found > eps], bins=bins, color=GREY, label="needs more than ε")
        ax.hist(found[found <= eps], bins=bins, color=ACCENT, label="flips within ε")
    ax.axvline(eps, color=DARK, lw=0.8)
    ax.set_xlabel("smallest L∞ change found to flip the decision (scaled units)")
    ax.set_ylabel("test rows")
    ax.legend(frameon=False, fontsize=8)
    median = summary["minimal_linf"]["median"]
    shown = "none found" if median is None or not math.isfinite(median) else f"{median:.3g}"
    ax.set_title(
        f"Median smallest flip {shown}; {int((found <= eps).sum())} rows flip within ε {eps}"
    )
    plt.close(fig)
    return fig


def attackable_features(summary: dict[str, Any], *, top: int = 10) -> Figure:
    """Which features the smallest flips change most often."""
    if not summary["applies"]:
        return _not_applicable(summary)
    rows = summary["features"][:top][::-1]
    fig, ax = _figure()
    names = [r["feature"] for r in rows]
    values = [r["linf_share"] for r in rows]
    colors = [ACCENT if v == max(values, default=0) and v > 0 else GREY for v in values]
    ax.barh(names, values, color=colors)
    ax.set_xlabel("share of attacked rows whose smallest flip changes the feature")
    ax.set_xlim(0, 1)
    lead = rows[-1]["feature"] if rows else "none"
    ax.set_title(f"'{lead}' is the most attackable feature")
    plt.close(fig)
    return fig

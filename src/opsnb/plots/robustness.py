"""Plots of the robustness stage: robust accuracy, minimal perturbation, attackable features."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
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


# -- robustness ----------------------------------------------------------------------------------
def _not_applicable(summary: Mapping[str, Any]) -> Figure:
    fig, ax = new_figure(6.4, 1.6)
    ax.set_axis_off()
    _title(fig, f"Robustness does not apply: {summary.get('reason', '')}")
    return fig


def robust_accuracy_curve(summary: Mapping[str, Any]) -> Figure:
    """Accuracy against the L∞ budget ε: under attack, certified, under random noise."""
    if not summary["applies"]:
        return _not_applicable(summary)
    curve = summary["curve_epsilon"]
    eps = [c["epsilon"] for c in curve]
    at = summary["at_epsilon"]
    fig, ax = new_figure()
    ax.plot(eps, [c["noise_accuracy"] for c in curve], color=GREY, marker=".",
            label="random noise of the same size")  # fmt: skip
    ax.plot(eps, [c["robust_accuracy"] for c in curve], color=ACCENT, marker="o",
            label="under attack (flips found)")  # fmt: skip
    ax.plot(eps, [c["certified_accuracy"] for c in curve], color=INK, linestyle=":",
            marker=".", label="certified (no flip exists)")  # fmt: skip
    rule(ax, at["epsilon"], f"budget ε {at['epsilon']:g}", axis="x")
    gate = summary.get("gate") or {}
    if gate.get("floor") is not None:
        rule(ax, gate["floor"], f"robustness floor {gate['floor']:g}")
    ax.axhline(at["clean_accuracy"], color=GREY, linewidth=0.8)
    ax.set_xlabel("L∞ budget ε (features scaled to [0, 1] by the training range)")
    ax.set_ylabel("accuracy on attacked test rows")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8, frameon=False)
    _title(
        fig,
        f"At ε {at['epsilon']:g} accuracy falls from {at['clean_accuracy']:.2f} to "
        f"{at['robust_accuracy']:.2f} under attack ({at['noise_accuracy']:.2f} under noise)",
    )
    return fig


def robust_accuracy_by_k(summary: Mapping[str, Any]) -> Figure:
    """Accuracy against the L0 budget k (features an attacker may change)."""
    if not summary["applies"]:
        return _not_applicable(summary)
    curve = summary["curve_k"]
    ks = [c["k"] for c in curve]
    values = [c["robust_accuracy"] for c in curve]
    k = summary["at_k"]["k"]
    clean = summary["at_epsilon"]["clean_accuracy"]
    fig, ax = new_figure()
    ax.bar(ks, values, color=colours([c == k for c in ks]))
    rule(ax, clean, f"clean accuracy {clean:.2f}")
    ax.set_xlabel("features an attacker may change (k)")
    ax.set_ylabel("accuracy on attacked test rows")
    ax.set_ylim(0, 1.02)
    ax.set_xticks(ks)
    ax.legend(fontsize=8, frameon=False)
    _title(fig, f"Changing {k} feature(s) leaves accuracy {summary['at_k']['robust_accuracy']:.2f}")
    return fig


def minimal_perturbation(summary: Mapping[str, Any], linf: np.ndarray) -> Figure:
    """The distribution of the smallest flip found per row, the budget drawn as a line."""
    if not summary["applies"]:
        return _not_applicable(summary)
    eps = summary["at_epsilon"]["epsilon"]
    found = np.asarray(linf)[np.isfinite(linf)]
    fig, ax = new_figure()
    if found.size:
        bins = [float(b) for b in np.linspace(0, max(float(found.max()), eps) * 1.05, 30)]
        ax.hist(found[found > eps], bins=bins, color=GREY, label="needs more than ε")
        ax.hist(found[found <= eps], bins=bins, color=ACCENT, label="flips within ε")
    rule(ax, eps, f"budget ε {eps:g}", axis="x")
    ax.set_xlabel("smallest L∞ change found to flip the decision (scaled units)")
    ax.set_ylabel("test rows")
    ax.legend(fontsize=8, frameon=False)
    median = summary["minimal_linf"]["median"]
    shown = "none found" if median is None else f"{median:.3g}"
    _title(fig, f"{int((found <= eps).sum())} rows flip within ε {eps:g}; median smallest flip "
                f"{shown}")  # fmt: skip
    return fig


def attackable_features(summary: Mapping[str, Any], *, top: int = 10) -> Figure:
    """Which features the smallest flips change most often."""
    if not summary["applies"]:
        return _not_applicable(summary)
    rows = list(summary["features"])[:top][::-1]
    names = [r["feature"] for r in rows]
    values = [r["linf_share"] for r in rows]
    fig, ax = new_figure()
    peak = max(values, default=0)
    ax.barh(names, values, color=colours([v == peak and v > 0 for v in values]))
    ax.set_xlabel("share of attacked rows whose smallest flip changes the feature")
    ax.set_xlim(0, 1)
    lead = rows[-1]["feature"] if rows else "none"
    _title(fig, f"'{lead}' is the most attackable feature")
    return fig

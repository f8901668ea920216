"""Plots of the prepare stage: feature distributions and class balance."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from opsnb.plots.style import (
    ACCENT,
    GREY,
    INK,
    _pct,
    _style,
    _title,
    colours,
    new_figure,
    rule,
)


# -- prepare -------------------------------------------------------------------------------------
def _field(feature: Any, key: str) -> Any:
    """A feature's field, from ``schema.json``'s dict or a typed ``opsnb.schema.Feature``."""
    return feature.get(key) if isinstance(feature, Mapping) else getattr(feature, key, None)


def distributions(
    frame: pd.DataFrame,
    features: Sequence[Any],
    *,
    limit: int = 16,
    missing_limit: float = 0.05,
) -> Figure:
    """One panel per feature (the first ``limit``): a histogram with the accepted range, or counts.

    ``features`` are the schema's features (typed ``Feature`` objects or their dicts). A panel
    is accented when the feature misses more than ``missing_limit`` of its values or has values
    outside the contract's accepted range (``lower``/``upper`` in ``schema.json``).
    """
    shown = list(features)[:limit]
    cols = min(4, max(1, len(shown)))
    rows = max(1, -(-len(shown) // cols))
    fig = Figure(figsize=(3.1 * cols, 2.3 * rows + 0.5), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    flagged = []
    for ax, feature in zip(axes, shown, strict=False):
        _style(ax)
        name, kind = _field(feature, "name"), _field(feature, "kind")
        column = frame[name]
        missing = float(column.isna().mean())
        if kind == "numeric":
            values = pd.to_numeric(column, errors="coerce").dropna()
            lower, upper = _field(feature, "lower"), _field(feature, "upper")
            outside = bool(
                lower is not None
                and upper is not None
                and ((values < lower) | (values > upper)).any()
            )
            bad = missing > missing_limit or outside
            ax.hist(values, bins=30, color=ACCENT if bad else GREY)
            if lower is not None and upper is not None:
                ax.axvline(lower, color=INK, linestyle="--", linewidth=0.9)
                ax.axvline(upper, color=INK, linestyle="--", linewidth=0.9)
            ax.set_xlabel(f"{name} (value; dashed: accepted range)", fontsize=7)
        else:
            bad = missing > missing_limit
            counts = column.astype("string").value_counts().head(10)
            ax.barh(counts.index.astype(str), counts.to_numpy(), color=ACCENT if bad else GREY)
            ax.invert_yaxis()
            ax.tick_params(axis="y", labelsize=7)
            ax.set_xlabel(f"{name} (rows per category)", fontsize=7)
        ax.set_ylabel("rows" if kind == "numeric" else "", fontsize=7)
        ax.set_title(f"{name}: {_pct(missing)} missing", fontsize=8,
                     color=ACCENT if bad else INK)  # fmt: skip
        if bad:
            flagged.append(name)
    for ax in axes[len(shown) :]:
        ax.set_visible(False)
    more = f" (first {limit} of {len(features)})" if len(features) > limit else ""
    if flagged:
        answer = f"{len(flagged)} of {len(shown)} features need a look: {', '.join(flagged[:4])}"
    else:
        answer = (
            f"All {len(shown)} features within their accepted range, ≤ {missing_limit:.0%} missing"
        )
    _title(fig, answer + more)
    return fig


def balance(
    splits: Mapping[str, Mapping[str, Any]],
    *,
    task: str,
    tolerance: float = 0.05,
    std_tolerance: float = 0.25,
) -> Figure:
    """The target per split against the training split's value (dashed).

    Binary: the positive share, accented when more than ``tolerance`` (absolute) away from
    train's. Regression: the mean ± std, accented when the mean is more than ``std_tolerance``
    of train's standard deviations away from train's mean.
    """
    names = list(splits)
    fig, ax = new_figure(6.4, 3.0)
    reference_name = "train" if "train" in splits else names[0]
    if task == "binary":
        values = np.array([float(splits[n]["positive_share"]) for n in names])
        reference = float(splits[reference_name]["positive_share"])
        breaks = np.abs(values - reference) > tolerance
        ax.bar(names, values, color=colours(breaks))
        rule(ax, reference, f"{reference_name}: {_pct(reference)}")
        ax.set_ylabel("positive share (fraction of rows)")
        for x, v in enumerate(values):
            ax.annotate(_pct(v), (x, v), ha="center", va="bottom", fontsize=8)
        spread = f"{_pct(values.min())}–{_pct(values.max())}"
        limit = f"{tolerance * 100:.0f} points"
    else:
        values = np.array([float(splits[n]["target_mean"]) for n in names])
        stds = np.array([float(splits[n]["target_std"]) for n in names])
        reference = float(splits[reference_name]["target_mean"])
        allowed = std_tolerance * float(splits[reference_name]["target_std"])
        breaks = np.abs(values - reference) > allowed
        ax.bar(names, values, yerr=stds, color=colours(breaks), capsize=3, ecolor=INK)
        rule(ax, reference, f"{reference_name} mean: {reference:.3g}")
        ax.set_ylabel("target mean ± std (target units)")
        spread = f"{values.min():.3g}–{values.max():.3g}"
        limit = f"{allowed:.3g}"
    ax.set_xlabel("split")
    ax.legend(fontsize=8, frameon=False, loc="lower right")
    off = [n for n, b in zip(names, breaks, strict=True) if b]
    what = "Positive share" if task == "binary" else "Target mean"
    if off:
        _title(fig, f"{what} of {', '.join(off)} is more than {limit} off {reference_name}")
    else:
        _title(fig, f"{what} {spread} in every split: within {limit} of {reference_name}")
    return fig

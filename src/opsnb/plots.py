"""Plotting helpers in one house style: each takes data and returns a matplotlib ``Figure``.

The style (STYLE.md, "Plots and reports"): the title states the answer ("2 of 12 features
drifted", not "PSI by feature"); axes are labelled with units; the threshold or budget a value is
judged against is drawn as a dashed line and named in the legend; one accent colour
(:data:`ACCENT`) marks what breaks the rule, everything else is grey (:data:`GREY`), and the
chosen or reference series is dark (:data:`INK`). Figures are built with the object-oriented API
(no pyplot state), so a notebook shows one with ``stage.figure(name, fig)`` and nothing leaks.

Add a helper here for a new plot: take plain data (frames, arrays, dicts from the stage's JSON),
compute the verdict the title states, colour by :func:`colours`, and draw the rule with
:func:`rule`.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score, roc_curve

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


# -- design --------------------------------------------------------------------------------------
def cv_curves(
    scores: Sequence[Mapping[str, Any]], *, metric: str, baseline: float | None = None
) -> Figure:
    """Cross-validated loss per boosting round for each candidate; the winner dark.

    Each score holds its hyperparameters, ``cv_<metric>`` and ``cv_curve`` (the test-fold mean
    per round). A candidate that ends no better than the ``baseline`` (dashed) is accented.
    """
    key = f"cv_{metric}"
    fig, ax = new_figure(6.4, 3.6)
    winner = min(scores, key=lambda s: s[key])
    hyper = [k for k in winner if k not in (key, "rounds", "cv_curve")]
    for score in scores:
        curve = np.asarray(score.get("cv_curve") or [score[key]], dtype=float)
        label = ", ".join(f"{k}={score[k]}" for k in hyper)
        fails = baseline is not None and score[key] >= baseline
        colour = ACCENT if fails else INK if score is winner else GREY
        width = 1.8 if score is winner else 1.1
        ax.plot(np.arange(1, len(curve) + 1), curve, color=colour, linewidth=width, label=label)
    ax.scatter([winner["rounds"]], [winner[key]], color=INK, zorder=3)
    if baseline is not None:
        rule(ax, baseline, f"baseline (predict the mean): {baseline:.3f}")
    ax.set_xlabel("boosting rounds (trees)")
    ax.set_ylabel(f"held-out CV {metric} (lower: better)")
    ax.legend(fontsize=7, frameon=False)
    chosen = ", ".join(f"{k}={winner[k]}" for k in hyper)
    versus = f" vs baseline {baseline:.3f}" if baseline is not None else ""
    _title(
        fig, f"{chosen} wins: CV {metric} {winner[key]:.3f} at {winner['rounds']} rounds{versus}"
    )
    return fig


# -- train ---------------------------------------------------------------------------------------
def roc(y_true: np.ndarray, p: np.ndarray, *, floor: float) -> Figure:
    """The ROC curve on the test split; accented when its AUC is below the problem's ``floor``."""
    fpr, tpr, _ = roc_curve(y_true, p)
    auc = float(roc_auc_score(y_true, p))
    fig, ax = new_figure(4.6, 4.2)
    ax.plot(
        fpr, tpr, color=ACCENT if auc < floor else INK, linewidth=1.8, label=f"model: AUC {auc:.3f}"
    )
    ax.plot([0, 1], [0, 1], color=GREY, linestyle=":", label="chance: AUC 0.5")
    ax.set_xlabel("false positive rate (share of negatives flagged)")
    ax.set_ylabel("true positive rate (share of positives caught)")
    ax.set_aspect("equal")
    ax.legend(fontsize=8, frameon=False, loc="lower right")
    verdict = "meets" if auc >= floor else "is below"
    _title(fig, f"AUC {auc:.3f} on {len(y_true):,} test rows {verdict} the floor {floor:g}")
    return fig


def calibration(table: Sequence[Mapping[str, Any]], *, tolerance: float = 0.05) -> Figure:
    """Observed against predicted positive rate per probability bin; off-diagonal bins accented.

    ``table`` is :func:`opsnb.evaluation.calibration_table`'s output. A bin is off when its
    observed rate is more than ``tolerance`` from its mean prediction *and* more than two
    standard errors of a bin of its size (so a 12-row bin is not blamed for its noise).
    """
    predicted = np.array([float(r["mean_predicted"]) for r in table])
    observed = np.array([float(r["observed_rate"]) for r in table])
    rows = np.array([int(r["rows"]) for r in table])
    gap = np.abs(observed - predicted)
    noise = 2 * np.sqrt(np.clip(predicted * (1 - predicted), 1e-6, None) / np.maximum(rows, 1))
    breaks = (gap > tolerance) & (gap > noise)
    fig, ax = new_figure(4.6, 4.2)
    ax.plot([0, 1], [0, 1], color=INK, linestyle="--", linewidth=1.2, label="perfectly calibrated")
    sizes = 20 + 180 * rows / max(int(rows.max()) if len(rows) else 1, 1)
    ax.scatter(predicted, observed, s=sizes, color=colours(breaks), zorder=3,
               label=f"bin (size ∝ rows); off by > {tolerance:g} and 2 s.e. accented")  # fmt: skip
    ax.set_xlim(-0.03, 1.03)
    ax.set_ylim(-0.03, 1.03)
    ax.set_aspect("equal")
    ax.set_xlabel("mean predicted probability in bin")
    ax.set_ylabel("observed positive rate in bin")
    ax.legend(fontsize=7, frameon=False, loc="upper left")
    good = int((~breaks).sum())
    worst = float(gap.max()) if len(table) else 0.0
    total = int(rows.sum())
    _title(
        fig, f"Calibrated in {good} of {len(table)} bins (largest gap {worst:.3f}, {total:,} rows)"
    )
    return fig


def predicted_vs_actual(
    y_true: np.ndarray, y_pred: np.ndarray, *, metric: str, value: float, floor: float, ok: bool
) -> Figure:
    """Regression: predictions against the truth on the test split, the diagonal as the rule."""
    fig, ax = new_figure(4.6, 4.2)
    ax.scatter(y_true, y_pred, s=6, alpha=0.5, color=GREY if ok else ACCENT)
    low = float(min(np.min(y_true), np.min(y_pred)))
    high = float(max(np.max(y_true), np.max(y_pred)))
    ax.plot([low, high], [low, high], color=INK, linestyle="--", label="prediction = truth")
    ax.set_xlabel("true value (target units)")
    ax.set_ylabel("predicted value (target units)")
    ax.legend(fontsize=8, frameon=False)
    verdict = "meets" if ok else "misses"
    _title(fig, f"{metric} {value:.3f} on {len(y_true):,} test rows {verdict} the floor {floor:g}")
    return fig


def model_quality(
    task: str, y_true: np.ndarray, y_pred: np.ndarray, metrics: Mapping[str, Any]
) -> dict[str, Figure]:
    """The train stage's evidence by task: ROC and calibration (binary), or predicted vs actual.

    ``metrics`` is :func:`opsnb.evaluation.evaluate`'s output for the same rows.
    """
    if task == "binary":
        return {
            "roc": roc(y_true, y_pred, floor=float(metrics["floor"])),
            "calibration": calibration(metrics["calibration"]),
        }
    metric = str(metrics["metric"])
    return {
        "predicted vs actual": predicted_vs_actual(
            y_true,
            y_pred,
            metric=metric,
            value=float(metrics["scores"][metric]),
            floor=float(metrics["floor"]),
            ok=bool(metrics["meets_floor"]),
        )
    }


# -- operationalize ------------------------------------------------------------------------------
def latency_vs_batch(rows: Sequence[Mapping[str, Any]], *, budget_ms: float) -> Figure:
    """Milliseconds per call against rows per call: p50 grey, p99 dark, over budget accented.

    ``rows`` hold ``batch``, ``p50_ms`` and ``p99_ms`` (:mod:`opsnb.latency`).
    """
    batches = np.array([int(r["batch"]) for r in rows])
    p50 = np.array([float(r["p50_ms"]) for r in rows])
    p99 = np.array([float(r["p99_ms"]) for r in rows])
    over = p99 > budget_ms
    fig, ax = new_figure(6.4, 3.6)
    ax.plot(batches, p50, color=GREY, marker="o", markersize=4, label="p50 per call")
    ax.plot(batches, p99, color=INK, linewidth=1.6, label="p99 per call")
    ax.scatter(batches, p99, color=colours(over), zorder=3, s=28)
    rule(ax, budget_ms, f"p99 budget: {budget_ms:g} ms")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("rows per call (batch size)")
    ax.set_ylabel("latency per call (ms, log scale)")
    ax.legend(fontsize=8, frameon=False, loc="lower right")
    if not over.any():
        _title(fig, f"p99 within the {budget_ms:g} ms budget up to {batches.max():,} rows per call")
    else:
        first = int(batches[over].min())
        _title(fig, f"p99 over the {budget_ms:g} ms budget from {first:,} rows per call")
    return fig


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

LIGHT = "#e4e6e9"
"""The middle of the drift heatmap's scale."""


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

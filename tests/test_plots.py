"""Plotting helpers: the title states the answer, the rule is drawn, what breaks it accented."""

import matplotlib.colors as mcolors
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from opsnb import plots
from opsnb.evaluation import calibration_table, evaluate
from opsnb.story import png_bytes


def _colours(collection) -> list[str]:
    return [mcolors.to_hex(c) for c in collection.get_facecolors()]


def _bar_colours(ax) -> list[str]:
    return [mcolors.to_hex(p.get_facecolor()) for p in ax.patches]


def _title(fig: Figure) -> str:
    return fig._suptitle.get_text()


def _dashed(ax) -> list[float]:
    return [line for line in ax.get_lines() if line.get_linestyle() == "--"]


def _renders(fig: Figure) -> None:
    png = png_bytes(fig)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(png) > 5_000


def test_drift_accents_the_features_over_the_threshold() -> None:
    table = pd.DataFrame({"feature": ["a", "b", "c"], "psi": [0.35, 0.05, 0.21]})
    fig = plots.drift(table, threshold=0.2)
    ax = fig.axes[0]
    assert _title(fig) == "2 of 3 features drifted (PSI ≥ 0.2)"
    assert _bar_colours(ax) == [plots.ACCENT, plots.ACCENT, plots.GREY]  # worst first
    assert [line.get_xdata()[0] for line in _dashed(ax)] == [0.2]
    assert "population stability index" in ax.get_xlabel()
    quiet = plots.drift(table.assign(psi=[0.01, 0.02, 0.03]), threshold=0.2)
    assert _title(quiet) == "No feature drifted: largest PSI 0.030 < 0.2"
    _renders(fig)


def test_latency_draws_the_budget_and_accents_the_batches_over_it() -> None:
    rows = [{"batch": b, "p50_ms": b / 100, "p99_ms": b / 50} for b in (1, 64, 4096)]
    fig = plots.latency_vs_batch(rows, budget_ms=50)
    ax = fig.axes[0]
    assert _title(fig) == "p99 over the 50 ms budget from 4,096 rows per call"
    assert _colours(ax.collections[0]) == [plots.GREY, plots.GREY, plots.ACCENT]
    assert [line.get_ydata()[0] for line in _dashed(ax)] == [50]
    assert ax.get_xlabel() == "rows per call (batch size)"
    assert "ms" in ax.get_ylabel()
    fine = plots.latency_vs_batch(rows[:2], budget_ms=50)
    assert _title(fine) == "p99 within the 50 ms budget up to 64 rows per call"


def test_roc_and_calibration_state_the_verdict() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(size=2000)
    y = (rng.uniform(size=2000) < p).astype(int)  # calibrated by construction
    fig = plots.roc(y, p, floor=0.75)
    assert _title(fig).startswith("AUC 0.")
    assert "meets the floor 0.75" in _title(fig)
    assert "below" in _title(plots.roc(y, rng.uniform(size=2000), floor=0.75))
    calibrated = plots.calibration(calibration_table(y, p))
    assert _title(calibrated).startswith("Calibrated in 10 of 10 bins")
    skewed = plots.calibration(calibration_table(y, np.clip(p + 0.3, 0, 1)))
    assert plots.ACCENT in _colours(skewed.axes[0].collections[0])
    _renders(calibrated)


def test_cv_curves_name_the_winner_and_draw_the_baseline() -> None:
    scores = [
        {"max_depth": 4, "cv_logloss": 0.41, "rounds": 3, "cv_curve": [0.6, 0.5, 0.41]},
        {"max_depth": 6, "cv_logloss": 0.55, "rounds": 2, "cv_curve": [0.6, 0.55]},
    ]
    fig = plots.cv_curves(scores, metric="logloss", baseline=0.52)
    ax = fig.axes[0]
    assert _title(fig) == "max_depth=4 wins: CV logloss 0.410 at 3 rounds vs baseline 0.520"
    colours = [line.get_color() for line in ax.get_lines()[:2]]
    assert colours == [plots.INK, plots.ACCENT]  # the loser did not beat the baseline
    assert ax.get_xlabel() == "boosting rounds (trees)"


def test_balance_and_distributions_flag_what_is_off() -> None:
    splits = {"train": {"positive_share": 0.2}, "valid": {"positive_share": 0.21},
              "test": {"positive_share": 0.31}}  # fmt: skip
    fig = plots.balance(splits, task="binary")
    assert _title(fig) == "Positive share of test is more than 5 points off train"
    assert _bar_colours(fig.axes[0]) == [plots.GREY, plots.GREY, plots.ACCENT]
    reg = {n: {"target_mean": m, "target_std": 1.0} for n, m in (("train", 0), ("test", 0.1))}
    assert "in every split" in _title(plots.balance(reg, task="regression"))
    frame = pd.DataFrame({"x": [1.0, 2.0, None, None], "c": ["a", "b", "a", "a"]})
    features = [{"name": "x", "kind": "numeric", "lower": 0.0, "upper": 3.0},
                {"name": "c", "kind": "categorical"}]  # fmt: skip
    dist = plots.distributions(frame, features)
    assert _title(dist) == "1 of 2 features need a look: x"
    assert sum(ax.get_visible() for ax in dist.axes) == 2
    _renders(dist)


@pytest.mark.parametrize("task", ["binary", "regression"])
def test_model_quality_fits_the_task(task: str) -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300) if task == "binary" else rng.normal(size=300)
    p = np.clip(y * 0.6 + rng.uniform(size=300) * 0.4, 0, 1) if task == "binary" else y + 0.1
    metric = "auc" if task == "binary" else "r2"
    figures = plots.model_quality(task, y, p, evaluate(task, y, p, metric=metric, floor=0.3))
    expected = ["roc", "calibration"] if task == "binary" else ["predicted vs actual"]
    assert list(figures) == expected

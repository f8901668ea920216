"""What a stage keeps for people: figures as PNG, tidy tables, a one-line verdict with numbers."""

import base64

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from IPython.core.interactiveshell import InteractiveShell
from matplotlib.figure import Figure

from opsnb import plots, story
from opsnb.errors import StageError


def test_a_kept_figure_is_a_png_and_a_rerun_replaces_it() -> None:
    kept = story.Story("monitor")
    fig, ax = plots.new_figure()
    ax.plot([0, 1], [0, 1])
    fig.suptitle("the answer")
    kept.figure("drift", fig)
    kept.figure("drift", fig)  # the cell ran twice
    (item,) = kept.items
    assert base64.b64decode(item["png"])[:4] == b"\x89PNG"
    assert (item["title"], item["width"], item["height"]) == ("the answer", 640, 360)
    with pytest.raises(StageError, match=r"figure 'x': expected a matplotlib Figure, got dict"):
        kept.figure("x", {})  # type: ignore[arg-type]


def test_pyplot_figures_are_closed_after_keeping() -> None:
    fig = plt.figure()
    story.Story("s").figure("f", fig)
    assert not plt.fignum_exists(fig.number)


def test_verdict_is_one_line_with_numbers() -> None:
    kept = story.Story("train")
    verdict = kept.set_verdict("  PASS: AUC 0.801 >= floor 0.75 ", passed=True)
    assert repr(verdict) == "PASS: AUC 0.801 >= floor 0.75"
    assert 'data-verdict="pass"' in verdict._repr_html_()
    assert kept.to_dict()["verdict"] == {"text": repr(verdict), "passed": True, "label": "PASS"}
    for bad, why in (("", "is empty"), ("PASS\nAUC 0.8", "has several lines"),
                     ("PASS: looks fine", "states no number")):  # fmt: skip
        with pytest.raises(StageError, match=f"stage 'train': verdict .* {why}; expected one"):
            kept.set_verdict(bad, passed=True)


def test_tidy_rounds_to_what_matters_and_cuts_times_to_the_second() -> None:
    frame = pd.DataFrame({
        "auc": [0.92461734, 0.5], "count": [12345, 7], "big": [1234.5678, 0.000123456],
        "at": pd.to_datetime(["2024-01-01 10:00:00.123456789", "2024-01-02 00:00:00.5"]),
    })  # fmt: skip
    tidied = story.tidy(frame)
    assert tidied["auc"].tolist() == [0.925, 0.5]
    assert tidied["count"].tolist() == [12345, 7]
    assert tidied["big"].tolist() == [1235.0, 0.000123]
    assert str(tidied["at"][0]) == "2024-01-01 10:00:00"
    kept = story.Story("s")
    kept.table("long", pd.DataFrame({"x": np.arange(100)}))
    assert "first 30 of 100 rows" in kept.items[0]["html"]
    kept.table("alerts", pd.DataFrame(columns=["kind", "message"]))
    assert "none" in kept.items[1]["html"]


def test_inside_ipython_a_bare_figure_renders_as_png() -> None:
    assert story.enable_png() is False  # no kernel in a plain test process
    shell = InteractiveShell.instance()
    try:
        assert story.enable_png() is True
        fig = Figure()
        fig.subplots().plot([1, 2])
        data, _ = shell.display_formatter.format(fig)
        assert "image/png" in data
    finally:
        InteractiveShell.clear_instance()

"""The update stage's figures: each title states the answer, the threshold is drawn."""

import pandas as pd

from opsnb import plots


def test_screen_counts_marks_a_batch_over_the_limit() -> None:
    figure = plots.screen_counts({"contract": 300, "label issue": 10, "backdoor": 0}, 1000,
                                 limit_share=0.25)  # fmt: skip
    ax = figure.axes[0]
    assert figure.get_suptitle() == "310 of 1,000 rows flagged (31.0%)"
    assert ax.patches[0].get_facecolor()[:3] != ax.patches[2].get_facecolor()[:3]
    assert ax.lines[0].get_xdata()[0] == 250


def test_backdoor_groups_and_shift_titles() -> None:
    table = pd.DataFrame({"kind": ["value", "range"], "feature": ["income", "age"],
                          "value": ["77777.0", "[20, 25)"], "purity": [1.0, 0.8],
                          "reference": [0.8, 0.75], "flagged": [60, 0]})  # fmt: skip
    assert plots.backdoor_groups(table).get_suptitle().startswith("1 group(s) far purer")
    shift = pd.DataFrame({"feature": ["loan_amount", "age"], "psi": [0.9, 0.01]})
    assert plots.shift_psi(shift, threshold=0.2).get_suptitle() == "1 of 2 features shifted"
    assert plots.backdoor_groups(table.assign(flagged=0)).get_suptitle().startswith("no group")


def test_metric_deltas_draws_each_interval() -> None:
    comparisons = {
        "batch added (RONI)": {"delta": -0.02, "low": -0.03, "high": -0.01, "metric": "auc"},
        "challenger run": None,
    }
    figure = plots.metric_deltas(comparisons, tolerance=0.002)
    assert figure.get_suptitle() == "worst auc change -0.0200 (bars: 95% CI)"
    assert [t.get_text() for t in figure.axes[0].get_yticklabels()] == ["batch added (RONI)"]


def test_a_batch_without_a_backdoor_scan_draws_a_sentence() -> None:
    fig = plots.backdoor_groups(pd.DataFrame([]))
    shown = [t.get_text() for t in fig.texts] + [a.get_title() for a in fig.axes]
    if fig._suptitle is not None:
        shown.append(fig._suptitle.get_text())
    assert any("0 groups tested" in text for text in shown), shown

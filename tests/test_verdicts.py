"""Each stage's one-line verdict: PASS/FAIL against problem.json's criteria, or the decision."""

from opsnb import datasets, evaluation, prepare, training
from opsnb.problem import Problem


def test_train_fails_below_the_floor_and_says_by_how_much() -> None:
    metrics = {"metric": "auc", "floor": 0.75, "meets_floor": False, "rows": 3000,
               "scores": {"auc": 0.7012}}  # fmt: skip
    assert evaluation.verdict(metrics) == {
        "text": "FAIL: auc 0.701 < floor 0.75 on 3,000 test rows, computed from the sealed "
        "model file",
        "passed": False,
    }
    loss = {**metrics, "metric": "rmse", "floor": 2.0, "meets_floor": True, "scores": {"rmse": 1.5}}
    assert evaluation.verdict(loss)["text"].startswith("PASS: rmse 1.500 <= floor 2")


def test_design_says_what_it_chose_and_whether_it_beats_the_baseline() -> None:
    scores = [{"max_depth": 4, "cv_logloss": 0.41, "rounds": 80},
              {"max_depth": 6, "cv_logloss": 0.43, "rounds": 60}]  # fmt: skip
    chosen = {"max_depth": 4, "n_estimators": 80}
    better = training.design_verdict(chosen, scores, {"logloss": 0.52}, "binary")
    assert better == {
        "text": "Chose max_depth=4 with 80 trees of 2 candidates: CV logloss 0.410 vs baseline "
        "0.520 (21% better)",
        "passed": True,
    }
    worse = training.design_verdict(chosen, scores, {"logloss": 0.40}, "binary")
    assert worse["passed"] is False
    assert worse["text"].endswith("no better than the baseline 0.400")


def test_prepare_and_dataset_state_their_numbers() -> None:
    profile = {"rows_in": 1000, "contract": "frozen",
               "quarantine": {"rows": 80, "share": 0.08},
               "splits": {"train": {"rows": 600}, "test": {"rows": 320}}}  # fmt: skip
    verdict = prepare.verdict(profile, max_quarantine_share=0.05, features=11)
    assert verdict["passed"] is False
    assert verdict["text"] == (
        "FAIL: 80 of 1,000 rows quarantined (8.0% > max 5%); 11 features in the frozen "
        "contract; splits train/test = 600/320 rows"
    )
    card = {"task": "regression", "target": "y", "target_summary": {"mean": 152.13},
            "rows": 442, "columns": {"a": "f", "y": "f"}, "source": "sklearn:diabetes",
            "timestamp": None}  # fmt: skip
    assert datasets.verdict(card)["text"] == (
        "Using 442 rows x 2 columns from sklearn:diabetes: target 'y' (regression, mean 152.1), "
        "no time order"
    )


def test_the_problem_reads_as_a_sentence_before_and_after_resolution() -> None:
    stated = Problem("auto", "auto", "auto", None, 50.0, 1.0)
    assert stated.describe() == (
        "Predict the data set's own label (task read from the labels); success means auc >= "
        "0.75 (binary) or r2 >= 0.3 (regression) on the test split, p99 latency <= 50 ms and "
        "<= $1 per million predictions."
    )
    assert [c["judged by"] for c in stated.criteria()] == [
        "train",
        "operationalize",
        "monitor",
        "robustness",
    ]
    floor_only = Problem("auto", "auto", "auto", 0.8, 50.0, 1.0)
    assert "the task's metric (auc or r2) >= 0.8" in floor_only.describe()

import numpy as np
import pytest

from opsnb import evaluation


def test_binary_scores_of_a_perfect_and_a_coin_flip_model() -> None:
    y = np.array([0, 0, 1, 1] * 50, dtype=float)
    perfect = evaluation.score("binary", y, y * 0.98 + 0.01)
    assert perfect["auc"] == 1.0
    assert perfect["accuracy"] == 1.0
    assert evaluation.score("binary", y, np.full(len(y), 0.5))["auc"] == 0.5


def test_regression_scores() -> None:
    y = np.array([1.0, 2.0, 3.0, 4.0])
    scores = evaluation.score("regression", y, y + 1.0)
    assert scores["rmse"] == pytest.approx(1.0)
    assert scores["mae"] == pytest.approx(1.0)


def test_calibration_bins_cover_every_row() -> None:
    rng = np.random.default_rng(1)
    p = rng.uniform(size=20_000)
    y = (rng.uniform(size=20_000) < p).astype(float)
    table = evaluation.calibration_table(y, p)
    assert sum(row["rows"] for row in table) == 20_000
    for row in table:  # a calibrated model: observed close to predicted in every bin
        assert abs(row["observed_rate"] - row["mean_predicted"]) < 0.03


def test_evaluate_judges_the_floor_in_the_metrics_direction() -> None:
    y = np.array([0, 1] * 20, dtype=float)
    good = evaluation.evaluate("binary", y, y * 0.8 + 0.1, metric="auc", floor=0.7)
    assert good["meets_floor"] is True
    bad = evaluation.evaluate("binary", y, np.full(40, 0.5), metric="auc", floor=0.7)
    assert bad["meets_floor"] is False
    reg = evaluation.evaluate("regression", y, y + 0.1, metric="rmse", floor=0.5)
    assert reg["meets_floor"] is True  # lower is better for rmse

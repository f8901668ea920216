"""XGBoost training on real small data: DMatrix encoding, the CV choice, early stopping, files."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from opsnb import training, validation


def _frame(n: int = 600, seed: int = 0) -> pd.DataFrame:
    """A binary problem with a numeric signal, a categorical one, and missing values."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    colour = rng.choice(["red", "green", "blue"], n)
    noise = rng.normal(size=n)
    score = 1.5 * x + np.where(colour == "red", 1.5, -0.5) + 0.3 * rng.normal(size=n)
    x[rng.random(n) < 0.05] = np.nan
    return pd.DataFrame(
        {"x": x, "colour": pd.Series(colour, dtype="string"), "noise": noise,
         "y": (score > 0).astype(int), "amount": score * 10 + 100}
    )  # fmt: skip


@pytest.fixture(scope="module")
def data():
    frame = _frame()
    schema = validation.infer_schema(frame.drop(columns="amount"), target="y", task="binary")
    return frame.iloc[:400], frame.iloc[400:], schema


def test_the_dmatrix_carries_names_types_labels_and_missing_values(data) -> None:
    train, _, schema = data
    matrix = training.frame_to_dmatrix(train, schema)
    assert matrix.feature_names == ["x", "colour", "noise"]
    assert matrix.feature_types == ["q", "c", "q"]
    np.testing.assert_array_equal(matrix.get_label(), train["y"].to_numpy())
    assert matrix.num_row() == 400
    assert matrix.num_nonmissing() == 400 * 3 - int(train["x"].isna().sum())
    unlabelled = training.frame_to_dmatrix(train, schema, labelled=False)
    assert unlabelled.get_label().size == 0


def test_grid_is_every_combination_in_order() -> None:
    assert training.grid(max_depth=[2, 4], learning_rate=[0.1, 0.3]) == [
        {"max_depth": 2, "learning_rate": 0.1},
        {"max_depth": 2, "learning_rate": 0.3},
        {"max_depth": 4, "learning_rate": 0.1},
        {"max_depth": 4, "learning_rate": 0.3},
    ]


def test_base_params_follow_the_task_and_threads() -> None:
    binary = training.base_params("binary", seed=3)
    assert (binary["objective"], binary["eval_metric"], binary["seed"]) == (
        "binary:logistic",
        "logloss",
        3,
    )
    assert "nthread" not in binary  # every core
    regression = training.base_params("regression", seed=0, threads=2)
    assert (regression["objective"], regression["nthread"]) == ("reg:squarederror", 2)


def test_cross_validation_picks_the_better_depth_and_a_round_count(data) -> None:
    train, _, schema = data
    chosen, scores = training.choose_hyperparameters(
        training.frame_to_dmatrix(train, schema),
        "binary",
        training.grid(max_depth=[1, 3], learning_rate=[0.3]),
        seed=0,
        max_rounds=60,
        early_stopping_rounds=10,
    )
    assert [s["max_depth"] for s in scores] == [1, 3]
    best = min(scores, key=lambda s: s["cv_logloss"])
    assert chosen == {
        "max_depth": best["max_depth"],
        "learning_rate": 0.3,
        "n_estimators": best["rounds"],
    }
    assert all(0 < s["cv_logloss"] < np.log(2) for s in scores)  # better than a coin
    assert all(1 <= s["rounds"] <= 60 for s in scores)


def test_train_stops_early_and_keeps_only_the_best_iteration(data) -> None:
    train, valid, schema = data
    booster = training.train(
        training.frame_to_dmatrix(train, schema),
        training.frame_to_dmatrix(valid, schema),
        "binary",
        {"max_depth": 3, "learning_rate": 0.5, "n_estimators": 200},
        seed=0,
        early_stopping_rounds=5,
    )
    rounds = booster.num_boosted_rounds()
    assert 1 <= rounds < 400  # stopped well before n_estimators * 2
    predicted = training.predict(booster, valid, schema)
    accuracy = float(((predicted > 0.5) == valid["y"].to_numpy()).mean())
    assert accuracy > 0.85


def test_a_regression_model_learns_the_amount() -> None:
    frame = _frame(seed=1).drop(columns="y")
    schema = validation.infer_schema(frame, target="amount", task="regression")
    train, valid = frame.iloc[:400], frame.iloc[400:]
    booster = training.train(
        training.frame_to_dmatrix(train, schema),
        training.frame_to_dmatrix(valid, schema),
        "regression",
        {"max_depth": 3, "n_estimators": 100},
        seed=0,
    )
    error = training.predict(booster, valid, schema) - valid["amount"].to_numpy()
    assert float(np.sqrt(np.mean(error**2))) < 0.5 * float(valid["amount"].std())


@pytest.mark.parametrize("suffix", [".ubj", ".json"])
def test_a_saved_model_loads_back_predicting_the_same(data, tmp_path: Path, suffix: str) -> None:
    train, valid, schema = data
    booster = xgb.train(
        training.base_params("binary", seed=0), training.frame_to_dmatrix(train, schema), 20
    )
    path = tmp_path / "model" / f"model{suffix}"
    path.parent.mkdir()
    training.save_model(booster, path)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    # the format follows the suffix: JSON text, or binary UBJSON (no quoted keys)
    assert (path.read_bytes()[:2] == b'{"') == (suffix == ".json")
    loaded = training.load_model(path)
    np.testing.assert_array_equal(
        training.predict(loaded, valid, schema), training.predict(booster, valid, schema)
    )

"""XGBoost training: hyperparameter choice by cross-validation, early-stopped fitting."""

from __future__ import annotations

import itertools
import os
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from opsnb.artifacts import atomic_path
from opsnb.schema import Schema, target_vector, to_matrix

OBJECTIVES = {"binary": "binary:logistic", "regression": "reg:squarederror"}
EVAL_METRICS = {"binary": "logloss", "regression": "rmse"}


def make_dmatrix(
    x: np.ndarray, y: np.ndarray | None, feature_names: list[str], feature_types: list[str]
) -> xgb.DMatrix:
    """Build a DMatrix whose categorical features (opsnb's integer codes) split as categories."""
    return xgb.DMatrix(
        x,
        label=y,
        feature_names=feature_names,
        feature_types=feature_types,
        enable_categorical=True,
        missing=np.nan,
    )


def frame_to_dmatrix(frame: pd.DataFrame, schema: Schema, *, labelled: bool = True) -> xgb.DMatrix:
    """Build the DMatrix of ``frame`` as the schema encodes it (with labels when ``labelled``)."""
    y = target_vector(frame, schema) if labelled else None
    return make_dmatrix(to_matrix(frame, schema), y, schema.feature_names, schema.feature_types)


def grid(**choices: list[Any]) -> list[dict[str, Any]]:
    """Every combination of the given hyperparameter choices: ``grid(max_depth=[4, 6])``."""
    names = list(choices)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*choices.values())]


def base_params(task: str, *, seed: int, threads: int = 0) -> dict[str, Any]:
    """Parameters every opsnb model shares; ``threads=0`` lets XGBoost use every core."""
    params: dict[str, Any] = {
        "objective": OBJECTIVES[task],
        "eval_metric": EVAL_METRICS[task],
        "tree_method": "hist",
        "seed": seed,
        "max_cat_to_onehot": 1,
    }
    if threads:
        params["nthread"] = threads
    return params


def choose_hyperparameters(
    train: xgb.DMatrix,
    task: str,
    grid: list[dict[str, Any]],
    *,
    seed: int,
    folds: int = 3,
    max_rounds: int = 400,
    early_stopping_rounds: int = 30,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Cross-validate each candidate of ``grid``; return the best and the score of every one.

    Each score holds the candidate, its final ``cv_<metric>``, its ``rounds`` and its
    ``cv_curve`` (the held-out folds' mean per round, for the design stage's plot).
    """
    scores = []
    metric = EVAL_METRICS[task]
    for candidate in grid:
        params = {**base_params(task, seed=seed), **candidate}
        history = xgb.cv(
            params,
            train,
            num_boost_round=max_rounds,
            nfold=folds,
            seed=seed,
            early_stopping_rounds=early_stopping_rounds,
            stratified=task == "binary",
        )
        curve = np.asarray(history[f"test-{metric}-mean"], dtype=float)
        scores.append(
            {
                **candidate,
                "cv_" + metric: round(float(curve[-1]), 5),
                "rounds": len(history),
                "cv_curve": [round(float(v), 5) for v in curve],
            }
        )
    winner = min(scores, key=lambda s: s["cv_" + metric])
    chosen = {k: v for k, v in winner.items() if k in grid[0]}
    chosen["n_estimators"] = winner["rounds"]
    return chosen, scores


def train(
    train_set: xgb.DMatrix,
    valid_set: xgb.DMatrix,
    task: str,
    hyperparameters: dict[str, Any],
    *,
    seed: int,
    early_stopping_rounds: int = 30,
) -> xgb.Booster:
    """Train with early stopping on ``valid_set``; the booster keeps only the best iteration."""
    params = {**base_params(task, seed=seed), **hyperparameters}
    rounds = int(params.pop("n_estimators", 300))
    booster = xgb.train(
        params,
        train_set,
        num_boost_round=max(rounds * 2, 50),
        evals=[(valid_set, "valid")],
        early_stopping_rounds=early_stopping_rounds,
        verbose_eval=False,
    )
    # Slice to the best iteration so the saved file, XGBoost and the compiled trees all agree.
    return booster[: booster.best_iteration + 1]


def save_model(booster: xgb.Booster, path: str | os.PathLike[str]) -> None:
    """Write the model atomically in XGBoost's format for the path's suffix (.ubj or .json)."""
    with atomic_path(path) as tmp:
        booster.save_model(tmp)


def load_model(path: str | os.PathLike[str]) -> xgb.Booster:
    """Load an XGBoost model file (never pickle)."""
    booster = xgb.Booster()
    booster.load_model(os.fspath(path))
    return booster


def predict(booster: xgb.Booster, frame: pd.DataFrame, schema: Schema) -> np.ndarray:
    """XGBoost's own predictions for ``frame``: the reference the compiled model must match."""
    return np.asarray(booster.predict(frame_to_dmatrix(frame, schema, labelled=False)))


def design_verdict(
    chosen: dict[str, Any], scores: list[dict[str, Any]], baseline: dict[str, float], task: str
) -> dict[str, Any]:
    """The design stage's verdict: the chosen candidate, its CV loss, and the baseline it beats."""
    metric = EVAL_METRICS[task]
    winner = min(scores, key=lambda s: s["cv_" + metric])
    named = ", ".join(f"{k}={v}" for k, v in chosen.items() if k != "n_estimators")
    reference = baseline.get(metric)
    versus = ""
    passed = None
    if reference is not None:
        passed = winner["cv_" + metric] < reference
        gain = (reference - winner["cv_" + metric]) / reference if reference else 0.0
        versus = f" vs baseline {reference:.3f} ({gain:.0%} better)" if passed else (
            f", no better than the baseline {reference:.3f}")  # fmt: skip
    text = (
        f"Chose {named} with {chosen['n_estimators']} trees of {len(scores)} candidates: "
        f"CV {metric} {winner['cv_' + metric]:.3f}{versus}"
    )
    return {"text": text, "passed": passed}

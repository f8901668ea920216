"""Hyperparameter choice and training in this process or on a Dask cluster (``engine``).

The design and train stages call :func:`choose` and :func:`fit` with their ``engine`` parameter:

- ``local`` (the default) reads the split into pandas and runs :mod:`opsnb.training`; Dask is
  never imported, so the single-machine path needs no Dask process or package;
- ``dask`` reads the sealed split files with ``dask.dataframe`` (one partition per row group),
  checks every partition against the frozen schema (:func:`check_partitions`: a split that
  breaks its contract stops the stage, naming the rows), encodes each partition as the schema
  does (:func:`opsnb.validation.to_matrix`, so category codes are the ones the compiled model
  receives) and trains with ``xgboost.dask`` on ``DaskQuantileDMatrix``. The booster that comes
  back is an ordinary XGBoost model: the train stage seals it and computes its metrics exactly
  as on one machine, and every later stage is unchanged.

On Dask, hyperparameters are chosen on the validation split (train on ``train``, early-stop
and score on ``valid``) rather than by k-fold cross-validation, which XGBoost's Dask interface
does not offer; ``design.json`` says which (``method``). The scores keep the single-machine
keys (``cv_<metric>``, ``rounds``, ``cv_curve``: there the held-out set is ``valid``), so the
design stage's table, plot and verdict read them unchanged.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from opsnb import training
from opsnb.errors import ConfigError, SchemaError
from opsnb.schema import Schema, to_matrix
from opsnb.validation import violations

ENGINES = ("local", "dask")


def check_engine(engine: str) -> None:
    """Refuse an unknown engine, listing the known ones."""
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")


def _client(scheduler: str) -> AbstractContextManager[Any]:
    from opsnb.cluster import dask_client  # noqa: PLC0415 - dask is an optional extra

    return dask_client(scheduler or None)


def read_split(path: str | os.PathLike[str], client: Any) -> Any:
    """A sealed split as a dask DataFrame: a partition per row group, at least one per worker."""
    import dask.dataframe as dd  # noqa: PLC0415

    frame = dd.read_parquet(os.fspath(path), split_row_groups=True)
    workers = len(client.scheduler_info().get("workers", {})) or 1
    if frame.npartitions < workers:
        frame = frame.repartition(npartitions=workers)
    return frame


def _violating(part: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    found = violations(part, schema)
    return found[found["reason"].notna()]


def check_partitions(frame: Any, schema: Schema, *, name: str) -> int:
    """Check every partition of ``frame`` against the contract; return the row count.

    Raises:
        SchemaError: rows break the contract (their count, first reasons and columns named).
    """
    meta = pd.DataFrame({"reason": pd.Series(dtype=object), "column": pd.Series(dtype=object)})
    bad, rows = _compute(frame.map_partitions(_violating, schema, meta=meta), frame.shape[0])
    if len(bad):
        first = bad.head(3)
        pairs = zip(first["reason"], first["column"], strict=True)
        examples = "; ".join(f"{r} in {c}" for r, c in pairs)
        raise SchemaError(
            f"split {name} has {len(bad):,} rows that break schema.json ({examples}); it was "
            "sealed by prepare, so the split or the schema changed: re-run prepare",
            column=str(first["column"].iloc[0]),
        )
    return int(rows)


def _compute(*things: Any) -> Any:
    import dask  # noqa: PLC0415

    return dask.compute(*things)


def _encoded(frame: Any, schema: Schema) -> tuple[Any, Any]:
    names = schema.feature_names
    meta = pd.DataFrame({n: pd.Series(dtype=np.float32) for n in names})
    x = frame.map_partitions(
        lambda part: pd.DataFrame(to_matrix(part, schema), columns=names), meta=meta
    )
    y = frame[schema.target].astype(np.float64)
    return x, y


def _dask_fit(
    client: Any,
    train_frame: Any,
    valid_frame: Any,
    schema: Schema,
    params: dict[str, Any],
    *,
    rounds: int,
    early_stopping_rounds: int,
) -> tuple[xgb.Booster, list[float]]:
    """Train on Dask with early stopping on the valid split; the sliced booster, its curve."""
    from xgboost import dask as dxgb  # noqa: PLC0415 - needs dask, an optional extra

    x, y = _encoded(train_frame, schema)
    vx, vy = _encoded(valid_frame, schema)
    types = schema.feature_types
    dtrain = dxgb.DaskQuantileDMatrix(
        client, x, y, feature_types=types, enable_categorical=True, missing=np.nan
    )
    dvalid = dxgb.DaskQuantileDMatrix(
        client, vx, vy, feature_types=types, enable_categorical=True, missing=np.nan, ref=dtrain
    )
    output = dxgb.train(
        client,
        params,
        dtrain,
        num_boost_round=rounds,
        evals=[(dvalid, "valid")],
        early_stopping_rounds=early_stopping_rounds,
        verbose_eval=False,
    )
    booster: xgb.Booster = output["booster"]
    history = output["history"]["valid"][params["eval_metric"]]
    best = booster.best_iteration
    return booster[: best + 1], [float(v) for v in history[: best + 1]]


def choose(
    engine: str,
    train_path: Path,
    valid_path: Path,
    schema: Schema,
    *,
    task: str,
    grid: list[dict[str, Any]],
    seed: int,
    folds: int = 3,
    max_rounds: int = 400,
    early_stopping_rounds: int = 30,
    scheduler: str = "",
) -> tuple[dict[str, Any], list[dict[str, Any]], str]:
    """Choose hyperparameters; return the choice, every candidate's score and the method."""
    check_engine(engine)
    if engine == "local":
        train = training.frame_to_dmatrix(pd.read_parquet(train_path), schema)
        chosen, scores = training.choose_hyperparameters(
            train, task, grid, seed=seed, folds=folds, max_rounds=max_rounds,
            early_stopping_rounds=early_stopping_rounds,
        )  # fmt: skip
        return chosen, scores, f"{folds}-fold cross-validation on train"
    metric = training.EVAL_METRICS[task]
    scores = []
    with _client(scheduler) as client:
        train_frame = read_split(train_path, client)
        valid_frame = read_split(valid_path, client)
        for split, frame in (("train", train_frame), ("valid", valid_frame)):
            check_partitions(frame, schema, name=split)
        for candidate in grid:
            params = {**training.base_params(task, seed=seed), **candidate}
            booster, curve = _dask_fit(
                client, train_frame, valid_frame, schema, params, rounds=max_rounds,
                early_stopping_rounds=early_stopping_rounds,
            )  # fmt: skip
            scores.append(
                {
                    **candidate,
                    "cv_" + metric: round(curve[-1], 5),
                    "rounds": booster.num_boosted_rounds(),
                    "cv_curve": [round(v, 5) for v in curve],
                }
            )
    winner = min(scores, key=lambda s: s["cv_" + metric])
    chosen = {k: v for k, v in winner.items() if k in grid[0]}
    chosen["n_estimators"] = winner["rounds"]
    return chosen, scores, "train on train, early-stop and score on valid (Dask)"


def fit(
    engine: str,
    train_path: Path,
    valid_path: Path,
    schema: Schema,
    *,
    task: str,
    hyperparameters: dict[str, Any],
    seed: int,
    early_stopping_rounds: int = 30,
    scheduler: str = "",
) -> xgb.Booster:
    """Train the model (sliced to its best iteration) on the chosen engine."""
    check_engine(engine)
    if engine == "local":
        return training.train(
            training.frame_to_dmatrix(pd.read_parquet(train_path), schema),
            training.frame_to_dmatrix(pd.read_parquet(valid_path), schema),
            task, hyperparameters, seed=seed, early_stopping_rounds=early_stopping_rounds,
        )  # fmt: skip
    params = {**training.base_params(task, seed=seed), **hyperparameters}
    rounds = int(params.pop("n_estimators", 300))
    with _client(scheduler) as client:
        train_frame = read_split(train_path, client)
        valid_frame = read_split(valid_path, client)
        for split, frame in (("train", train_frame), ("valid", valid_frame)):
            check_partitions(frame, schema, name=split)
        booster, _ = _dask_fit(
            client, train_frame, valid_frame, schema, params, rounds=max(rounds * 2, 50),
            early_stopping_rounds=early_stopping_rounds,
        )  # fmt: skip
    return booster

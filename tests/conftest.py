"""Shared fixtures: small data, a scratch runs folder, and one completed pipeline run."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import xgboost as xgb

from opsnb import compiler, config, training, validation
from opsnb.loans import loan_applications
from opsnb.schema import to_matrix
from tests.model_kinds import bundle_of, train_kind
from tests.support import opsnb_cli, small_args

SLOW_TIMEOUT_S = 1800
"""A slow test may first build a whole pipeline run (session fixtures count towards the test
that first needs them): a larger deadline than pyproject's 300 s, still a failure with a
traceback instead of a CI kill."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_TIMEOUT_S))


@pytest.fixture
def runs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty runs folder for this test."""
    folder = tmp_path / "runs"
    folder.mkdir()
    monkeypatch.setenv(config.RUNS_ENV, str(folder))
    return folder


@pytest.fixture(scope="session")
def pipeline_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A runs folder shared by the slow pipeline tests (session-wide)."""
    return tmp_path_factory.mktemp("pipeline-runs")


@pytest.fixture(scope="session")
def completed_run(pipeline_runs: Path) -> Path:
    """The folder of one successful whole-pipeline run made through the real CLI."""
    result = opsnb_cli(
        "run", "-q", "--run-id", "good", *small_args(), env={config.RUNS_ENV: str(pipeline_runs)}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return pipeline_runs / "good"


@pytest.fixture
def copy_of(tmp_path: Path):
    """Copy a finished run into a scratch runs folder, so a test can damage it safely."""

    def make(run: Path, name: str = "copy") -> Path:
        target = tmp_path / "runs" / name
        shutil.copytree(run, target, symlinks=True)
        return target

    return make


# -- compiled models (tests of compiler, predictor, golden, bench, the C example) ----------------


@pytest.fixture(scope="session")
def compile_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One compile cache for the session: a model compiled once is reused by later tests.

    ``make mutate`` runs these tests once per mutant and sets ``OPSNB_TEST_COMPILE_CACHE`` so
    that the same models are not compiled with gcc again each time: the first (unmutated) run
    fills that cache; every later run starts from a copy of it, so no mutant can spoil it.
    """
    shared = os.environ.get("OPSNB_TEST_COMPILE_CACHE")
    if not shared:
        return tmp_path_factory.mktemp("compile-cache")
    if not Path(shared).is_dir():
        return Path(shared)
    return Path(shutil.copytree(shared, tmp_path_factory.getbasetemp() / "compile-cache"))


@pytest.fixture(scope="session")
def model_kinds(tmp_path_factory: pytest.TempPathFactory):
    """Small real models: binary, regression, categorical, missing (trained once)."""
    folder = tmp_path_factory.mktemp("models")
    return {k: train_kind(folder, k) for k in ("binary", "regression", "categorical", "missing")}


@pytest.fixture(scope="session")
def categorical_bundle(tmp_path_factory, model_kinds, compile_cache) -> Path:
    """A compiled bundle of the categorical model, shared read-only by tests."""
    bundle = tmp_path_factory.mktemp("bundles") / "categorical"
    bundle_of(model_kinds["categorical"], bundle, compile_cache)
    return bundle


@pytest.fixture(scope="session")
def serving_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run through 'operationalize' (a compiled bundle and its test split) for serving tests."""
    runs = tmp_path_factory.mktemp("serving-runs")
    result = opsnb_cli("run", "-q", "--run-id", "served", "--until", "operationalize",
                       *small_args(), env={config.RUNS_ENV: str(runs)})  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return runs / "served"


@pytest.fixture(scope="session")
def loans_bundle(tmp_path_factory: pytest.TempPathFactory, compile_cache: Path) -> Path:
    """A compiled bundle of a small loans model (ids, categories, ranges): batch scoring tests."""
    folder = tmp_path_factory.mktemp("loans-bundle")
    frame = loan_applications(3000, seed=3)
    schema = validation.infer_schema(frame, target="default", task="binary", timestamp="applied_at")
    params = {**training.base_params("binary", seed=0, threads=1), "max_depth": 3}
    booster = xgb.train(params, training.frame_to_dmatrix(frame, schema), 20)
    booster.save_model(folder / "model.ubj")
    schema.save(folder / "schema.json")
    compiler.compile_bundle(
        folder / "model.ubj",
        folder / "bundle",
        schema_path=folder / "schema.json",
        sample=to_matrix(frame.head(500), schema),
        cache_dir=compile_cache,
    )
    return folder / "bundle"

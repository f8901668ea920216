"""Shared fixtures: small data, a scratch runs folder, and one completed pipeline run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

from model_kinds import bundle_of, train_kind
from opsnb import compiler, config, training, validation
from opsnb.artifacts import RunManifest
from opsnb.loans import loan_applications

# Small enough for seconds per stage, large enough for a model with real signal.
SMALL = {"n_rows": 2500, "production_rows": 600, "max_depth": [3], "max_rounds": 120}
PROJECT = Path(__file__).resolve().parent.parent


def small_args() -> list[str]:
    """SMALL as ``-p name value`` command-line arguments."""
    args = []
    for name, value in SMALL.items():
        args += ["-p", name, str(value)]
    return args


def opsnb_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real ``opsnb`` command (this interpreter's) and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "opsnb.cli", *args],
        capture_output=True,
        text=True,
        cwd=PROJECT,
        env={**os.environ, **(env or {})},
        timeout=600,
        check=False,
    )


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


def manifest_of(run: Path) -> RunManifest:
    """The run's manifest."""
    return RunManifest.load(run)


def census_rows(n: int, seed: int = 0) -> list[list[str]]:
    """Rows of a census-like table as found in the wild: text categories, '?' for missing
    values, and a string label ('>50K' / '<=50K') that depends on the features."""

    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        age = int(rng.integers(18, 80))
        hours = int(rng.integers(10, 70))
        education = str(rng.choice(["HS-grad", "Bachelors", "Masters", "Doctorate", "11th"]))
        workclass = str(
            rng.choice(["Private", "Self-emp", "State-gov", "?"], p=[0.6, 0.2, 0.15, 0.05])
        )
        country = str(
            rng.choice(["United-States", "Mexico", "India", "?"], p=[0.8, 0.08, 0.07, 0.05])
        )
        gain = int(rng.choice([0, 0, 0, int(rng.integers(1, 20000))]))
        score = (
            0.04 * (age - 40)
            + 0.05 * (hours - 40)
            + 1e-4 * gain
            + {"Masters": 1.2, "Doctorate": 1.8, "Bachelors": 0.8}.get(education, -0.5)
            + rng.normal(0, 0.7)
        )
        label = ">50K" if score > 0.6 else "<=50K"
        weight = int(rng.integers(100, 3000)) * 100  # census sampling weight: rows differ
        rows.append(
            [
                str(age),
                workclass,
                education,
                str(hours),
                str(gain),
                country,
                label,
                f"{i}",
                str(weight),
            ]
        )
    return rows


CENSUS_COLUMNS = [
    "age",
    "workclass",
    "education",
    "hours_per_week",
    "capital_gain",
    "native_country",
    "income",
    "person_id",
    "fnlwgt",
]


def write_census(path: Path, rows: list[list[str]], *, header: bool = True) -> Path:
    """Write census rows comma-space separated, with or without a header row."""
    lines = [", ".join(CENSUS_COLUMNS)] if header else []
    lines += [", ".join(r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


# -- compiled models (tests of compiler, predictor, golden, bench, the C example) ----------------


@pytest.fixture(scope="session")
def compile_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One compile cache for the session: a model compiled once is reused by later tests."""
    return tmp_path_factory.mktemp("compile-cache")


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
    validation.freeze(schema, folder / "schema.json")
    compiler.compile_bundle(
        folder / "model.ubj",
        folder / "bundle",
        schema_path=folder / "schema.json",
        sample=validation.to_matrix(frame.head(500), schema),
        cache_dir=compile_cache,
    )
    return folder / "bundle"

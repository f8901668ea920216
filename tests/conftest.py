"""Shared fixtures: small data, a scratch runs folder, and one completed pipeline run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from opsnb import config
from opsnb.artifacts import RunManifest

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
    result = opsnb_cli("run", "-q", "--run-id", "good", *small_args(),
                       env={config.RUNS_ENV: str(pipeline_runs)})  # fmt: skip
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


@pytest.fixture(scope="session")
def serving_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run through 'operationalize' (a compiled bundle and its test split) for serving tests."""
    runs = tmp_path_factory.mktemp("serving-runs")
    result = opsnb_cli("run", "-q", "--run-id", "served", "--until", "operationalize",
                       *small_args(), env={config.RUNS_ENV: str(runs)})  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return runs / "served"

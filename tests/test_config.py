"""Paths from one project root, found from wherever a kernel runs; artifact permissions."""

import os
import stat
from pathlib import Path

import pytest

from opsnb import config
from opsnb.artifacts import write_json
from tests.support import PROJECT


def test_the_project_is_found_from_a_run_folder_outside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(config.PROJECT_ENV, raising=False)
    monkeypatch.delenv(config.RUNS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)  # where papermill puts a stage kernel: the run folder
    assert config.project_root() == PROJECT
    assert config.runs_root() == PROJECT / "runs"


def test_the_runner_can_name_the_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "project"
    (other / "notebooks").mkdir(parents=True)
    (other / "pyproject.toml").write_text("")
    monkeypatch.setenv(config.PROJECT_ENV, str(other))
    assert config.project_root() == other
    monkeypatch.setenv(config.PROJECT_ENV, str(tmp_path / "not-a-project"))
    assert config.project_root() == PROJECT  # a wrong name is not trusted


def test_artifacts_are_readable_by_the_group_and_others(tmp_path: Path) -> None:
    old = os.umask(0o077)  # even under a strict umask the mode is the configured one
    try:
        path = write_json(tmp_path / "x.json", {})
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == config.ARTIFACT_MODE == 0o644

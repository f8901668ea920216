"""What a notebook calls: the stage context, and who writes the stage's record."""

import os
from pathlib import Path

import pytest

from opsnb import config
from opsnb.artifacts import RunManifest, read_json, write_json
from opsnb.errors import ArtifactError, StageError
from opsnb.notebook import StageContext, open_stage
from opsnb.stages import stage_by_name


def test_a_stage_refuses_to_open_without_its_sealed_inputs(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"input 'problem.json' is missing"):
        StageContext(stage_by_name("dataset"), tmp_path)


def test_a_stage_reads_only_declared_inputs_and_writes_only_declared_outputs(
    tmp_path: Path,
) -> None:
    ctx = StageContext(stage_by_name("problem"), tmp_path)
    with pytest.raises(StageError, match=r"reads 'schema.json' but does not declare it"):
        ctx.input("schema.json")
    with pytest.raises(StageError, match=r"writes 'model/model.ubj' but does not declare it"):
        ctx.write_json("model/model.ubj", {})


def test_finish_refuses_while_a_declared_output_is_missing(tmp_path: Path) -> None:
    ctx = StageContext(stage_by_name("problem"), tmp_path)
    with pytest.raises(StageError, match=r"did not write its declared output 'problem.json'"):
        ctx.finish()
    ctx.write_json("problem.json", {"task": "binary"})
    with pytest.raises(StageError, match=r"stage 'problem' has no verdict; call stage.verdict"):
        ctx.finish()
    ctx.verdict("Predict 'y'; success means auc >= 0.75", passed=None)
    assert ctx.finish() is None  # the bookkeeping line goes to the log; the verdict stays last
    assert read_json(tmp_path / "story" / "problem.json")["verdict"]["label"] == "DECIDED"
    record = RunManifest.load(tmp_path).stages["problem"]
    assert record["status"] == "succeeded"
    assert 0 <= record["kernel_cpu_s"] < 60  # this process, a few file writes
    assert record["kernel_peak_rss_mb"] > 0


def test_finish_refuses_an_output_changed_after_sealing(tmp_path: Path) -> None:
    ctx = StageContext(stage_by_name("problem"), tmp_path)
    ctx.write_json("problem.json", {"task": "binary"})
    ctx.verdict("Predict 'y'; success means auc >= 0.75", passed=None)
    write_json(tmp_path / "problem.json", {"task": "regression"})
    with pytest.raises(ArtifactError, match="modified after it was sealed"):
        ctx.finish()


def _record(run: Path, stage: str, **record: object) -> None:
    manifest = RunManifest.load(run)
    manifest.stages[stage] = dict(record)
    manifest.save()


def test_by_hand_the_kernel_writes_the_record_and_drops_an_earlier_fingerprint(
    tmp_path: Path,
) -> None:
    _record(tmp_path, "problem", status="succeeded", fingerprint="f" * 64, runner_pid=1)
    stage = open_stage("problem", tmp_path)
    assert not stage.managed
    assert RunManifest.load(tmp_path).stages["problem"]["status"] == "running"
    stage.write_json("problem.json", {"task": "binary"})
    stage.verdict("Predict 'y'; success means auc >= 0.75", passed=None)
    stage.finish()
    record = RunManifest.load(tmp_path).stages["problem"]
    assert record["status"] == "succeeded"
    assert "fingerprint" not in record  # the runner will not take this for its own execution
    assert not config.receipt_path(tmp_path, "problem").exists()


def test_under_the_runner_the_kernel_leaves_a_receipt_and_never_the_record(
    tmp_path: Path,
) -> None:
    # the runner records its own pid; this process stands for the kernel it started
    running = {"status": "running", "fingerprint": "f" * 64, "runner_pid": os.getppid()}
    _record(tmp_path, "problem", **running)
    stage = open_stage("problem", tmp_path)
    assert stage.managed
    stage.write_json("problem.json", {"task": "binary"})
    stage.verdict("Predict 'y'; success means auc >= 0.75", passed=None)
    stage.finish()
    assert RunManifest.load(tmp_path).stages["problem"] == running
    receipt = read_json(config.receipt_path(tmp_path, "problem"))
    assert set(receipt["outputs"]) == {"problem.json", "story/problem.json"}
    assert receipt["kernel_peak_rss_mb"] > 0


def test_a_running_record_of_another_process_does_not_make_a_kernel_managed(
    tmp_path: Path,
) -> None:
    _record(tmp_path, "problem", status="running", runner_pid=os.getpid())  # not our parent
    assert not open_stage("problem", tmp_path).managed


@pytest.mark.slow
def test_opened_by_hand_with_inputs_missing_it_asks_the_runner_for_the_earlier_stages(
    runs_dir: Path,
) -> None:
    stage = open_stage("dataset")  # the notebook default: runs/lab
    lab = runs_dir / config.LAB_RUN
    assert stage.run_dir == lab
    assert not stage.managed
    manifest = RunManifest.load(lab)
    problem = manifest.stages["problem"]
    assert (problem["status"], len(problem["fingerprint"])) == ("succeeded", 64)
    assert manifest.verify("problem.json")
    assert manifest.stages["dataset"]["status"] == "running"
    assert list((lab / ".receipts").iterdir()) == []

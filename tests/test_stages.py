from pathlib import Path

import pytest

from opsnb import config
from opsnb.artifacts import RunManifest, write_json
from opsnb.errors import ArtifactError, StageError
from opsnb.notebook import StageContext
from opsnb.stages import STAGES, stage_by_name


def test_notebooks_on_disk_are_the_stage_table_in_order() -> None:
    on_disk = sorted(p.name for p in config.notebooks_dir().glob("*.ipynb"))
    assert on_disk == [s.notebook for s in STAGES]
    for index, stage in enumerate(STAGES):
        assert stage.notebook == f"{index:02d}_{stage.name}.ipynb"


def test_every_input_is_produced_by_an_earlier_stage() -> None:
    seen: set[str] = set()
    for stage in STAGES:
        missing = set(stage.consumes) - seen
        assert not missing, f"{stage.name} consumes {missing} before any stage produces it"
        seen |= set(stage.produces)


def test_each_output_has_exactly_one_producer() -> None:
    outputs = [rel for s in STAGES for rel in s.produces]
    assert len(outputs) == len(set(outputs))


def test_an_unknown_stage_lists_the_known_ones() -> None:
    with pytest.raises(StageError, match=r"unknown stage 'trian'; known stages: problem, dataset"):
        stage_by_name("trian")


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
    assert "done" in ctx.finish()
    record = RunManifest.load(tmp_path).stages["problem"]
    assert record["status"] == "succeeded"
    assert record["kernel_cpu_s"] >= 0
    assert record["kernel_peak_rss_mb"] > 0


def test_finish_refuses_an_output_changed_after_sealing(tmp_path: Path) -> None:
    ctx = StageContext(stage_by_name("problem"), tmp_path)
    ctx.write_json("problem.json", {"task": "binary"})
    write_json(tmp_path / "problem.json", {"task": "regression"})
    with pytest.raises(ArtifactError, match="modified after it was sealed"):
        ctx.finish()

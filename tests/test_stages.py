import pytest

from opsnb import config
from opsnb.errors import StageError
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

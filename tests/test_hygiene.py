from pathlib import Path

import nbformat
import pytest

from opsnb import config, hygiene


def _notebook(tmp_path: Path, *cells) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = list(cells)
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    return path


def _params(source: str = "x = 1"):
    return nbformat.v4.new_code_cell(source, metadata={"tags": ["parameters"]})


def _with_output(source: str, tags: list[str] | None = None):
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": tags or []})
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="hi\n")]
    cell.execution_count = 3
    return cell


def test_the_committed_stage_notebooks_are_clean() -> None:
    paths = sorted(config.notebooks_dir().glob("*.ipynb"))
    assert paths
    assert [p for path in paths for p in hygiene.check(path)] == []


def test_a_clean_notebook_has_no_problems(tmp_path: Path) -> None:
    assert hygiene.check(_notebook(tmp_path, _params(), nbformat.v4.new_code_cell("y = x"))) == []


@pytest.mark.parametrize(
    ("cells", "problem"),
    [
        ([nbformat.v4.new_code_cell("x = 1")], "0 cells tagged 'parameters'"),
        ([_params(), _params()], "2 cells tagged 'parameters'"),
        ([_params(), nbformat.v4.new_code_cell("def f():\n    pass")], "cell 1 defines a function"),
        ([_params(), nbformat.v4.new_code_cell("class A:\n    pass")], "cell 1 defines a function"),
        ([_params(), _with_output("print('hi')")], "cell 1 carries outputs but is not tagged"),
        ([_params(), _with_output("print('hi')", [hygiene.CHECK_TAG])], "has execution count 3"),
        ([_params(), nbformat.v4.new_code_cell("x", execution_count=1)], "has execution count 1"),
    ],
)
def test_each_rule_is_enforced(tmp_path: Path, cells, problem: str) -> None:
    problems = hygiene.check(_notebook(tmp_path, *cells))
    assert any(problem in p for p in problems), problems


def test_an_unreadable_notebook_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "broken.ipynb"
    path.write_text("{not json")
    assert "not a readable notebook" in hygiene.check(path)[0]


def test_clean_strips_stray_outputs_and_counts_but_keeps_checked_outputs(tmp_path: Path) -> None:
    checked = _with_output("print('contract')", [hygiene.CHECK_TAG])
    path = _notebook(tmp_path, _params(), _with_output("print('noise')"), checked)
    assert hygiene.clean(path) is True
    assert hygiene.check(path) == []
    cells = nbformat.read(path, as_version=4).cells
    assert cells[1].outputs == []
    assert cells[2].outputs[0]["text"] == "hi\n"
    assert (cells[1].execution_count, cells[2].execution_count) == (None, hygiene.CHECKED_COUNT)
    assert hygiene.clean(path) is False  # idempotent


def test_adopt_copies_checked_outputs_from_an_executed_copy(tmp_path: Path) -> None:
    checked = nbformat.v4.new_code_cell("print(schema)", metadata={"tags": [hygiene.CHECK_TAG]})
    source = _notebook(tmp_path, _params(), checked)
    executed_nb = nbformat.read(source, as_version=4)
    executed_nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="v2\n")]
    executed_nb.cells[1].execution_count = 9
    executed = tmp_path / "executed.ipynb"
    nbformat.write(executed_nb, executed)
    assert hygiene.adopt_checked_outputs(source, executed) == [checked.id]
    assert nbformat.read(source, as_version=4).cells[1].outputs[0]["text"] == "v2\n"
    assert hygiene.check(source) == []

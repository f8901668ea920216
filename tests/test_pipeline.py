"""The runner: pre-flight checks, reuse, fingerprints, and failure semantics."""

import json
import shutil
from pathlib import Path

import nbformat
import pytest

from opsnb import config, parameters, pipeline, reuse
from opsnb.artifacts import RunManifest, sha256_file, write_json
from opsnb.errors import ConfigError, StageError
from opsnb.stages import STAGES, stage_by_name
from tests.support import SMALL


@pytest.fixture
def notebooks_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of notebooks/ that a test may break; the runner reads it instead."""
    folder = tmp_path / "notebooks"
    shutil.copytree(config.notebooks_dir(), folder)
    monkeypatch.setattr(config, "notebooks_dir", lambda: folder)
    return folder


def _edit(path: Path, edit) -> None:
    notebook = nbformat.read(path, as_version=4)
    edit(notebook)
    nbformat.write(notebook, path)


def test_a_notebook_with_two_parameters_cells_stops_the_run_before_any_kernel(
    notebooks_copy: Path, runs_dir: Path
) -> None:
    def duplicate_parameters(nb):
        nb.cells.insert(3, nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}))

    _edit(notebooks_copy / "03_design.ipynb", duplicate_parameters)
    with pytest.raises(StageError, match=r"03_design.ipynb has 2 cells tagged 'parameters'"):
        pipeline.run(SMALL, run_id="r")
    assert not (runs_dir / "r").exists()


@pytest.mark.slow
def test_a_notebook_that_exits_early_does_not_count_as_done(
    notebooks_copy: Path, runs_dir: Path
) -> None:
    def exit_before_finish(nb):
        nb.cells[-1].source = "import sys\nsys.exit(0)"

    _edit(notebooks_copy / "00_problem.ipynb", exit_before_finish)
    with pytest.raises(StageError, match=r"ended before its final cell \(stage.finish\(\)\) ran"):
        pipeline.run(run_id="r", until="problem")
    assert RunManifest.load(runs_dir / "r").stages["problem"]["status"] == "failed"


@pytest.mark.slow
def test_a_failed_stage_fails_the_run_keeps_evidence_and_promotes_nothing(
    completed_run: Path, notebooks_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = completed_run.parent
    monkeypatch.setenv(config.RUNS_ENV, str(runs))
    latest_before = (runs / "latest").resolve()

    def fail_after_writing(nb):  # every output is written and sealed, then the stage dies
        nb.cells.insert(-1, nbformat.v4.new_code_cell("raise RuntimeError('injected failure')"))

    _edit(notebooks_copy / "02_prepare.ipynb", fail_after_writing)
    with pytest.raises(StageError) as caught:
        pipeline.run(SMALL, run_id="broken")
    message = str(caught.value)
    assert "stage 'prepare' failed: RuntimeError: injected failure" in message
    assert "resume with: opsnb run --run-id broken --from prepare" in message

    manifest = RunManifest.load(runs / "broken")
    assert manifest.data["status"] == "failed"
    assert manifest.stages["dataset"]["status"] == "succeeded"
    assert manifest.stages["prepare"]["status"] == "failed"
    assert "design" not in manifest.stages  # the pipeline stopped
    executed = (runs / "broken" / "notebooks" / "02_prepare.ipynb").read_text()
    assert "injected failure" in executed  # the traceback is kept for reading
    # Its outputs were sealed before the failure: now unsealed and set aside, not promoted.
    assert (runs / "broken" / "failed" / "prepare" / "schema.json").is_file()
    assert not (runs / "broken" / "schema.json").exists()
    assert not any(a["stage"] == "prepare" for a in manifest.artifacts.values())
    assert (runs / "latest").resolve() == latest_before
    page = (runs / "broken" / "report.html").read_text()  # a failed run gets its page too
    assert "<h1>Run broken: failed</h1>" in page
    assert "RuntimeError: injected failure" in page


@pytest.mark.slow
def test_a_tampered_model_stops_the_next_stage_and_names_the_file(
    completed_run: Path, copy_of, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = copy_of(completed_run)
    monkeypatch.setenv(config.RUNS_ENV, str(run.parent))
    model = run / "model" / "model.ubj"
    model.write_bytes(model.read_bytes()[:-8] + b"poisoned")
    with pytest.raises(StageError, match=r"stage 'operationalize' cannot start: input "
                       r"'model/model.ubj' was modified after it was sealed"):  # fmt: skip
        pipeline.run(SMALL, run_id=run.name, from_stage="operationalize")


@pytest.mark.slow
def test_an_unchanged_rerun_reuses_every_stage_and_a_change_reruns_only_what_it_touches(
    completed_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(config.RUNS_ENV, str(completed_run.parent))
    same = pipeline.run(SMALL, run_id="again")
    assert {o.status for o in same.outcomes} == {"reused"}
    assert same.manifest.data["status"] == "succeeded"

    in_place = pipeline.run(SMALL, run_id="again")
    assert {o.status for o in in_place.outcomes} == {"unchanged"}

    changed = pipeline.run({**SMALL, "early_stopping_rounds": 5}, run_id="changed")
    status = {o.stage: o.status for o in changed.outcomes}
    assert status["design"] == "reused"
    assert status["train"] == "executed"
    assert changed.manifest.stages["design"]["reused_from"] in {"good", "again"}
    # A changed input reruns every stage downstream of it, not just the first: each later stage's
    # fingerprint holds its inputs' hashes, so none may reuse the old run's outputs.
    after_train = [s.name for s in STAGES][[s.name for s in STAGES].index("train") + 1 :]
    assert after_train, "stages follow train"
    assert {name: status[name] for name in after_train} == dict.fromkeys(after_train, "executed")
    # ...so the bundle shipped is built from this run's model, not the earlier run's.
    model_hash = sha256_file(changed.run_dir / "model" / "model.ubj")
    bundle_manifest = json.loads((changed.run_dir / "bundle" / "manifest.json").read_text())
    assert bundle_manifest["model_sha256"] == model_hash
    good_model = sha256_file(completed_run / "model" / "model.ubj")
    assert model_hash != good_model  # the change did change the model


def test_the_fingerprint_changes_with_each_thing_it_covers() -> None:
    """Inputs, parameters, outside inputs: changing any one changes the fingerprint."""
    train = stage_by_name("train")
    base = pipeline.fingerprint(train, {"seed": 1}, {"a.csv": "0" * 64}, {"frozen contract": "x"})
    assert base == pipeline.fingerprint(
        train, {"seed": 1}, {"a.csv": "0" * 64}, {"frozen contract": "x"}
    )
    variants = [
        pipeline.fingerprint(train, {"seed": 2}, {"a.csv": "0" * 64}, {"frozen contract": "x"}),
        pipeline.fingerprint(train, {"seed": 1}, {"a.csv": "1" * 64}, {"frozen contract": "x"}),
        pipeline.fingerprint(train, {"seed": 1}, {"b.csv": "0" * 64}, {"frozen contract": "x"}),
        pipeline.fingerprint(train, {"seed": 1}, {"a.csv": "0" * 64}, {"frozen contract": "y"}),
        pipeline.fingerprint(stage_by_name("design"), {"seed": 1}, {"a.csv": "0" * 64}),
    ]
    assert len({base, *variants}) == len(variants) + 1


def test_a_change_to_opsnbs_own_code_changes_every_fingerprint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The code hash covers opsnb's sources by content: an edit forces a re-run."""
    package = tmp_path / "opsnb"
    shutil.copytree(Path(reuse.__file__).parent, package)
    monkeypatch.setattr(reuse, "__file__", str(package / "reuse.py"))
    pipeline.code_hash.cache_clear()
    try:
        problem = stage_by_name("problem")
        before = pipeline.fingerprint(problem, {}, {})
        pipeline.code_hash.cache_clear()
        assert pipeline.fingerprint(problem, {}, {}) == before  # content, not mtime
        (package / "pipeline.py").touch()
        pipeline.code_hash.cache_clear()
        assert pipeline.fingerprint(problem, {}, {}) == before
        tables = package / "tables.py"
        tables.write_text(tables.read_text() + "\n# an edit\n")
        pipeline.code_hash.cache_clear()
        assert pipeline.fingerprint(problem, {}, {}) != before
    finally:
        pipeline.code_hash.cache_clear()


def test_from_needs_an_existing_run() -> None:
    with pytest.raises(ConfigError, match="--from needs --run-id"):
        pipeline.run(from_stage="train")


def test_from_after_until_is_refused() -> None:
    with pytest.raises(ConfigError, match="--from train comes after --until prepare"):
        pipeline.run(run_id="x", from_stage="train", until="prepare")


def test_every_input_from_outside_a_run_folder_is_known_to_the_runner() -> None:
    outside = {name for stage in STAGES for name in stage.outside}
    assert outside == set(pipeline.OUTSIDE)
    assert "frozen contract" in stage_outside("prepare")


def stage_outside(name: str) -> tuple[str, ...]:
    return next(s.outside for s in STAGES if s.name == name)


def test_the_manifest_records_every_value_a_stage_ran_with() -> None:
    design = stage_by_name("design")
    assert parameters.resolved_parameters(design, {"cv_folds": 5}) == {
        "seed": 42, "max_depth": [4, 6], "learning_rate": [0.1], "cv_folds": 5, "max_rounds": 400,
        "engine": "local", "scheduler": "",
    }  # fmt: skip


def _succeeded_problem_run(folder: Path, fp: str) -> None:
    folder.mkdir(parents=True)
    manifest = RunManifest.load(folder)
    for relpath in stage_by_name("problem").produces:
        write_json(folder / relpath, {"from": folder.name})
        manifest.seal(relpath, stage="problem")
    manifest.stages["problem"] = {"status": "succeeded", "fingerprint": fp}
    manifest.save()


def test_reuse_comes_only_from_the_projects_runs_folder(tmp_path: Path, runs_dir: Path) -> None:
    problem = stage_by_name("problem")
    fp = pipeline.fingerprint(problem, {}, {})
    _succeeded_problem_run(tmp_path / "elsewhere" / "neighbour", fp)
    scratch = tmp_path / "elsewhere" / "mine"
    assert pipeline._find_reusable(problem, fp, scratch) is None  # a neighbour is no source
    _succeeded_problem_run(runs_dir / "good", fp)
    found = pipeline._find_reusable(problem, fp, scratch)
    assert found is not None
    assert found.run_dir == runs_dir / "good"


@pytest.mark.slow
def test_force_executes_a_stage_whose_fingerprint_is_unchanged(runs_dir: Path) -> None:
    first = pipeline.run(run_id="r", until="problem", report_html=False)
    assert [o.status for o in first.outcomes] == ["executed"]
    fp = first.manifest.stages["problem"]["fingerprint"]
    again = pipeline.run(run_id="r", until="problem", report_html=False)
    assert [o.status for o in again.outcomes] == ["unchanged"]
    forced = pipeline.run(run_id="r", until="problem", force=True, report_html=False)
    assert [o.status for o in forced.outcomes] == ["executed"]
    assert forced.manifest.stages["problem"]["fingerprint"] == fp  # same inputs, run again
    other = pipeline.run(run_id="other", until="problem", force=True, report_html=False)
    assert [o.status for o in other.outcomes] == ["executed"]  # not reused from 'r' either
    assert "reused_from" not in other.manifest.stages["problem"]

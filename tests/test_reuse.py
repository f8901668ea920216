"""Reuse: which earlier execution of a stage may stand in for running it again, and the copy.

Fast, without notebooks: runs are made by hand (a manifest, sealed files, a stage record), so
each rule of :mod:`opsnb.reuse` is tested on its own. The slow pipeline tests show the same rules
end to end.
"""

import os
from pathlib import Path

import pytest

from opsnb import config, reuse
from opsnb.artifacts import RunManifest, sha256_file, write_json
from opsnb.stages import FROZEN_CONTRACT, stage_by_name

PROBLEM = stage_by_name("problem")
PREPARE = stage_by_name("prepare")


def _run(folder: Path, fp: str, *, status: str = "succeeded", age_s: float = 0) -> RunManifest:
    """A run in ``folder`` whose problem stage has fingerprint ``fp`` and ``status``."""
    folder.mkdir(parents=True)
    manifest = RunManifest.load(folder)
    for relpath in PROBLEM.produces:
        write_json(folder / relpath, {"from": folder.name})
        manifest.seal(relpath, stage="problem")
    manifest.stages["problem"] = {"status": status, "fingerprint": fp}
    manifest.save()
    stamp = (folder / "manifest.json").stat().st_mtime - age_s
    os.utime(folder / "manifest.json", (stamp, stamp))
    return manifest


def test_the_fingerprint_is_stable_and_covers_the_notebook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = reuse.fingerprint(PROBLEM, {"a": 1}, {"x": "0" * 64})
    assert base == reuse.fingerprint(PROBLEM, {"a": 1}, {"x": "0" * 64}, {})  # None == no outside
    assert len(base) == 64
    assert set(base) <= set("0123456789abcdef")
    notebook = tmp_path / "00_problem.ipynb"
    notebook.write_bytes(reuse.notebook_path(PROBLEM).read_bytes() + b"\n")
    monkeypatch.setattr(reuse, "notebook_path", lambda stage: notebook)
    assert reuse.fingerprint(PROBLEM, {"a": 1}, {"x": "0" * 64}) != base


def test_the_code_hash_is_a_hash_of_every_source_file() -> None:
    digest = reuse.code_hash()
    assert len(digest) == 64
    assert digest == reuse.code_hash()
    assert digest != sha256_file(Path(reuse.__file__))  # the package, not one file


def test_outside_inputs_hash_the_frozen_contract_of_the_runs_data_set(runs_dir: Path) -> None:
    run = runs_dir / "r"
    write_json(run / "data/card.json", {"key": "loans-default"})
    assert reuse.outside_inputs(PREPARE, run) == {FROZEN_CONTRACT: "absent"}
    assert reuse.outside_inputs(PROBLEM, run) == {}  # problem reads nothing from outside
    contract = config.contract_path("loans-default")
    write_json(contract, {"features": []})
    assert reuse.outside_inputs(PREPARE, run) == {FROZEN_CONTRACT: sha256_file(contract)}
    write_json(run / "data/card.json", {"key": "census-income"})  # another data set's contract
    assert reuse.outside_inputs(PREPARE, run) == {FROZEN_CONTRACT: "absent"}


def test_the_newest_intact_success_with_the_same_fingerprint_is_found(runs_dir: Path) -> None:
    fp = reuse.fingerprint(PROBLEM, {}, {})
    _run(runs_dir / "old", fp, age_s=100)
    _run(runs_dir / "new", fp, age_s=10)
    _run(runs_dir / "newest-other-fp", "f" * 64)
    _run(runs_dir / "newest-failed", fp, status="failed")
    found = reuse._find_reusable(PROBLEM, fp, runs_dir / "mine")
    assert found is not None
    assert found.run_dir == runs_dir / "new"


def test_a_run_is_never_its_own_source_nor_is_the_latest_link(runs_dir: Path) -> None:
    fp = reuse.fingerprint(PROBLEM, {}, {})
    _run(runs_dir / "mine", fp)
    (runs_dir / "latest").symlink_to(runs_dir / "mine")
    assert reuse._find_reusable(PROBLEM, fp, runs_dir / "mine") is None
    found = reuse._find_reusable(PROBLEM, fp, runs_dir / "another")
    assert found is not None
    assert found.run_dir == runs_dir / "mine"


def test_a_tampered_or_unsealed_output_disqualifies_a_run(runs_dir: Path) -> None:
    fp = reuse.fingerprint(PROBLEM, {}, {})
    tampered = _run(runs_dir / "tampered", fp, age_s=5)
    unsealed = _run(runs_dir / "unsealed", fp)
    relpath = PROBLEM.produces[0]
    (tampered.run_dir / relpath).write_text("{}")
    unsealed.unseal_stage("problem")
    assert not reuse._succeeded_with(tampered, PROBLEM, fp)
    assert not reuse._succeeded_with(unsealed, PROBLEM, fp)
    assert reuse._find_reusable(PROBLEM, fp, runs_dir / "mine") is None
    intact = _run(runs_dir / "intact", fp, age_s=50)  # older than both, but the only good one
    assert reuse._all_verify(intact, PROBLEM.produces)
    assert not reuse._all_verify(tampered, PROBLEM.produces)
    assert reuse._all_verify(tampered, ())  # nothing asked, nothing wrong
    found = reuse._find_reusable(PROBLEM, fp, runs_dir / "mine")
    assert found is not None
    assert found.run_dir == intact.run_dir


def test_a_stage_without_a_record_or_fingerprint_is_not_reusable(runs_dir: Path) -> None:
    fp = reuse.fingerprint(PROBLEM, {}, {})
    manifest = _run(runs_dir / "r", fp)
    assert reuse._succeeded_with(manifest, PROBLEM, fp)
    assert not reuse._succeeded_with(manifest, PREPARE, fp)  # no record of prepare at all
    del manifest.stages["problem"]["fingerprint"]
    assert not reuse._succeeded_with(manifest, PROBLEM, fp)


def test_reused_artifacts_are_copies_that_later_edits_do_not_share(tmp_path: Path) -> None:
    source = tmp_path / "a" / "model" / "model.ubj"
    source.parent.mkdir(parents=True)
    source.write_bytes(b"model")
    target = tmp_path / "b" / "model" / "model.ubj"
    reuse._copy(source, target)  # creates the folders it needs
    assert target.read_bytes() == b"model"
    assert not target.is_symlink()
    assert os.stat(target).st_ino != os.stat(source).st_ino  # not a hard link either
    target.write_bytes(b"edited")
    assert source.read_bytes() == b"model"

from pathlib import Path

import pytest

from opsnb.artifacts import RunManifest, atomic_open, read_json, sha256_file, write_json
from opsnb.errors import ArtifactError


def test_write_json_replaces_atomically_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = write_json(tmp_path / "a" / "x.json", {"b": 1, "a": [1, 2]})
    assert read_json(path) == {"a": [1, 2], "b": 1}
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = write_json(tmp_path / "x.json", {"v": "old"})

    def interrupted_write() -> None:
        with atomic_open(path) as handle:
            handle.write('{"v": "half')
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        interrupted_write()
    assert read_json(path) == {"v": "old"}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_seal_records_the_hash_and_verify_returns_the_path(tmp_path: Path) -> None:
    manifest = RunManifest.load(tmp_path)
    write_json(tmp_path / "model" / "m.json", {"trees": 3})
    digest = manifest.seal("model/m.json", stage="train")
    assert digest == sha256_file(tmp_path / "model" / "m.json")
    again = RunManifest.load(tmp_path)  # the seal is on disk, not only in memory
    assert again.verify("model/m.json") == tmp_path / "model" / "m.json"
    assert again.artifacts["model/m.json"]["stage"] == "train"


def test_verify_refuses_a_missing_artifact(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"input 'model/m.json' is missing from run folder"):
        RunManifest.load(tmp_path).verify("model/m.json")


def test_verify_refuses_an_unsealed_artifact(tmp_path: Path) -> None:
    write_json(tmp_path / "m.json", {})
    with pytest.raises(ArtifactError, match=r"'m.json' exists but was never sealed"):
        RunManifest.load(tmp_path).verify("m.json")


def test_verify_refuses_a_tampered_artifact_and_names_the_producer(tmp_path: Path) -> None:
    manifest = RunManifest.load(tmp_path)
    write_json(tmp_path / "m.json", {"trees": 3})
    manifest.seal("m.json", stage="train")
    (tmp_path / "m.json").write_text('{"trees": 4}')
    with pytest.raises(ArtifactError, match=r"modified after it was sealed.*re-run stage 'train'"):
        manifest.verify("m.json")


def test_sealing_a_file_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"cannot seal 'x\.json': no such file"):
        RunManifest.load(tmp_path).seal("x.json", stage="train")


def test_unseal_stage_forgets_only_that_stages_outputs(tmp_path: Path) -> None:
    manifest = RunManifest.load(tmp_path)
    for name, stage in [("a.json", "train"), ("b.json", "prepare")]:
        write_json(tmp_path / name, {})
        manifest.seal(name, stage=stage)
    assert manifest.unseal_stage("train") == ["a.json"]
    assert list(RunManifest.load(tmp_path).artifacts) == ["b.json"]

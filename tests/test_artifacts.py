import subprocess
import sys
from pathlib import Path

import pytest

from opsnb.artifacts import (
    MANIFEST,
    RunManifest,
    atomic_open,
    read_json,
    sha256_bytes,
    sha256_file,
    sha256_json,
    write_json,
    write_parquet,
)
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
    recorded = manifest.seal("m.json", stage="train")
    (tmp_path / "m.json").write_text('{"trees": 4}')
    actual = sha256_file(tmp_path / "m.json")
    with pytest.raises(
        ArtifactError,
        match=rf"^input 'm.json' was modified after it was sealed: sha256 {actual[:12]}… but "
        rf"manifest.json recorded {recorded[:12]}…; re-run stage 'train' to rebuild it$",
    ):
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


def test_write_json_makes_its_folders_and_writes_sorted_indented_text(tmp_path: Path) -> None:
    path = write_json(tmp_path / "a" / "b" / "x.json", {"b": 1, "a": {"d": 2, "c": 3}})
    assert path.read_text() == '{\n  "a": {\n    "c": 3,\n    "d": 2\n  },\n  "b": 1\n}\n'
    write_json(path, {"b": 1, "a": 2}, sort_keys=False)
    assert path.read_text() == '{\n  "b": 1,\n  "a": 2\n}\n'


def test_the_json_hash_is_of_canonical_text_whatever_the_key_order() -> None:
    assert sha256_json({"b": 1, "a": [1, 2]}) == sha256_json({"a": [1, 2], "b": 1})
    assert sha256_json({"b": 1, "a": [1, 2]}) == sha256_bytes(b'{"a":[1,2],"b":1}')


def test_write_parquet_keeps_the_columns_and_not_the_index(tmp_path: Path) -> None:
    import pandas as pd  # noqa: PLC0415 - only this test needs pandas

    frame = pd.DataFrame({"x": [1.0, 2.0]}, index=[7, 9])
    path = write_parquet(tmp_path / "f.parquet", frame)
    back = pd.read_parquet(path)
    assert list(back.columns) == ["x"]
    assert list(back.index) == [0, 1]


def test_the_manifest_reads_run_first_and_hashes_last(tmp_path: Path) -> None:
    (tmp_path / "z.txt").write_text("z")
    (tmp_path / "a.txt").write_text("a")
    manifest = RunManifest.load(tmp_path)
    manifest.data["zeta"] = 1  # a key of its own: after the known ones, before the hashes
    manifest.seal("z.txt", stage="s")
    manifest.seal("a.txt", stage="s")
    manifest.stages["s"] = {"status": "succeeded"}
    manifest.save()
    keys = list(read_json(tmp_path / MANIFEST))
    assert keys == ["run_id", "status", "created", "stages", "zeta", "artifacts"]
    assert list(read_json(tmp_path / MANIFEST)["artifacts"]) == ["a.txt", "z.txt"]
    assert RunManifest.load(tmp_path).stages == {"s": {"status": "succeeded"}}


def test_importing_artifacts_does_not_load_pandas() -> None:
    """A server process hashes and reads JSON through this module: pandas stays out of it."""
    code = "import sys, opsnb.artifacts; print('pandas' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"

import asyncio
import collections
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from opsnb import bundle as layout
from opsnb import predictor, signing
from opsnb.artifacts import sha256_file
from opsnb.bundle import VerifiedBundle, read_manifest, verify_bundle, write_manifest
from opsnb.errors import ArtifactError, ConfigError, SchemaError
from opsnb.predictor import CompiledModel, load_bundle
from opsnb.schema import Schema
from opsnb.serving.reload import ModelSlot, prepare

_OPENED: list[collections.Counter[str]] = []  # the counter of the open opened_files(), if any


def _audit(event: str, args: tuple[object, ...]) -> None:
    if _OPENED and event == "open" and isinstance(args[0], str | Path):
        _OPENED[-1][str(args[0])] += 1


sys.addaudithook(_audit)  # audit hooks cannot be removed: it counts only inside opened_files()


@contextmanager
def opened_files(folder: Path) -> Iterator[collections.Counter[str]]:
    """Count how often each file of ``folder`` is opened (every read, hash or copy opens it)."""
    _OPENED.append(collections.Counter())
    seen: collections.Counter[str] = collections.Counter()
    try:
        yield seen
    finally:
        for path, n in _OPENED.pop().items():
            if Path(path).parent.resolve() == folder.resolve():
                seen[Path(path).name] += n


@pytest.fixture
def bundle(categorical_bundle: Path, tmp_path: Path) -> Path:
    """A private copy of the categorical bundle that a test may damage."""
    return Path(shutil.copytree(categorical_bundle, tmp_path / "bundle"))


def test_verify_returns_what_it_checked(categorical_bundle: Path) -> None:
    verified = verify_bundle(categorical_bundle)
    manifest = json.loads((categorical_bundle / layout.MANIFEST).read_text())
    assert verified.path == categorical_bundle.resolve()
    assert dict(verified.hashes) == manifest["files"]
    assert set(verified.hashes) == set(layout.FILES)
    assert verified.hashes[layout.LIBRARY] == sha256_file(categorical_bundle / layout.LIBRARY)
    assert verified.version == manifest["model_sha256"][:12]
    assert verified.schema == Schema.load(categorical_bundle / layout.SCHEMA)
    assert verified.golden is not None
    assert len(verified.golden["rows"]) == len(verified.golden["expected"]) > 10
    assert verified.library == verified.path / "model.so"
    with pytest.raises(AttributeError):
        verified.path = Path("/elsewhere")  # type: ignore[misc]


def test_each_file_is_read_once_per_load_and_the_golden_rows_checked_once(
    categorical_bundle: Path,
) -> None:
    with opened_files(categorical_bundle) as opened:
        served = prepare(categorical_bundle)
    served.model.close()
    # model.so: hashed once, then copied once to the private path the library loads from;
    # every other file read (and hashed) once. Before bundle.py, `opsnb serve` hashed 3 times.
    # The manifest (small) is read for its signature, the names it lists, then the hashes.
    assert opened == {
        "manifest.json": 3,
        "manifest.sig": 1,
        "model.so": 2,
        "model.h": 1,
        "model-src.zip": 1,
        "schema.json": 1,
        "golden.json": 1,
    }


def test_a_verified_bundle_is_loaded_without_reading_its_files_again(bundle: Path) -> None:
    verified = verify_bundle(bundle)
    slot = ModelSlot(bundle, verified=verified)
    with opened_files(bundle) as opened:
        served = asyncio.run(slot.reload())
    assert opened == {"model.so": 1}  # the private copy, whose hash is checked before dlopen
    assert served.version == verified.version
    assert served.output == "probability"
    with opened_files(bundle) as opened:  # a later reload verifies the bundle anew
        asyncio.run(slot.reload())
    # the manifest: its signature, the names it lists, then the hashes (opsnb.serving.store)
    assert (opened["manifest.json"], opened["schema.json"]) == (3, 1)
    slot.close()
    served.model.close()


def test_a_model_is_built_from_a_verified_bundle_only(categorical_bundle: Path) -> None:
    with pytest.raises(ConfigError, match=r"CompiledModel needs a VerifiedBundle, got PosixPath"):
        CompiledModel(categorical_bundle)  # type: ignore[arg-type]


CONSTRUCTOR = r"""
#include <stdio.h>
__attribute__((constructor)) static void ran(void) { FILE* f = fopen("%s", "w"); if (f) fclose(f); }
int get_num_feature(void) { return 5; }
"""


def test_a_library_swapped_after_verification_is_refused_before_it_is_loaded(
    bundle: Path, tmp_path: Path
) -> None:
    verified = verify_bundle(bundle)
    marker = tmp_path / "constructor-ran"
    (tmp_path / "evil.c").write_text(CONSTRUCTOR % marker)
    evil = tmp_path / "evil.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", evil, tmp_path / "evil.c"], check=True)
    shutil.copyfile(evil, bundle / "model.so")  # between the check and the load
    actual, expected = sha256_file(evil), verified.hashes["model.so"]
    with pytest.raises(
        ArtifactError,
        match=rf"^bundle file model.so does not match manifest.json: sha256 {actual[:12]}… "
        rf"expected {expected[:12]}…; refusing to load it \(rebuild the bundle\)$",
    ):
        CompiledModel(verified)
    assert not marker.exists()
    assert "evil" not in Path("/proc/self/maps").read_text()


def test_the_private_copy_that_is_loaded_is_the_file_whose_hash_is_checked(
    bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The library is swapped for the copy and put back before anyone hashes the original:
    only hashing the copy itself, right before ``dlopen``, refuses it."""
    verified = verify_bundle(bundle)
    good = (bundle / "model.so").read_bytes()
    marker = tmp_path / "constructor-ran"
    (tmp_path / "evil.c").write_text(CONSTRUCTOR % marker)
    evil = tmp_path / "evil.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", evil, tmp_path / "evil.c"], check=True)
    shutil.copyfile(evil, bundle / "model.so")
    real_copy = predictor.private_copy

    def copy_then_restore(library: Path, **options: str) -> Path:
        copy = real_copy(library, **options)
        (bundle / "model.so").write_bytes(good)  # the original is intact again
        return copy

    monkeypatch.setattr(predictor, "private_copy", copy_then_restore)
    with pytest.raises(ArtifactError, match=r"model.so does not match manifest.json.*refusing"):
        CompiledModel(verified)
    assert not marker.exists()
    assert "evil" not in Path("/proc/self/maps").read_text()
    monkeypatch.undo()
    model = CompiledModel(verified)  # the intact library still loads
    assert model.self_check()["passed"]
    model.close()


def test_the_schema_and_golden_rows_come_from_the_bytes_that_were_hashed(bundle: Path) -> None:
    verified = verify_bundle(bundle)
    (bundle / "schema.json").write_text("{}")  # changed after verification: never read again
    (bundle / "golden.json").write_text("{}")
    model = load_bundle(verified)
    assert model.schema == verified.schema
    assert model.self_check()["passed"]
    model.close()
    with pytest.raises(ArtifactError, match=r"bundle file (golden|schema).json does not match"):
        verify_bundle(bundle)


def test_a_sealed_but_malformed_schema_is_named(bundle: Path) -> None:
    (bundle / "schema.json").write_text('{"task": "binary", "target": "y", "features": "x0"}')
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"]["schema.json"] = sha256_file(bundle / "schema.json")
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SchemaError, match=r"schema.json needs a 'features' list, got 'x0'"):
        verify_bundle(bundle)
    (bundle / "schema.json").write_text("{not json")
    manifest["files"]["schema.json"] = sha256_file(bundle / "schema.json")
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SchemaError, match=r"schema.json is not valid JSON"):
        verify_bundle(bundle)


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        ("{oops", r"manifest.json is not valid JSON"),
        ("[]", r"manifest.json has no 'files' table"),
        ('{"files": {"model.so": "x", "schema.json": "y"}}', r"has no model_sha256"),
        ('{"files": {"model.so": "x"}, "model_sha256": "z"}', r"lists no schema.json"),
    ],
)
def test_a_broken_manifest_is_refused_by_name(bundle: Path, manifest: str, message: str) -> None:
    (bundle / "manifest.json").write_text(manifest)
    with pytest.raises(ArtifactError, match=message):
        read_manifest(bundle)


def test_write_manifest_seals_every_file_and_records_the_facts(bundle: Path) -> None:
    manifest = write_manifest(bundle, model_sha256="ab" * 32, num_feature=5, note="rebuilt")
    assert manifest["files"] == {name: sha256_file(bundle / name) for name in layout.FILES}
    assert json.loads((bundle / "manifest.json").read_text()) == manifest
    verified = verify_bundle(bundle)
    assert isinstance(verified, VerifiedBundle)
    assert verified.version == "ab" * 6
    with pytest.raises(ArtifactError, match=r"needs model_sha256"):
        write_manifest(bundle, num_feature=5)
    (bundle / "model.h").unlink()
    with pytest.raises(ArtifactError, match=r"cannot seal .*: model.h missing; write every"):
        write_manifest(bundle, model_sha256="ab" * 32)
    (bundle / "golden.json").unlink()
    with pytest.raises(
        ArtifactError, match=r"cannot seal .*: model.h, golden.json missing; write every"
    ) as caught:
        write_manifest(bundle, model_sha256="ab" * 32)
    assert caught.value.path == "model.h"  # the first missing, in the bundle's order


def test_a_run_folder_or_a_bundle_folder_resolves(bundle: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    shutil.move(bundle, run / "bundle")
    assert layout.resolve_bundle(run) == (run / "bundle").resolve()
    assert layout.resolve_bundle(run / "bundle") == (run / "bundle").resolve()
    with pytest.raises(ArtifactError, match=r"neither a run folder with bundle/manifest.json"):
        layout.resolve_bundle(tmp_path)


def test_files_added_to_a_signed_bundle_keep_it_signed(bundle: Path) -> None:
    keys = signing.trusted_keys()
    assert (bundle / signing.SIGNATURE).is_file()
    before = (bundle / signing.SIGNATURE).read_bytes()
    layout.add_files(bundle, {"reference.json": {"features": {}}})
    assert (bundle / signing.SIGNATURE).read_bytes() != before  # the new manifest is signed
    assert signing.verify_signature(bundle, keys) in keys
    assert "reference.json" in verify_bundle(bundle).hashes


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("monitor/reference.json", "a file in a sub-folder"),
        ("schema.json", "a file the bundle already has"),
        ("manifest.json", "the manifest itself"),
        ("reference.txt", "not a .json file"),
    ],
)
def test_add_files_refuses_every_name_but_a_new_top_level_json_file(
    bundle: Path, name: str, why: str
) -> None:
    before = {p.name: sha256_file(p) for p in bundle.iterdir()}
    with pytest.raises(ArtifactError, match=r"expected a new top-level \.json file name") as caught:
        layout.add_files(bundle, {name: {"why": why}})
    assert caught.value.path == name
    assert {p.name: sha256_file(p) for p in bundle.iterdir()} == before  # nothing written
    verify_bundle(bundle)  # still intact


def test_the_golden_rows_stay_out_of_a_verified_bundles_repr(categorical_bundle: Path) -> None:
    verified = verify_bundle(categorical_bundle)
    assert verified.golden is not None
    assert "golden=" not in repr(verified)  # thousands of numbers would bury the useful fields
    assert str(verified.path) in repr(verified)

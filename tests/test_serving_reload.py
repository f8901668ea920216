import asyncio
import dataclasses
import json
import shutil

import pytest

from opsnb import signing
from opsnb.artifacts import sha256_file
from opsnb.bundle import resolve_bundle
from opsnb.errors import ArtifactError, OpsnbError, ParityError
from opsnb.predictor import CompiledModel
from opsnb.serving import reload as reload_module
from opsnb.serving.reload import ModelSlot, prepare, verify
from opsnb.serving.store import ModelStore, Trust
from tests.serving_support import copy_bundle


@pytest.fixture(scope="module")
def bundle_run(categorical_bundle, tmp_path_factory):
    """A run folder holding a small compiled, signed bundle (no pipeline run: seconds, so that
    ``make mutate`` can run these tests once per mutant of reload.py)."""
    run = tmp_path_factory.mktemp("reload") / "run"
    shutil.copytree(categorical_bundle, run / "bundle")
    return run


def tamper(bundle, *, truncate: bool = False):
    library = bundle / "model.so"
    data = bytearray(library.read_bytes())
    if truncate:
        del data[len(data) // 2 :]
    else:
        data[len(data) // 2] ^= 0xFF
    library.write_bytes(bytes(data))
    return bundle


def test_a_run_folder_and_a_bundle_folder_both_resolve_to_the_bundle(bundle_run):
    assert resolve_bundle(bundle_run) == bundle_run / "bundle"
    assert resolve_bundle(bundle_run / "bundle") == bundle_run / "bundle"


def test_a_folder_without_a_bundle_is_refused_with_the_fix(tmp_path):
    with pytest.raises(
        ArtifactError,
        match=r"neither a run folder with bundle/manifest.json nor"
        r" a bundle folder; run the pipeline through 'operationalize'",
    ):
        resolve_bundle(tmp_path)


def test_prepare_loads_checks_and_warms_a_bundle(bundle_run):
    served = prepare(bundle_run, warm_rows=8)
    try:
        assert served.output == "probability"
        assert len(served.version) == 12
        assert served.contract.names == served.model.schema.feature_names
    finally:
        served.model.close()


@pytest.mark.parametrize("truncate", [False, True])
def test_a_tampered_or_truncated_library_is_refused(bundle_run, tmp_path, truncate):
    bundle = tamper(copy_bundle(bundle_run, tmp_path / "b"), truncate=truncate)
    with pytest.raises(ArtifactError, match=r"bundle file model.so does not match manifest.json"):
        prepare(bundle)


def test_a_refused_reload_keeps_the_old_model_serving(bundle_run, tmp_path):
    tamper(copy_bundle(bundle_run, tmp_path / "bad"))
    copy_bundle(bundle_run, tmp_path / "other", version="f" * 64)

    shutil.copytree(bundle_run / "bundle", tmp_path / "first")

    async def main():
        slot = ModelSlot(ModelStore(tmp_path, "first"), warm_rows=4)
        first = await slot.reload()
        with pytest.raises(OpsnbError, match=r"does not match manifest\.json"):
            await slot.reload("bad")
        kept, error = slot.current, slot.last_error
        second = await slot.reload("other")
        slot.close()
        return first, kept, error, second

    first, kept, error, second = asyncio.run(main())
    assert kept is first
    assert "model.so does not match" in error
    assert second.version == "f" * 12
    shutil.rmtree(tmp_path / "bad")


def predicting_wrongly(bundle):
    """A signed, intact bundle whose library does not give the outputs its golden rows record
    (as when a wrong model.so was sealed): trust and hashes pass, only the self-check refuses."""
    golden = json.loads((bundle / "golden.json").read_text())
    golden["expected"] = [min(1.0, value + 0.25) for value in golden["expected"]]
    (bundle / "golden.json").write_text(json.dumps(golden))
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"]["golden.json"] = sha256_file(bundle / "golden.json")
    manifest["model_sha256"] = "e" * 64
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    signing.sign_bundle(bundle)
    return bundle


def test_a_signed_bundle_that_predicts_wrongly_is_refused_by_its_self_check(bundle_run, tmp_path):
    shutil.copytree(bundle_run / "bundle", tmp_path / "first")
    wrong = predicting_wrongly(copy_bundle(bundle_run, tmp_path / "wrong"))
    verify(wrong, Trust.default())  # signed by the project key, every hash matches

    async def main():
        slot = ModelSlot(ModelStore(tmp_path, "first"), warm_rows=4)
        first = await slot.reload()
        with pytest.raises(ParityError, match=r"golden\.json"):
            await slot.reload("wrong")
        kept, error = slot.current, slot.last_error
        slot.close()
        return first, kept, error

    first, kept, error = asyncio.run(main())
    assert kept is first  # the old model keeps serving
    assert kept.version != "e" * 12
    assert error is not None
    assert "golden.json" in error


def test_a_refused_version_name_is_logged_escaped_and_shortened_to_80_characters(
    bundle_run, tmp_path, caplog
):
    shutil.copytree(bundle_run / "bundle", tmp_path / "first")
    name = "v" * 100 + "\n"  # not a version name; the log must not let it forge a line

    async def main():
        slot = ModelSlot(ModelStore(tmp_path, "first"), warm_rows=4)
        await slot.reload()
        with pytest.raises(OpsnbError, match=r"is not a name in the model store"):
            await slot.reload(name)
        slot.close()

    with caplog.at_level("ERROR", logger="opsnb.serving.reload"):
        asyncio.run(main())
    (record,) = [r for r in caplog.records if r.name == "opsnb.serving.reload"]
    assert record.getMessage().startswith(f"refused model version {'v' * 77}...: ")
    assert "\n" not in record.getMessage()


def test_prepare_checks_the_golden_rows_once_and_accepts_1000_records(bundle_run, monkeypatch):
    checks = []
    original = CompiledModel.self_check

    def counted(model):
        checks.append(model.version)
        return original(model)

    monkeypatch.setattr(CompiledModel, "self_check", counted)
    served = prepare(bundle_run, warm_rows=4)
    try:
        assert len(checks) == 1  # not once by the loader and again here
        assert served.contract.max_records == 1000
        assert served.contract.range_slack == 1.0  # one training span past each end
    finally:
        served.model.close()


def test_the_first_load_uses_the_bundle_verified_at_start_and_later_ones_verify_again(
    bundle_run, tmp_path, monkeypatch
):
    shutil.copytree(bundle_run / "bundle", tmp_path / "first")
    verified = verify(tmp_path / "first", Trust.default())
    calls = []
    original = reload_module.verify

    def counted(folder, trust):
        calls.append(folder.name)
        return original(folder, trust)

    monkeypatch.setattr(reload_module, "verify", counted)

    async def main():
        slot = ModelSlot(ModelStore(tmp_path, "first"), verified=verified, warm_rows=4)
        await slot.reload()
        after_first = list(calls)
        await slot.reload()
        slot.close()
        return after_first

    assert asyncio.run(main()) == []  # verified once, before the server started
    assert calls == ["first"]  # a SIGHUP later verifies the files anew


def test_long_refusals_are_logged_shortened_to_400_characters(
    bundle_run, tmp_path, caplog, monkeypatch
):
    shutil.copytree(bundle_run / "bundle", tmp_path / "first")

    def failing(*args, **kwargs):
        raise ValueError("x" * 1000)  # a library failing while it loads

    async def main():
        slot = ModelSlot(ModelStore(tmp_path, "first"), warm_rows=4)
        await slot.reload()
        monkeypatch.setattr(reload_module, "prepare", failing)
        with pytest.raises(OpsnbError, match=r"model version first could not be loaded"):
            await slot.reload()
        slot.close()

    with caplog.at_level("ERROR", logger="opsnb.serving.reload"):
        asyncio.run(main())
    (record,) = [r for r in caplog.records if r.name == "opsnb.serving.reload"]
    logged = record.getMessage().removeprefix("refused model version first: ")
    assert logged == "ValueError: " + "x" * (400 - 3 - len("ValueError: ")) + "..."


def test_a_long_refusal_of_a_version_is_logged_shortened_to_400_characters(
    bundle_run, tmp_path, caplog
):
    store = tmp_path / ("a" * 200) / ("b" * 200)  # its path makes the refusal long
    shutil.copytree(bundle_run / "bundle", store / "first")

    async def main():
        slot = ModelSlot(ModelStore(store, "first"), warm_rows=4)
        await slot.reload()
        with pytest.raises(OpsnbError, match=r"is not a name in the model store") as caught:
            await slot.reload("../first")
        slot.close()
        return str(caught.value)

    with caplog.at_level("ERROR", logger="opsnb.serving.reload"):
        message = asyncio.run(main())
    assert len(message) > 400
    (record,) = [r for r in caplog.records if r.name == "opsnb.serving.reload"]
    assert record.getMessage() == f"refused model version ../first: {message[:397]}..."


def test_a_served_model_is_frozen_and_the_slot_closes_what_it_serves(bundle_run, tmp_path):
    shutil.copytree(bundle_run / "bundle", tmp_path / "first")
    slot = ModelSlot(ModelStore(tmp_path, "first"), warm_rows=4)
    slot.close()  # nothing loaded yet: nothing to close, no error
    served = asyncio.run(slot.reload())
    with pytest.raises(dataclasses.FrozenInstanceError):
        served.bundle = tmp_path  # type: ignore[misc]
    private = served.model._private
    assert private.is_dir()
    slot.close()
    assert not private.exists()  # the private copy of the library is gone

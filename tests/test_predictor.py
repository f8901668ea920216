import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from opsnb import predictor
from opsnb.artifacts import sha256_file
from opsnb.bundle import verify_bundle
from opsnb.errors import ArtifactError, ConfigError, ParityError, SchemaError
from opsnb.predictor import load_bundle
from tests.model_kinds import CATEGORIES, bundle_of, reference


@pytest.fixture
def bundle(categorical_bundle: Path, tmp_path: Path) -> Path:
    """A private copy of the categorical bundle that a test may damage."""
    return Path(shutil.copytree(categorical_bundle, tmp_path / "bundle"))


@pytest.fixture
def model(categorical_bundle: Path):
    loaded = load_bundle(categorical_bundle, threads=2)
    yield loaded
    loaded.close()


def test_a_dataframe_by_name_in_any_order_equals_the_array_in_schema_order(model, model_kinds):
    x = model_kinds["categorical"].x[:300]
    frame = pd.DataFrame(x, columns=model.schema.feature_names)
    frame["colour"] = pd.Series([CATEGORIES[int(c)] if not np.isnan(c) else None for c in x[:, 2]])
    shuffled = frame[list(reversed(frame.columns))].assign(extra=1.0)
    np.testing.assert_array_equal(model.predict(shuffled), model.predict(x))
    assert model.predict(x).dtype == np.float64
    assert model.predict(x).shape == (300,)


def test_the_interface_serving_relies_on(model):
    assert model.n_features == 5
    assert model.version == model.manifest["model_sha256"][:12]
    assert model.schema.feature_names[2] == "colour"
    assert model.self_check()["passed"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            np.zeros(5, np.float32),
            r"shape \(rows, 5\) .*got shape \(5,\) \(one row\? use x.reshape",
        ),
        (np.zeros((2, 4)), r"expected an array of shape \(rows, 5\) in schema order \(x0, x1"),
        (np.array([["a"] * 5]), r"dtype <U1 is not numeric"),
    ],
)
def test_wrong_shapes_and_types_are_refused(model, data, message):
    with pytest.raises(SchemaError, match=message):
        model.predict(data)


@pytest.mark.parametrize("bad", [np.inf, -np.inf, 1e39])
def test_values_beyond_float32_are_refused_by_row_and_feature(model, bad):
    x = np.zeros((3, 5))
    x[2, 3] = bad
    with pytest.raises(
        SchemaError, match=r"row 2, feature 'x2' is -?inf as float32; expected a fini"
    ):
        model.predict(x)


def test_a_bad_value_in_a_threaded_batch_is_named_by_its_row_in_the_whole_batch(model):
    x = np.zeros((5000, 5), np.float32)
    x[4321, 0] = np.inf
    with pytest.raises(SchemaError, match=r"row 4321, feature 'x0'"):
        model.predict(x)


def test_a_threaded_batch_scores_every_row_exactly_once(model, monkeypatch):
    scored: list[tuple[int, int]] = []
    real = model._native.predict_into

    def recording(x, out, **kwargs):  # our own dispatch under watch; the library call is real
        scored.append((kwargs.get("row_offset", 0), len(x)))
        real(x, out, **kwargs)

    monkeypatch.setattr(model._native, "predict_into", recording)
    # The rows worth a thread are measured at load (machine speed): pin them for the split.
    monkeypatch.setattr(model, "min_rows_per_thread", 1000)
    x = np.random.default_rng(0).normal(size=(5000, 5)).astype(np.float32)
    out = model.predict(x)
    assert sorted(scored) == [(0, 2500), (2500, 2500)]  # two threads, no row twice
    assert np.isfinite(out).all()
    scored.clear()
    monkeypatch.setattr(model, "min_rows_per_thread", 3000)  # 5000 rows: not worth two
    np.testing.assert_array_equal(model.predict(x), out)
    assert scored == [(0, 5000)]


def test_many_threads_at_once_get_what_one_thread_gets(model, model_kinds):
    x = model_kinds["categorical"].x
    batches = [x[i : i + n] for i, n in [(0, 1), (5, 16), (100, 700), (0, 3000), (7, 2500)]]
    expected = [model.predict(b) for b in batches]
    failures: list[str] = []

    def worker(seed: int) -> None:
        for k in np.random.default_rng(seed).integers(0, len(batches), 40):
            if not np.array_equal(model.predict(batches[k]), expected[k]):
                failures.append(f"batch {k} in thread {seed}")

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    single = load_bundle(model.bundle_dir, threads=1)
    np.testing.assert_array_equal(single.predict(x), model.predict(x))
    single.close()


CONSTRUCTOR = r"""
#include <stdio.h>
__attribute__((constructor)) static void ran(void) { FILE* f = fopen("%s", "w"); if (f) fclose(f); }
int get_num_feature(void) { return 5; }
"""


def test_a_modified_library_is_refused_before_it_is_ever_loaded(bundle, tmp_path):
    marker = tmp_path / "constructor-ran"
    (tmp_path / "evil.c").write_text(CONSTRUCTOR % marker)
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-o", bundle / "model.so", tmp_path / "evil.c"], check=True
    )
    with pytest.raises(ArtifactError, match=r"model.so does not match manifest.json.*refusing"):
        load_bundle(bundle)
    assert not marker.exists()  # its code never ran
    maps = Path("/proc/self/maps").read_text()
    assert str(bundle) not in maps
    assert "evil" not in maps


def test_a_missing_or_unlisted_file_is_refused(bundle):
    (bundle / "golden.json").unlink()
    with pytest.raises(ArtifactError, match=r"bundle file golden.json is missing from"):
        verify_bundle(bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    del manifest["files"]["model.so"]
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=r"lists no model.so; a bundle must seal it"):
        verify_bundle(bundle)
    with pytest.raises(ArtifactError, match=r"is not a bundle: manifest.json is missing"):
        verify_bundle(bundle.parent)


def _reseal(bundle: Path, name: str) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"][name] = sha256_file(bundle / name)
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def test_self_check_names_the_worst_golden_row(bundle):
    gold = json.loads((bundle / "golden.json").read_text())
    gold["expected"][4] += 0.25  # the recorded output no longer matches what the library says
    (bundle / "golden.json").write_text(json.dumps(gold))
    _reseal(bundle, "golden.json")
    with pytest.raises(ParityError, match=r"golden.json by 0.25 at row 4 \(x0: -0\)"):
        load_bundle(bundle)
    model = load_bundle(bundle, self_check=False)  # an operator may still look at it
    with pytest.raises(ParityError, match=r"at row 4"):
        model.self_check()
    model.close()


def test_self_check_needs_golden_rows(bundle):
    manifest = json.loads((bundle / "manifest.json").read_text())
    del manifest["files"]["golden.json"]
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    model = load_bundle(bundle)  # an old bundle still loads
    with pytest.raises(ArtifactError, match=r"lists no golden.json; rebuild the bundle"):
        model.self_check()
    model.close()


def test_each_load_uses_a_fresh_private_path(categorical_bundle):
    first, second = load_bundle(categorical_bundle), load_bundle(categorical_bundle)
    assert first._native.path != second._native.path
    assert categorical_bundle not in first._native.path.parents
    first.close()
    second.close()


def test_threads_must_be_positive(categorical_bundle):
    with pytest.raises(ConfigError, match="threads must be >= 1, got 0"):
        load_bundle(categorical_bundle, threads=0)


def test_the_entry_points_error_codes_become_named_errors(model):
    """``opsnb_predict`` returns 0, -1 (wrong column count), or 1 + the flat index of the first
    value it cannot score; each non-zero code is an error naming what was wrong."""
    native = model._native
    n = native.n_features
    x = np.zeros((3, n), np.float32)
    out = np.full(3, -1.0)
    assert native.call(x.ctypes.data, 3, n, 0, out.ctypes.data) == 0
    assert np.isfinite(out).all()
    wide = np.zeros((3, n + 1), np.float32)
    rc = native.call(wide.ctypes.data, 3, n + 1, 0, out.ctypes.data)
    assert rc == -1
    with pytest.raises(SchemaError, match=rf"opsnb_predict refused {n + 1} columns"):
        native.raise_for(rc, wide)
    x[2, 1] = np.inf
    rc = native.call(x.ctypes.data, 3, n, 0, out.ctypes.data)
    assert rc == 2 * n + 1 + 1
    with pytest.raises(SchemaError, match=r"row 12, feature 'x1' is inf as float32"):
        native.raise_for(rc, x, row_offset=10)
    with pytest.raises(MemoryError, match=r"could not allocate"):
        native.raise_for(-2, x)


def test_small_and_large_batches_give_xgboosts_probabilities(model_kinds, compile_cache, tmp_path):
    """Both paths (the per-thread buffers up to SMALL_BATCH rows, the split batch above it)
    return probabilities, not margins, equal to XGBoost's."""
    kind = model_kinds["binary"]
    bundle_of(kind, tmp_path / "bundle", compile_cache)
    model = load_bundle(tmp_path / "bundle", threads=2)
    try:
        for rows in (1, predictor.SMALL_BATCH, predictor.SMALL_BATCH + 1, 2000):
            x = np.ascontiguousarray(kind.x[:rows], np.float32)
            got = model.predict(x)
            np.testing.assert_allclose(got, reference(kind, x), rtol=0, atol=1e-6)
            assert ((got > 0) & (got < 1)).all()
    finally:
        model.close()


def test_batches_up_to_small_batch_rows_use_the_per_thread_buffers(categorical_bundle, model_kinds):
    x = model_kinds["categorical"].x
    for rows, buffered in ((predictor.SMALL_BATCH, True), (predictor.SMALL_BATCH + 1, False)):
        model = load_bundle(categorical_bundle, self_check=False)
        try:
            model.predict(np.ascontiguousarray(x[:rows], np.float32))
            assert hasattr(model._local, "buffers") is buffered, rows
        finally:
            model.close()


def test_one_thread_unless_asked_and_close_may_be_called_twice(categorical_bundle):
    verified = verify_bundle(categorical_bundle)
    for model in (load_bundle(categorical_bundle), predictor.CompiledModel(verified)):
        assert model.threads == 1
        assert repr(model) == f"CompiledModel(version={verified.version!r}, threads=1)"
        model.close()
        model.close()  # a second close (a reload racing shutdown) is harmless


def test_rows_worth_a_thread_turn_the_part_budget_into_rows(categorical_bundle, monkeypatch):
    """Best of three timings on 256 rows, budget / time per row, clipped to [8, 4096]."""
    timed: list[tuple[int, ...]] = []
    per_row_s = {"value": 3e-6}

    def fake_timed(fn, x, out):
        timed.append(x.shape)
        return per_row_s["value"] * len(x) * (1 + len(timed) % 3)  # the best is the 1x one

    monkeypatch.setattr(predictor, "_timed", fake_timed)
    expected = {3e-6: 34, 1.0: 8, 1e-12: 4096}  # ceil(100 us / 3 us); clipped low; high
    for per_row, rows in expected.items():
        per_row_s["value"] = per_row
        timed.clear()
        model = load_bundle(categorical_bundle, threads=2, self_check=False)
        try:
            assert model.min_rows_per_thread == rows
            assert timed == [(256, model.n_features)] * 3
        finally:
            model.close()


def test_timed_measures_the_call() -> None:
    assert 0.01 <= predictor._timed(time.sleep, 0.01) < 1.0


def test_golden_rows_without_a_recorded_tolerance_use_the_default(categorical_bundle):
    verified = verify_bundle(categorical_bundle)
    assert verified.golden is not None
    golden = {k: v for k, v in verified.golden.items() if k != "tolerance"}
    model = predictor.CompiledModel(replace(verified, golden=golden))
    try:
        report = model.self_check()
        assert report["passed"]
        assert report["tolerance"] == 1e-5
    finally:
        model.close()


def test_the_library_is_never_given_an_output_buffer_shorter_than_the_rows(model):
    x = np.zeros((10, model.n_features), np.float32)
    with pytest.raises(ValueError, match=r"out must be a contiguous float64 array of 10 rows"):
        model._native.predict_into(x, np.empty(9, np.float64))
    with pytest.raises(ValueError, match=r"got float32 of shape \(10,\)"):
        model._native.predict_into(x, np.empty(10, np.float32))


def test_close_stops_the_worker_threads_before_it_returns(categorical_bundle, model_kinds):
    before = set(threading.enumerate())
    model = load_bundle(categorical_bundle, threads=3)
    model.predict(np.ascontiguousarray(model_kinds["categorical"].x, np.float32))  # threads busy
    workers = [t for t in set(threading.enumerate()) - before if t.name.startswith("opsnb-pred")]
    assert workers
    model.close()
    assert not any(t.is_alive() for t in workers)


def test_rows_as_nested_lists_are_scored_like_the_array(model, model_kinds):
    x = np.ascontiguousarray(model_kinds["categorical"].x[:100], np.float32)
    np.testing.assert_array_equal(model.predict(x.tolist()), model.predict(x))


def test_importing_the_predictor_loads_neither_pandas_nor_the_training_stack():
    """A server process imports it: it must stay light (pandas only when a frame is given)."""
    heavy = "{'pandas', 'xgboost', 'sklearn'}"
    code = f"import sys, opsnb.predictor; print(sorted({heavy} & set(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_a_refused_private_copy_is_deleted(bundle, tmp_path, monkeypatch):
    private = tmp_path / "private"
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))  # where the private copies go
    verified = verify_bundle(bundle)
    (bundle / "model.so").write_bytes(b"swapped after the check")
    with pytest.raises(ArtifactError, match=r"model.so does not match manifest.json"):
        predictor.CompiledModel(verified)
    assert list(private.iterdir()) == []


def test_a_batch_is_split_only_into_parts_worth_a_thread(categorical_bundle, monkeypatch):
    """With 34 rows worth a thread (timing faked), 3 threads split 68 rows in two and 1,000 in
    three; 65 rows (one part's worth) stay on the calling thread, in one call."""
    monkeypatch.setattr(predictor, "_timed", lambda fn, x, out: 3e-6 * len(x))
    model = load_bundle(categorical_bundle, threads=3, self_check=False)
    calls: list[tuple[int, int]] = []
    native = model._native.predict_into

    def spy(x, out, *, row_offset=0, **kw):
        calls.append((row_offset, len(x)))
        native(x, out, row_offset=row_offset, **kw)

    monkeypatch.setattr(model._native, "predict_into", spy)
    try:
        assert model.min_rows_per_thread == 34
        for rows, parts in ((65, [(0, 65)]), (68, [(0, 34), (34, 34)]),
                            (1000, [(0, 333), (333, 333), (666, 334)])):  # fmt: skip
            calls.clear()
            model.predict(np.zeros((rows, model.n_features), np.float32))
            assert sorted(calls) == parts, rows
    finally:
        model.close()

import os
import re
import shutil
import subprocess
import zipfile
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from opsnb import bundle as layout
from opsnb import compiler, golden
from opsnb.errors import CompileError, ParityError
from opsnb.native import NativeModel, private_copy
from opsnb.predictor import load_bundle
from tests.model_kinds import bundle_of, reference, train_kind


@pytest.mark.parametrize("kind", ["binary", "regression", "categorical", "missing"])
def test_each_model_kind_compiles_and_holds_parity_with_both_references(
    kind, model_kinds, compile_cache, tmp_path
):
    manifest = bundle_of(model_kinds[kind], tmp_path / "bundle", compile_cache)
    reports = manifest["parity"]
    assert [(r["rows_compared"], r["reference"]) for r in reports] == [
        ("test split", "xgboost"),
        ("test split", "treelite.gtil"),
        ("golden rows", "xgboost"),
        ("golden rows", "treelite.gtil"),
    ]
    assert all(r["passed"] and r["max_abs_diff"] <= 1e-5 for r in reports)
    assert sorted(manifest["files"]) == sorted(layout.FILES)
    model = load_bundle(tmp_path / "bundle")
    x = model_kinds[kind].x
    np.testing.assert_allclose(model.predict(x), reference(model_kinds[kind], x), atol=1e-5, rtol=0)
    model.close()


_finite = st.floats(-1e6, 1e6, width=32, allow_subnormal=True)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(x=arrays(np.float32, (7, 5), elements=st.one_of(_finite, st.just(np.nan))))
def test_compiled_predictions_equal_xgboost_on_generated_rows(x, model_kinds, categorical_bundle):
    kind = model_kinds["categorical"]
    x[:, 2] = np.where(
        np.isnan(x[:, 2]), np.nan, np.abs(np.round(x[:, 2])) % 7
    )  # codes, 5 and 6 unseen
    model = load_bundle(categorical_bundle, self_check=False)
    np.testing.assert_allclose(model.predict(x), reference(kind, x), atol=1e-5, rtol=0)
    model.close()


def test_a_multiclass_model_is_refused_with_the_reason_and_the_way_out(tmp_path):
    kind = train_kind(tmp_path, "multiclass", trees=3)
    with pytest.raises(CompileError, match=r"num_class=\[3\].*one binary model per class"):
        compiler.load_model(kind.model_path)


def test_an_unchanged_model_is_not_recompiled_and_new_options_are(model_kinds, tmp_path):
    path = model_kinds["binary"].model_path
    first = compiler.compile_cached(path, cache_dir=tmp_path)
    library = first.folder / "model.so"
    stamp = library.stat().st_mtime_ns
    again = compiler.compile_cached(path, cache_dir=tmp_path)
    assert (first.cache_hit, again.cache_hit) == (False, True)
    assert again.folder == first.folder
    assert library.stat().st_mtime_ns == stamp
    assert again.compile_seconds == first.compile_seconds > 0
    other = compiler.compile_cached(
        path, cache_dir=tmp_path, options=compiler.CompileOptions(trees_per_unit=7)
    )
    assert not other.cache_hit
    assert other.key != first.key
    assert other.info["units"] == 6  # 40 trees in units of 7


@pytest.mark.parametrize("options", [{"trees_per_unit": 40}, {"annotate": True, "block_rows": 8}])
def test_speed_options_keep_parity(options, model_kinds, compile_cache, tmp_path):
    manifest = bundle_of(model_kinds["categorical"], tmp_path / "b", compile_cache, **options)
    assert all(r["passed"] for r in manifest["parity"])
    assert manifest["compile"]["options"] | options == manifest["compile"]["options"]


def test_a_quantized_build_either_holds_parity_or_is_refused_naming_the_split(
    model_kinds, compile_cache, tmp_path
):
    # Whether quantization misroutes a row exactly at a split depends on the TL2cgen and XGBoost
    # versions (TL2cgen 1.0 writes thresholds with 8 significant digits); the guarantee is that
    # a build that misroutes one is refused, by name, and one that does not holds parity.
    refused: ParityError | None = None
    try:
        manifest = bundle_of(model_kinds["binary"], tmp_path / "b", compile_cache, quantize=True)
    except ParityError as exc:
        refused = exc
    if refused is not None:
        assert re.search(r"at row \d+ \(x\d+: at split [-0-9.e]+\)", str(refused)), refused
        assert not (tmp_path / "b" / "manifest.json").exists()  # no bundle is written
    else:
        assert all(r["passed"] and r["max_abs_diff"] <= 1e-5 for r in manifest["parity"])
        assert manifest["compile"]["options"]["quantize"] is True


def test_branch_annotation_without_rows_is_refused(model_kinds, tmp_path):
    with pytest.raises(CompileError, match=r"annotate=True\) needs annotate_rows"):
        compiler.compile_cached(
            model_kinds["binary"].model_path,
            cache_dir=tmp_path,
            options=compiler.CompileOptions(annotate=True),
        )


def test_a_library_that_disagrees_with_xgboost_stops_with_the_worst_row(model_kinds, compile_cache):
    kind = model_kinds["binary"]
    other = model_kinds["missing"]  # same features, different trees
    built = compiler.compile_cached(other.model_path, cache_dir=compile_cache)
    wrong = NativeModel(
        private_copy(built.folder / "model.so"),
        feature_names=kind.schema.feature_names,
    )
    with pytest.raises(ParityError, match=r"differ from xgboost by .* at row \d+.*tolerance 1e-05"):
        golden.prove_parity(
            wrong.predict,
            booster=kind.booster,
            model=compiler.load_model(kind.model_path),
            schema=kind.schema,
            sample=kind.x[:200],
        )


def test_the_source_package_builds_with_make_alone(categorical_bundle, model_kinds, tmp_path):
    with zipfile.ZipFile(categorical_bundle / "model-src.zip") as pkg:
        pkg.extractall(tmp_path)
    src = tmp_path / "model-src"
    assert {"Makefile", "CMakeLists.txt", "header.h", "main.c", "opsnb_batch.c"} <= {
        p.name for p in src.iterdir()
    }
    env = {"PATH": os.environ["PATH"]}  # no Python involved: make and gcc only
    subprocess.run(["make", "-j2"], cwd=src, env=env, check=True, capture_output=True)
    built = NativeModel(
        private_copy(src / "model.so"),
        feature_names=model_kinds["categorical"].schema.feature_names,
    )
    bundled = load_bundle(categorical_bundle)
    x = model_kinds["categorical"].x
    np.testing.assert_array_equal(built.predict(x), bundled.predict(x))
    bundled.close()


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")
def test_the_source_package_builds_with_cmake(categorical_bundle, tmp_path):
    with zipfile.ZipFile(categorical_bundle / "model-src.zip") as pkg:
        pkg.extractall(tmp_path)
    build = tmp_path / "build"
    subprocess.run(
        ["cmake", "-S", tmp_path / "model-src", "-B", build], check=True, capture_output=True
    )
    subprocess.run(["cmake", "--build", build], check=True, capture_output=True)
    assert (build / "model.so").is_file()


def test_a_missing_compiler_is_named(model_kinds, tmp_path):
    with pytest.raises(CompileError, match=r"C compiler 'no-such-cc' is not usable"):
        compiler.compile_cached(
            model_kinds["binary"].model_path, cache_dir=tmp_path, toolchain="no-such-cc"
        )


def test_a_file_that_is_not_a_model_is_refused(tmp_path: Path):
    bad = tmp_path / "model.json"
    bad.write_text("{}")
    with pytest.raises(CompileError, match=r"Treelite cannot load .*model.json"):
        compiler.load_model(bad)


def test_the_parity_tolerance_given_is_the_one_held(model_kinds, compile_cache):
    """``-p parity_tolerance``: a looser bound accepts what the default refuses, and is recorded."""
    kind = model_kinds["binary"]
    built = compiler.compile_cached(model_kinds["missing"].model_path, cache_dir=compile_cache)
    wrong = NativeModel(
        private_copy(built.folder / "model.so"), feature_names=kind.schema.feature_names
    )
    proof = golden.prove_parity(
        wrong.predict,
        booster=kind.booster,
        model=compiler.load_model(kind.model_path),
        schema=kind.schema,
        sample=kind.x[:200],
        tolerance=1.0,  # probabilities differ by at most 1
    )
    assert [(r["tolerance"], r["passed"]) for r in proof["reports"]] == [(1.0, True)] * 4
    assert max(r["max_abs_diff"] for r in proof["reports"]) > 1e-3  # the default would refuse


def test_the_compile_cache_is_keyed_on_the_compiler_and_library_versions(
    model_kinds, tmp_path, monkeypatch
):
    """A new gcc or a new Treelite/TL2cgen compiles again instead of reusing the old build."""
    path = model_kinds["binary"].model_path
    first = compiler.compile_cached(path, cache_dir=tmp_path)
    gcc = subprocess.run(["gcc", "--version"], capture_output=True, text=True, check=True)
    assert first.info["toolchain"] == gcc.stdout.splitlines()[0].strip()
    assert first.info["versions"] == {p: version(p) for p in ("treelite", "tl2cgen")}
    # the same gcc under another version line: a real wrapper, found by path
    wrapper = tmp_path / "bin" / "gcc"
    wrapper.parent.mkdir()
    wrapper.write_text(
        '#!/bin/sh\nif [ "$1" = --version ]; then echo "gcc (opsnb test) 99.1"; exit 0; fi\n'
        'exec gcc "$@"\n'
    )
    wrapper.chmod(0o755)
    newer_gcc = compiler.compile_cached(path, cache_dir=tmp_path, toolchain=str(wrapper))
    assert not newer_gcc.cache_hit
    assert newer_gcc.key != first.key
    assert newer_gcc.info["toolchain"] == "gcc (opsnb test) 99.1"
    real = compiler.version
    monkeypatch.setattr(
        compiler, "version", lambda p: "9.9.9" if p == "tl2cgen" else real(p)
    )  # what an upgraded TL2cgen reports
    newer_tl2cgen = compiler.compile_cached(path, cache_dir=tmp_path)
    assert not newer_tl2cgen.cache_hit
    assert len({first.key, newer_gcc.key, newer_tl2cgen.key}) == 3
    monkeypatch.undo()
    assert compiler.compile_cached(path, cache_dir=tmp_path).key == first.key  # still cached

import json

import numpy as np

from opsnb.bench import engines
from opsnb.bundle import verify_bundle
from tests.support import opsnb_cli


def test_every_engine_is_timed_and_agrees_with_opsnb(model_kinds, categorical_bundle):
    kind = model_kinds["categorical"]
    result = engines.bench_model(
        "cat",
        kind.model_path,
        verify_bundle(categorical_bundle),
        kind.x[:500],
        batches=(1, 16),
        threads=(1, 2),
        budget_s=0.01,
    )
    table = result.table()
    assert list(table.index) == [("cat", t, b) for t in (1, 2) for b in (1, 16)]
    assert set(table.columns) == {
        engines.OPSNB,
        engines.XGB_INPLACE,
        engines.XGB_DMATRIX,
        engines.TL2CGEN,
        engines.C_LOOP,
    }
    assert np.isnan(table.loc[("cat", 2, 1), engines.C_LOOP])  # the C loop is one thread
    assert (table.loc[("cat", 1, 16)] > 0).all()
    # ONNX cannot express categorical splits: left out, with the reason
    assert "onnxruntime on cat" in result.skipped
    assert all(a["max_abs_diff_vs_opsnb"] <= 1e-5 for a in result.agreement)
    ratios = result.ratios()
    expected = table[engines.XGB_INPLACE] / table[engines.OPSNB]
    np.testing.assert_allclose(ratios[f"x vs {engines.XGB_INPLACE}"], expected, atol=0.006)


def test_opsnb_bench_quick_prints_the_table_and_the_ratios(runs_dir, tmp_path):
    out, scratch = tmp_path / "bench.json", tmp_path / "tmp"
    scratch.mkdir()
    env = {"OPSNB_RUNS_DIR": str(runs_dir), "TMPDIR": str(scratch)}
    done = opsnb_cli("bench", "--quick", "--json", str(out), env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    # the compiled bundle, the private library copies and the C loop are all cleaned up
    # (ONNX Runtime leaves its own telemetry session file, .ses, which is not ours)
    assert [p.name for p in scratch.iterdir() if p.name != ".ses"] == []
    for text in [
        "median microseconds per row",
        "large 60x4",
        engines.ONNX,
        f"x vs {engines.ONNX}",
        f"x vs {engines.XGB_INPLACE}",
        "load average",
    ]:
        assert text in done.stdout
    saved = json.loads(out.read_text())
    assert {r["engine"] for r in saved["records"]} == set(engines.ENGINES)
    assert {r["batch"] for r in saved["records"]} == set(engines.QUICK_BATCH_SIZES)


def test_a_run_without_a_bundle_is_named(runs_dir):
    done = opsnb_cli("bench", str(runs_dir / "nope"), env={"OPSNB_RUNS_DIR": str(runs_dir)})
    assert done.returncode == 1
    assert "has no bundle/manifest.json; run the pipeline first" in done.stderr


def test_with_no_run_and_no_large_model_there_is_nothing_to_measure(runs_dir):
    done = opsnb_cli("bench", "--no-large", env={"OPSNB_RUNS_DIR": str(runs_dir)})
    assert done.returncode == 1
    assert "nothing to measure: no run with a bundle under" in done.stderr

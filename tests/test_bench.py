import json

import numpy as np

from conftest import opsnb_cli
from opsnb import bench
from opsnb.bundle import verify_bundle


def test_every_engine_is_timed_and_agrees_with_opsnb(model_kinds, categorical_bundle):
    kind = model_kinds["categorical"]
    result = bench.bench_model(
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
        bench.OPSNB,
        bench.XGB_INPLACE,
        bench.XGB_DMATRIX,
        bench.TL2CGEN,
        bench.C_LOOP,
    }
    assert np.isnan(table.loc[("cat", 2, 1), bench.C_LOOP])  # the C loop is one thread
    assert (table.loc[("cat", 1, 16)] > 0).all()
    # ONNX cannot express categorical splits: left out, with the reason
    assert "onnxruntime on cat" in result.skipped
    assert all(a["max_abs_diff_vs_opsnb"] <= 1e-5 for a in result.agreement)
    ratios = result.ratios()
    expected = table[bench.XGB_INPLACE] / table[bench.OPSNB]
    np.testing.assert_allclose(ratios[f"x vs {bench.XGB_INPLACE}"], expected, atol=0.006)


def test_opsnb_bench_quick_prints_the_table_and_the_ratios(runs_dir, tmp_path):
    out = tmp_path / "bench.json"
    done = opsnb_cli("bench", "--quick", "--json", str(out), env={"OPSNB_RUNS_DIR": str(runs_dir)})
    assert done.returncode == 0, done.stderr[-3000:]
    for text in [
        "median microseconds per row",
        "large 60x4",
        bench.ONNX,
        f"x vs {bench.ONNX}",
        f"x vs {bench.XGB_INPLACE}",
        "load average",
    ]:
        assert text in done.stdout
    saved = json.loads(out.read_text())
    engines = {r["engine"] for r in saved["records"]}
    assert engines == set(bench.ENGINES)
    assert {r["batch"] for r in saved["records"]} == set(bench.QUICK_BATCH_SIZES)


def test_a_run_without_a_bundle_is_named(runs_dir):
    done = opsnb_cli("bench", str(runs_dir / "nope"), env={"OPSNB_RUNS_DIR": str(runs_dir)})
    assert done.returncode == 1
    assert "has no bundle/manifest.json; run the pipeline first" in done.stderr

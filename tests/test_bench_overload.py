"""The overload benchmark runs end to end (quick mode), through its documented script."""

import json
import subprocess
import sys

import pytest

from tests.support import PROJECT

pytestmark = pytest.mark.slow


def test_overload_bench_quick_reports_goodput_and_latencies_per_level(serving_run, tmp_path):
    out = tmp_path / "overload.json"
    done = subprocess.run(
        [sys.executable, "benchmarks/overload_bench.py", "--quick", "--run", str(serving_run),
         "--out", str(out)],
        cwd=PROJECT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    saved = json.loads(out.read_text())
    assert saved["capacity_rps"] > 0
    (level,) = saved["levels"]
    assert level["factor"] == 2.0
    assert level["goodput_rps"] > 0
    assert {"admitted_p50_ms", "admitted_p99_ms", "refused_p50_ms", "sent_rps"} <= set(level)
    assert "2x: offered" in done.stdout

"""benchmarks/score_bench.py in its quick mode: it runs, measures and prints every goal."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support import PROJECT


@pytest.mark.slow
def test_the_score_benchmark_runs_in_quick_mode(tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, str(PROJECT / "benchmarks" / "score_bench.py"), "--quick",
         "--json", str(out), "--work", str(tmp_path)],
        capture_output=True, text=True, cwd=PROJECT, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "goal: peak RSS <= 1500 MB at 50,000 rows" in done.stdout
    assert "x in-process" in done.stdout
    results = json.loads(out.read_text())
    assert results["in_process_rows_per_s"] > 0
    for rows in (10_000, 50_000):
        assert results[f"score_{rows}"]["rows"] == rows
        assert 0 < results[f"score_{rows}"]["peak_rss_mb"] < 1500

"""The service benchmark runs end to end (quick mode), through its documented script."""

import json
import subprocess
import sys

import pytest

from tests.support import PROJECT

pytestmark = pytest.mark.slow

SERVERS = (
    "handwritten pandas+predict",
    "handwritten numpy+inplace",
    "no-op (opsnb stack)",
    "opsnb serve",
    "opsnb serve --workers 2",
)


def test_serve_bench_quick_measures_every_server_and_states_each_goal(serving_run, tmp_path):
    out = tmp_path / "serve_bench.json"
    done = subprocess.run(
        [sys.executable, "benchmarks/serve_bench.py", "--quick", "--run", str(serving_run),
         "--out", str(out)],
        cwd=PROJECT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    saved = json.loads(out.read_text())
    measured = {(r["server"], r["concurrency"]) for r in saved["rows"]}
    assert measured >= {(s, c) for s in SERVERS for c in (1, 8, 64)}
    assert {"opsnb sustained 80%", "opsnb overload 3x"} <= {r["server"] for r in saved["rows"]}
    assert all(r["ok"] > 0 for r in saved["rows"]), saved["rows"]
    assert len(saved["goals"]) == 6
    for goal, value in saved["goals"].items():
        assert f"{goal}: {value}" in done.stdout

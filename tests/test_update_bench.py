"""The seed sweep of the update screen runs end to end in its quick mode."""

import json
import subprocess
import sys

import pytest

from tests.support import PROJECT

pytestmark = pytest.mark.slow


def test_the_quick_sweep_measures_every_goal(tmp_path) -> None:
    out = tmp_path / "records.jsonl"
    result = subprocess.run(
        [sys.executable, "benchmarks/update_bench.py", "--quick", "--jsonl", str(out)],
        capture_output=True, text=True, cwd=PROJECT, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    scenarios = {r["scenario"] for r in records if r["data"] == "loans"}
    assert scenarios == {"clean", "label-flip", "backdoor", "drift"}
    flip = next(r for r in records if r["scenario"] == "label-flip" and r["data"] == "loans")
    assert {"flip_recall", "flip_precision", "auc_gate", "auc_clean", "auc_blind"} <= set(flip)
    drift = next(r for r in records if r["scenario"] == "drift")
    assert drift["refused"]
    assert any(r["data"] == "breast_cancer" for r in records)
    timing = next(r for r in records if r["data"] == "timing")
    assert timing["screen_s"] > 0
    assert "refused_share" in result.stdout  # the summary table

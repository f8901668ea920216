"""The monitor's benchmarks run end to end in quick mode, through their documented scripts."""

import subprocess
import sys

import pytest

from tests.support import PROJECT

pytestmark = pytest.mark.slow


def _run(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, *args], cwd=PROJECT, capture_output=True, text=True, timeout=600,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_monitor_bench_quick_times_the_analysis_against_its_goal() -> None:
    out = _run("benchmarks/monitor_bench.py", "--quick", "--repeat", "1")
    assert "rows analysed            20,000 in 10 windows" in out
    assert "goal: 1,000,000 rows <= 10 s ->" in out
    assert "speed-up over the naive read:" in out


def test_monitor_sweep_quick_reports_every_goal(serving_run) -> None:
    out = _run("benchmarks/monitor_sweep.py", "--quick", "--run", str(serving_run))
    for line in (
        "clean streams raising any drift alert: ",
        "drift: feature precision ",
        "poison: estimate_gap ",
        "CBPE vs realized AUC on clean windows of 500: MAE",
    ):
        assert line in out  # fmt: skip
    assert "loan_amount    found in 2/2 seeds" in out

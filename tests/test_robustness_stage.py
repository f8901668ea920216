"""The robustness stage in real runs: its reports, the examples file, the gate failing a run,
and the goal benchmark in its quick mode."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from opsnb import config
from opsnb.artifacts import read_json
from opsnb.schema import Schema, to_matrix
from tests.support import PROJECT, manifest_of, opsnb_cli

pytestmark = pytest.mark.slow


def test_the_stage_reports_attacks_replayed_in_both_engines(completed_run: Path) -> None:
    summary = read_json(completed_run / "reports" / "robustness.json")
    assert summary["applies"] is True
    assert summary["threat_model"]["epsilon"] == 0.05
    at = summary["at_epsilon"]
    assert at["robust_accuracy"] < at["clean_accuracy"]
    assert at["certified_accuracy"] <= at["robust_accuracy"]
    assert summary["replay"]["mismatches"] == 0
    assert summary["replay"]["compiled_flipped"] == summary["replay"]["examples"] > 0
    assert summary["exact"]["optimal"] >= 1
    assert summary["exact"]["median_ratio"] <= 1.1
    assert summary["gate"] == {**summary["gate"], "floor": None, "passed": True}
    # the operationalize stage reused the library the robustness stage compiled
    assert read_json(completed_run / "bundle" / "manifest.json")["compile"]["cache_hit"] is True


def test_every_adversarial_example_can_be_rechecked_from_the_file(completed_run: Path) -> None:
    schema = Schema.load(completed_run / "schema.json")
    frame = pd.read_parquet(completed_run / "reports" / "adversarial.parquet")
    names = schema.feature_names
    assert {"row", "prediction", "adv_prediction", "linf", "l0"} <= set(frame.columns)
    assert {f"adv_{n}" for n in names} <= set(frame.columns)
    test = pd.read_parquet(completed_run / "data" / "test.parquet")
    assert frame["row"].between(0, len(test) - 1).all()
    original = test.iloc[frame["row"]].reset_index(drop=True)
    assert np.allclose(original["credit_score"], frame["credit_score"], equal_nan=True)
    booster = xgb.Booster(model_file=str(completed_run / "model" / "model.ubj"))
    adv = frame[[f"adv_{n}" for n in names]].set_axis(names, axis=1)
    kinds = schema.feature_types
    d = xgb.DMatrix(to_matrix(adv, schema), feature_names=names, feature_types=kinds,
                    enable_categorical=True)  # fmt: skip
    again = booster.predict(d)
    flipped = frame["flipped"].to_numpy()
    assert flipped.any()
    assert ((again >= 0.5) != (frame["prediction"] >= 0.5))[flipped].all()
    assert np.allclose(again, frame["adv_prediction"], atol=1e-6)
    assert (frame.loc[flipped, "linf"] > 0).all()
    assert not math.isinf(frame.loc[flipped, "linf"].max())


def test_a_run_below_the_robustness_floor_fails_with_evidence(tmp_path: Path) -> None:
    env = {config.RUNS_ENV: str(tmp_path)}
    result = opsnb_cli(
        "run", "-q", "--run-id", "fragile", "--until", "robustness",
        "-p", "n_rows", "1200", "-p", "max_depth", "[2]", "-p", "max_rounds", "40",
        "-p", "attack_rows", "40", "-p", "exact_rows", "0",
        "-p", "robustness_floor", "0.99", "-p", "robustness_epsilon", "0.1",
        env=env,
    )  # fmt: skip
    assert result.returncode != 0
    assert "FAIL: robust accuracy" in result.stderr + result.stdout
    assert "against floor 0.99" in result.stderr + result.stdout
    manifest = manifest_of(tmp_path / "fragile")
    assert manifest.stages["robustness"]["status"] == "failed"
    evidence = tmp_path / "fragile" / "failed" / "robustness" / "reports" / "robustness.json"
    assert read_json(evidence)["gate"]["passed"] is False


def test_the_goal_benchmark_runs_in_quick_mode(completed_run: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "robustness_bench", PROJECT / "benchmarks" / "robustness_bench.py"
    )
    assert spec is not None
    assert spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    (result,) = bench.main([str(completed_run), "--quick", "--time-limit", "20"])
    assert result["exact"]["solved"] == 2
    assert result["exact"]["median_ratio"] <= 1.1
    assert result["accuracy"]["under_attack"] <= result["accuracy"]["under_noise"]

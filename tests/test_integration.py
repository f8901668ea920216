"""The whole pipeline through the real `opsnb run`, each stage checked against its contract."""

import itertools
import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import xgboost as xgb

from opsnb import config, parameters
from opsnb.artifacts import read_json, sha256_file
from opsnb.monitoring.alerts import FIELDS
from opsnb.schema import Schema
from opsnb.stages import STAGES
from tests.support import SMALL, manifest_of, opsnb_cli, small_args

pytestmark = pytest.mark.slow


def test_every_stage_succeeded_and_every_artifact_verifies(completed_run: Path) -> None:
    manifest = manifest_of(completed_run)
    assert manifest.data["status"] == "succeeded"
    previous_end = datetime.min.replace(tzinfo=UTC)
    routed = parameters.route_parameters(SMALL)
    for stage in STAGES:
        record = manifest.stages[stage.name]
        assert record["status"] == "succeeded", stage.name
        # values, not presence: a stage ends after it starts, after the one before it ended;
        # its wall time covers that span (plus the kernel's start); CPU and memory are bounded
        started = datetime.fromisoformat(record["started"])
        finished = datetime.fromisoformat(record["finished"])
        assert previous_end <= started < finished, stage.name
        previous_end = finished
        assert (finished - started).total_seconds() <= record["wall_s"] + 1.0, stage.name
        assert 0 < record["wall_s"] < 1800, stage.name
        assert 0 < record["cpu_s"] <= record["wall_s"] * (os.cpu_count() or 1) + 1.0, stage.name
        assert 50 < record["kernel_peak_rss_mb"] < 16_000, stage.name  # a Python kernel, small data
        given = routed[stage.name]  # what the command line gave this stage, as recorded
        assert {k: record["params"][k] for k in given} == given, stage.name
        assert set(record["inputs"]) == set(stage.consumes)
        assert set(record["outputs"]) == set(stage.produces)
        for relpath in stage.produces:
            assert manifest.verify(relpath)
        assert (completed_run / "notebooks" / stage.notebook).is_file()
    assert manifest.stages["dataset"]["params"]["n_rows"] == SMALL["n_rows"]
    # the runner alone wrote the records: every kernel's receipt was taken into its record
    assert list((completed_run / ".receipts").iterdir()) == []
    assert set(manifest.stages["prepare"]["outside"]) == {"frozen contract"}
    latest = (completed_run.parent / "latest").resolve()  # other tests may have run since
    assert manifest_of(latest).data["status"] == "succeeded"


def test_problem_and_dataset_contracts(completed_run: Path) -> None:
    problem = read_json(completed_run / "problem.json")
    assert set(problem) >= {"task", "target", "metric", "quality_floor", "p99_latency_ms"}
    card = read_json(completed_run / "data" / "card.json")
    raw = pd.read_parquet(completed_run / "data" / "raw.parquet")
    assert card["rows"] == len(raw) == SMALL["n_rows"]
    assert problem["target"] in ("auto", card["target"])  # "auto": resolved from the data
    assert card["target"] in raw.columns
    assert len(card["time_range"]) == 2


def test_prepare_splits_by_time_and_freezes_the_schema(completed_run: Path) -> None:
    schema = Schema.load(completed_run / "schema.json")
    parts = {n: pd.read_parquet(completed_run / "data" / f"{n}.parquet")
             for n in ("train", "valid", "test", "trusted")}  # fmt: skip
    timestamp = schema.timestamp
    order = ["train", "valid", "test", "trusted"]
    for earlier, later in itertools.pairwise(order):
        assert parts[earlier][timestamp].max() <= parts[later][timestamp].min()
    quarantined = pd.read_parquet(completed_run / "data" / "quarantine.parquet")
    assert sum(map(len, parts.values())) + len(quarantined) == SMALL["n_rows"]
    kinds = {f.name: f.kind for f in schema.features}
    assert kinds["purpose"] == "categorical"
    assert kinds["credit_score"] == "numeric"
    assert "application_id" in schema.ids
    assert schema.target not in kinds


def test_model_is_sealed_and_metrics_come_from_the_sealed_file(completed_run: Path) -> None:
    manifest = manifest_of(completed_run)
    model = completed_run / "model" / "model.ubj"
    metrics = read_json(completed_run / "model" / "metrics.json")
    assert (
        manifest.artifacts["model/model.ubj"]["sealed_at"]
        <= (manifest.artifacts["model/metrics.json"]["sealed_at"])
    )
    booster = xgb.Booster(model_file=str(model))
    assert booster.num_boosted_rounds() > 0
    assert metrics["scores"]["auc"] > 0.65  # the generator has real signal
    assert metrics["rows"] == len(pd.read_parquet(completed_run / "data" / "test.parquet"))
    assert sum(row["rows"] for row in metrics["calibration"]) == metrics["rows"]


def test_bundle_is_hashed_and_compiled_predictions_match_xgboost(completed_run: Path) -> None:
    bundle = completed_run / "bundle"
    manifest = read_json(bundle / "manifest.json")
    for name, digest in manifest["files"].items():
        assert sha256_file(bundle / name) == digest
    assert manifest["model_sha256"] == sha256_file(completed_run / "model" / "model.ubj")
    parity = read_json(completed_run / "reports" / "parity.json")
    assert parity["passed"] is True
    assert parity["max_abs_diff"] <= 1e-5
    assert parity["rows"] > 0


def test_monitor_replayed_production_through_the_server_and_analysed_its_log(
    completed_run: Path,
) -> None:
    schema = Schema.load(completed_run / "schema.json")
    monitor = completed_run / "monitor"
    production = pd.read_parquet(monitor / "production.parquet")
    assert len(production) == SMALL["production_rows"]
    serving = read_json(monitor / "serving.json")
    assert serving["requests"] == SMALL["production_rows"]
    with sqlite3.connect(monitor / "predictions.sqlite") as conn:
        (logged,) = conn.execute("SELECT COUNT(*) FROM predictions").fetchone()
        versions = {v for (v,) in conn.execute("SELECT DISTINCT model_version FROM predictions")}
    assert logged == serving["answered"] > 0
    assert versions == {read_json(completed_run / "bundle" / "manifest.json")["model_sha256"][:12]}
    drift = read_json(monitor / "drift.json")
    assert {r["feature"] for r in drift["drift"]} == {*schema.feature_names, "(prediction)"}
    assert sum(w["rows"] for w in drift["windows"]) == logged
    quality = read_json(monitor / "quality.json")
    assert quality["metric"] == "auc"
    assert quality["windows"]
    alerts = read_json(monitor / "alerts.json")
    for alert in alerts:  # each alert is complete and names what to do
        assert tuple(alert) == FIELDS
        assert alert["kind"]
        assert alert["subject"]
        assert alert["action"]
    assert {a["subject"] for a in alerts if a["kind"] == "drift"} <= {
        *schema.feature_names,
        "(prediction)",
    }
    assert len(pd.read_parquet(monitor / "review.parquet")) > 0


def test_the_cli_rerun_with_nothing_changed_reuses_every_stage(completed_run: Path) -> None:
    env = {config.RUNS_ENV: str(completed_run.parent)}
    result = opsnb_cli("run", "-q", "--run-id", "cli-rerun", *small_args(), env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "cli-rerun: succeeded" in result.stdout
    manifest = manifest_of(completed_run.parent / "cli-rerun")
    assert all("reused_from" in manifest.stages[s.name] for s in STAGES)


def test_the_cli_refuses_an_unknown_parameter_without_starting_a_kernel(tmp_path: Path) -> None:
    result = opsnb_cli("run", "-p", "n_row", "10", env={config.RUNS_ENV: str(tmp_path)})
    assert result.returncode == 1
    assert "no stage declares the parameter(s) 'n_row'" in result.stderr
    assert list(tmp_path.iterdir()) == []

"""The replay goes through a real ``opsnb serve``, and the log the monitor analyses is its log."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from opsnb import datasets, monitoring
from opsnb.artifacts import read_json
from opsnb.monitoring import replay
from tests.support import opsnb_cli

pytestmark = pytest.mark.slow


def test_a_drifted_stream_replayed_through_the_server_is_caught(
    serving_run: Path, tmp_path: Path
) -> None:
    schema = read_json(serving_run / "bundle" / "schema.json")
    card = read_json(serving_run / "data" / "card.json")
    stream = datasets.production_batch(
        card, holdout=pd.DataFrame(), n_rows=1600, seed=3,
        after=pd.Timestamp(card["time_range"][1]), scenario="drift",
    )  # fmt: skip
    log = tmp_path / "monitor" / "predictions.sqlite"
    log.parent.mkdir()
    result = replay.replay(serving_run, stream, schema, log_path=log, label_share=1.0,
                           label_delay=400, block=200, seed=1)  # fmt: skip
    serving = result.serving()
    # the unseen category 'crypto_mining' is refused by the contract (never logged), and counted
    refused = serving["refusals"]["fields"]["purpose"]
    assert serving["statuses"]["422"] == refused["count"] > 0
    assert refused["examples"] == ["crypto_mining"]
    assert refused["first_index"] >= 800
    assert serving["answered"] + refused["count"] == 1600
    assert (
        serving["labels_sent"]
        == serving["label_statuses"]["200"]
        == 1600 - 400 - sum(i is None for i in result.request_ids[:1200])
    )
    assert serving["server_cpu_s"] > 0
    assert serving["latency_ms"]["p99"] > 0
    bundle = monitoring.Bundle.load(serving_run)
    with sqlite3.connect(log) as conn:  # the server's own log: its ids, its model version
        logged = dict(conn.execute("SELECT request_id, model_version FROM predictions"))
    assert set(logged) == {i for i in result.request_ids if i is not None}
    assert set(logged.values()) == {bundle.version}

    analysed = monitoring.analyse_log(bundle, log, window=400, refusals=serving["refusals"],
                                      problem=read_json(serving_run / "problem.json"))  # fmt: skip
    assert int(analysed.windows["rows"].sum()) == serving["answered"]
    assert "loan_amount" in analysed.drifted_features()
    assert {a["kind"] for a in analysed.alerts} >= {"drift", "contract"}
    assert set(analysed.review["request_id"]) <= set(logged)
    assert analysed.quality["labels"].iloc[-1] == 0  # the last labels had not arrived yet

    done = opsnb_cli("monitor", str(serving_run), "--log", str(log), "--window", "400")
    assert done.returncode == 0, done.stderr
    assert "drifted: " in done.stdout
    assert "loan_amount" in done.stdout
    written = {p.name for p in (log.parent / "monitor").iterdir()}
    assert {"drift.json", "quality.json", "alerts.json", "review.parquet",
            "drift_heatmap.png", "alert_timeline.png"} <= written  # fmt: skip


def test_the_cli_names_a_bad_log(serving_run: Path, tmp_path: Path) -> None:
    bad = tmp_path / "not-a-log.sqlite"
    bad.write_bytes(b"plain text, not SQLite" * 50)
    done = opsnb_cli("monitor", str(serving_run), "--log", str(bad))
    assert done.returncode == 1
    assert "is not an opsnb prediction log" in done.stderr


def test_a_server_that_cannot_start_is_reported(tmp_path: Path) -> None:
    with (
        pytest.raises(replay.ReplayError, match="exited with status"),
        replay.running_server(tmp_path, tmp_path / "log.sqlite"),
    ):
        pass

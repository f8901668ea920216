"""Scoring and training on Dask: a LocalCluster, and a separately started scheduler and workers.

The separately started cluster is what a real multi-machine deployment runs: a ``dask
scheduler`` process and ``dask worker`` processes (here on 127.0.0.1, each on its own port),
reached only through its address.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from distributed import Client, LocalCluster

from opsnb import cluster, config, loans, scoring
from opsnb.errors import ConfigError, OpsnbError
from opsnb.inputs import resolve_input
from tests.support import opsnb_cli, small_args

pytestmark = pytest.mark.slow
DASK = str(Path(sys.executable).parent / "dask")


def _start(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [DASK, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: torn down with its children
    )  # fmt: skip


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(15)


def _worker(address: str) -> subprocess.Popen[bytes]:
    return _start(
        "worker", address, "--nworkers", "1", "--nthreads", "1", "--host", "127.0.0.1",
        "--no-dashboard", "--no-nanny",
    )  # fmt: skip


def _wait_for_workers(address: str, n: int) -> None:
    with Client(address, timeout=60) as client:
        client.wait_for_workers(n, timeout=120)


def _address_from(scheduler_file: Path, process: subprocess.Popen[bytes]) -> str:
    """The address the scheduler bound (port 0: it picks a free one and writes it here)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, "dask scheduler exited before it wrote its address"
        try:
            return str(json.loads(scheduler_file.read_text())["address"])
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            time.sleep(0.1)
    raise AssertionError(f"dask scheduler wrote no address to {scheduler_file} within 60 s")


@pytest.fixture(scope="module")
def scheduler(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, list[subprocess.Popen[bytes]]]]:
    """``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1; torn down after."""
    scheduler_file = tmp_path_factory.mktemp("dask-scheduler") / "scheduler.json"
    processes = [
        _start("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
               "--scheduler-file", str(scheduler_file))
    ]  # fmt: skip
    try:
        address = _address_from(scheduler_file, processes[0])
        assert address.startswith("tcp://127.0.0.1:"), address
        processes += [_worker(address), _worker(address)]
        _wait_for_workers(address, 2)
        yield address, processes
    finally:
        for process in reversed(processes):
            _stop(process)


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dask-in") / "parts"
    loans.write_loan_parts(folder, 3000, seed=5, rows_per_part=500)
    return folder


def _same_scores(dask_out: Path, chunked_out: Path) -> None:
    ours = pd.read_parquet(dask_out).sort_values(["source", "row"]).reset_index(drop=True)
    theirs = pd.read_parquet(chunked_out)
    pd.testing.assert_frame_equal(ours, theirs, check_dtype=False)


def test_a_local_cluster_scores_what_the_chunked_engine_scores(loans_bundle, parts, tmp_path):
    chunked = scoring.score(loans_bundle, parts, tmp_path / "c.parquet")
    progress: list[int] = []
    summary = scoring.score(
        loans_bundle, parts, tmp_path / "d", engine="dask", workers=2, on_rows=progress.append
    )
    assert len(progress) == 6  # the bar moves a partition at a time
    assert sum(progress) == summary.rows_in
    _same_scores(tmp_path / "d", tmp_path / "c.parquet")
    assert (summary.rows_in, summary.scored, summary.quarantined) == (
        chunked.rows_in, chunked.scored, chunked.quarantined
    )  # fmt: skip
    assert summary.partitions == 6
    assert summary.workers == 2
    quarantine = pd.read_parquet(tmp_path / "d.quarantine")
    assert len(quarantine) == summary.quarantined
    assert scoring.read_summary(tmp_path / "d")["engine"] == "dask"


def test_a_separate_scheduler_scores_through_the_command(scheduler, loans_bundle, parts, tmp_path):
    address, _ = scheduler
    scoring.score(loans_bundle, parts, tmp_path / "c.parquet")
    result = opsnb_cli(
        "score", str(loans_bundle), str(parts), "--out", str(tmp_path / "d"), "--engine", "dask",
        "--scheduler", address, "-q",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "3,000 rows in" in result.stdout
    _same_scores(tmp_path / "d", tmp_path / "c.parquet")
    done = scoring.read_summary(tmp_path / "d")
    # six partitions on two workers: each worker verified and loaded the bundle exactly once
    assert sorted(done["extra"]["bundle_loads"].values()) == [1, 1]
    assert sum(w["partitions"] for w in done["extra"]["by_worker"].values()) == 6


def test_an_unreachable_scheduler_is_one_clear_error(loans_bundle, parts, tmp_path, monkeypatch):
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 2.0)
    with socket.socket() as bound:  # bound, never listening: a connection is refused, and no
        bound.bind(("127.0.0.1", 0))  # other process can take the port while the test runs
        address = f"tcp://127.0.0.1:{bound.getsockname()[1]}"
        with pytest.raises(ConfigError, match=rf"cannot reach the Dask scheduler at {address}"):
            scoring.score(loans_bundle, parts, tmp_path / "d", engine="dask", scheduler=address)
    assert list(tmp_path.iterdir()) == []


def test_a_worker_that_dies_mid_job_loses_no_partition(scheduler, loans_bundle, tmp_path):
    address, _ = scheduler
    source = tmp_path / "many"
    loans.write_loan_parts(source, 2400, seed=6, rows_per_part=200)
    doomed = _worker(address)
    try:
        _wait_for_workers(address, 3)
        with Client(address) as client:
            client.run(os.environ.__setitem__, cluster.DELAY_ENV, "0.4")
        result: dict[str, scoring.ScoreSummary] = {}
        options = {"engine": "dask", "scheduler": address}
        job = threading.Thread(
            target=lambda: result.update(
                s=scoring.score(loans_bundle, source, tmp_path / "d", **options)
            )
        )
        job.start()
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob(".d.tmp-*/d/part-*")) and time.monotonic() < deadline:
            time.sleep(0.05)
        doomed.kill()  # mid-job: some partitions written, the rest still to come
        job.join(180)
        summary = result["s"]
    finally:
        _stop(doomed)
        with Client(address) as client:
            client.run(os.environ.pop, cluster.DELAY_ENV, None)
    assert summary.partitions == 12
    assert summary.rows_in == 2400 == summary.scored + summary.quarantined
    scores = pd.read_parquet(tmp_path / "d")
    assert len(scores) == summary.scored
    assert not scores.duplicated(["source", "row"]).any()  # a retried partition replaced its part
    refused = pd.read_parquet(tmp_path / "d.quarantine").groupby("source").size()
    per_file = scores.groupby("source").size().add(refused, fill_value=0)
    assert per_file.to_dict() == {f"part-{k:05d}.parquet": 200 for k in range(12)}


def test_training_on_a_separate_scheduler_matches_one_machine(
    scheduler, completed_run, pipeline_runs
):
    address, _ = scheduler
    result = opsnb_cli(
        "run", "-q", "--run-id", "on-dask", "--until", "train", *small_args(),
        "-p", "engine", "dask", "-p", "scheduler", address,
        env={config.RUNS_ENV: str(pipeline_runs)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    ours, theirs = pipeline_runs / "on-dask", completed_run
    manifest = json.loads((ours / "manifest.json").read_text())
    reference = json.loads((theirs / "manifest.json").read_text())
    stages = ("problem", "dataset", "prepare", "design", "train")
    until_train = {a for a, r in reference["artifacts"].items() if r["stage"] in stages}
    assert set(manifest["artifacts"]) == until_train
    design = json.loads((ours / "design.json").read_text())
    assert "Dask" in design["method"]
    assert set(design["hyperparameters"]) == set(
        json.loads((theirs / "design.json").read_text())["hyperparameters"]
    )
    metrics = json.loads((ours / "model/metrics.json").read_text())
    single = json.loads((theirs / "model/metrics.json").read_text())
    assert set(metrics) == set(single)
    assert set(metrics["scores"]) == set(single["scores"])
    assert abs(metrics["scores"]["auc"] - single["scores"]["auc"]) <= 0.005
    assert np.isfinite(metrics["scores"]["auc"])


def test_partitions_are_row_group_ranges_with_their_first_row(tmp_path):
    frame = loans.loan_applications(450, seed=2)
    frame.to_parquet(tmp_path / "a.parquet", index=False, row_group_size=100)
    inputs = resolve_input(tmp_path / "a.parquet", ["age"])
    path = str(tmp_path / "a.parquet")
    assert cluster.pieces(inputs, partition_rows=200) == [
        (path, [0, 1], 0), (path, [2, 3], 200), (path, [4], 400)
    ]  # fmt: skip
    piece = cluster.read_piece((path, [2, 3], 200), fmt="parquet", columns=["age"], chunk_rows=50)
    assert piece["_opsnb_row"].tolist() == list(range(200, 400))
    np.testing.assert_array_equal(piece["age"], frame["age"].iloc[200:400])


def test_a_job_with_a_partition_missing_is_refused_as_incomplete(tmp_path):
    out, quarantine = tmp_path / "out", tmp_path / "q"
    out.mkdir()
    quarantine.mkdir()
    for number in (0, 2):
        for folder in (out, quarantine):
            (folder / f"part-{number:05d}.parquet").write_bytes(b"")
    tally = pd.DataFrame({"partition": [0, 2]})
    with pytest.raises(OpsnbError, match=r"Dask job incomplete: partitions \[1\] of 3"):
        cluster._check_complete(tally, 3, out, quarantine)
    cluster._check_complete(pd.DataFrame({"partition": [0]}), 1, out, quarantine)


def test_csv_on_an_in_process_cluster_quarantines_the_bad_line(loans_bundle, tmp_path):
    """Workers as threads of this process: the partition code runs where coverage sees it."""
    frame = loans.loan_applications(1200, seed=14)
    for name in ("a", "b"):
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
    lines = (tmp_path / "b.csv").read_text().splitlines(keepends=True)
    lines.insert(600, "broken,line\n")
    (tmp_path / "b.csv").write_text("".join(lines))
    chunked = scoring.score(loans_bundle, str(tmp_path / "*.csv"), tmp_path / "c.parquet")
    with LocalCluster(n_workers=2, processes=False, dashboard_address="127.0.0.1:0") as local:
        summary = scoring.score(
            loans_bundle, str(tmp_path / "*.csv"), tmp_path / "d", engine="dask",
            scheduler=local.scheduler_address,
        )  # fmt: skip
    assert summary.rows_in == chunked.rows_in == 2401
    assert summary.reasons == chunked.reasons
    assert summary.reasons[scoring.MALFORMED] == 1
    _same_scores(tmp_path / "d", tmp_path / "c.parquet")

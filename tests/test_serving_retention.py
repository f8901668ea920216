"""Prediction log retention: rotation at a size or age bound, archives, modes, feedback, readers."""

import json
import os
import signal
import sqlite3
import stat
import time

import pytest

from opsnb import logfiles
from opsnb.bench.load import LoadResult, bodies_from_run, run_load
from opsnb.errors import ConfigError, DataError
from opsnb.feedback import read_labelled
from opsnb.monitoring import logs
from opsnb.serving.predlog import PredictionLog
from tests.serving_support import running_server
from tests.support import opsnb_cli


def rows(n: int, start: int = 0, ts: float | None = None):
    features = json.dumps({"x": 1, "pad": "p" * 200})
    return [
        (f"id{i}", ts if ts is not None else time.time(), "v1", features, 0.25, 0.5)
        for i in range(start, start + n)
    ]


def all_ids(path) -> list[str]:
    conn = logfiles.open_readonly(path)
    try:
        return [r[0] for r in conn.execute("SELECT request_id FROM predictions ORDER BY rowid")]
    finally:
        conn.close()


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_the_log_rotates_past_its_size_bound_and_keeps_every_row_in_order(tmp_path):
    path = tmp_path / "log.sqlite"
    log = PredictionLog(path, max_bytes=32 * 1024, keep=9)
    for k in range(40):
        log.write(rows(10, start=10 * k))
    log.close()
    archived = logfiles.archives(path)
    assert log.rotations == len(archived) >= 3
    assert all_ids(path) == [f"id{i}" for i in range(400)]  # none lost, none twice, in order
    for file in [path, *archived]:
        assert mode(file) == 0o640
        with sqlite3.connect(file) as conn:  # no archive grew far past the bound
            assert conn.execute("SELECT count(*) FROM predictions").fetchone()[0] <= 200
    assert not list(tmp_path.glob("*.tmp"))


def test_archives_beyond_keep_are_deleted_oldest_first(tmp_path):
    path = tmp_path / "log.sqlite"
    log = PredictionLog(path, max_bytes=16 * 1024, keep=2)
    seen: list[str] = []
    for k in range(60):
        log.write(rows(5, start=5 * k))
        seen = sorted({*seen, *(p.name for p in logfiles.archives(path))})
    log.close()
    kept = [p.name for p in logfiles.archives(path)]
    assert log.rotations > 2
    assert len(kept) == 2
    assert kept == seen[-2:]  # the two newest stayed
    ids = all_ids(path)
    assert ids[-1] == "id299"
    assert "id0" not in ids


def test_the_log_rotates_once_its_oldest_row_is_past_the_age_bound(tmp_path):
    path = tmp_path / "log.sqlite"
    log = PredictionLog(path)
    log.write(rows(3, ts=time.time() - 7200))  # two hours old, written without a bound
    log.close()
    log = PredictionLog(path, max_age_s=3600)  # reopened with a one-hour bound
    log.write(rows(2, start=3))
    log.write(rows(2, start=5))  # no second rotation: the current file's rows are new
    log.close()
    (archive,) = logfiles.archives(path)
    assert log.rotations == 1
    with sqlite3.connect(archive) as conn:
        assert conn.execute("SELECT count(*) FROM predictions").fetchone()[0] == 3
    assert all_ids(path) == [f"id{i}" for i in range(7)]


def test_a_label_for_an_archived_prediction_is_stored_once_and_read_across_files(tmp_path):
    path = tmp_path / "log.sqlite"
    log = PredictionLog(path, max_bytes=16 * 1024, keep=9)
    log.write(rows(2))
    assert log.feedback("id0", 1.0) == "stored"  # labelled before its rotation
    for k in range(1, 20):
        log.write(rows(5, start=5 * k))
    assert log.rotations >= 1
    assert log.feedback("id1", 0.0) == "stored"  # archived, labelled now: kept in the current file
    assert log.feedback("id1", 1.0) == "exists"  # the first label wins
    assert log.feedback("id0", 0.0) == "exists"  # its label was archived with it
    assert log.feedback("id0", 0.0, replace=True) == "stored"  # an administrator's correction
    assert log.feedback("never", 1.0) == "unknown"
    log.close()
    frame, counts = read_labelled(path)
    assert dict(zip(frame["request_id"], frame["label"], strict=True)) == {"id0": 0.0, "id1": 0.0}
    assert counts["predictions"] == 97
    conn = logs.connect(path)
    labels, unknown = logs.read_labels(conn)
    conn.close()
    assert sorted(labels["request_id"]) == ["id0", "id1"]
    assert unknown == 0


def test_a_crash_between_a_rotations_commits_loses_nothing_and_duplicates_nothing(tmp_path):
    path = tmp_path / "log.sqlite"
    log = PredictionLog(path)
    log.write(rows(4))
    log._write_archive(logfiles.archive_path(path, time.time()))  # archive written, not cleared
    log.close()
    assert len(all_ids(path)) == 8  # the crash's state: every row in both files
    PredictionLog(path).close()  # the next open clears what the archive holds
    assert all_ids(path) == [f"id{i}" for i in range(4)]


def test_retention_options_are_checked(tmp_path):
    with pytest.raises(ConfigError, match=r"log keep must be 1\.\.9"):
        PredictionLog(tmp_path / "a.sqlite", keep=10)
    with pytest.raises(ConfigError, match="log max size must be > 0"):
        PredictionLog(tmp_path / "a.sqlite", max_bytes=0)


def test_serve_refuses_a_keep_readers_cannot_attach(serving_run):
    result = opsnb_cli("serve", str(serving_run), "--port", "1", "--log-keep", "12")
    assert result.returncode == 1
    assert "log keep must be 1..9 archives" in result.stderr


def test_readers_refuse_more_archives_than_sqlite_can_attach(tmp_path):
    path = tmp_path / "log.sqlite"
    PredictionLog(path).close()
    for k in range(logfiles.MAX_ARCHIVES + 1):
        PredictionLog(logfiles.archive_path(path, 1e9 + k)).close()
    with pytest.raises(DataError, match="at most 9 can be read together"):
        logfiles.open_readonly(path)


@pytest.mark.slow
def test_a_server_rotating_under_load_and_killed_loses_no_acknowledged_prediction(
    serving_run, tmp_path
):
    bodies = bodies_from_run(serving_run, limit=200)
    options = ("--log-max-mb", "0.08", "--log-keep", "9")
    with running_server(serving_run, *options, folder=tmp_path) as server:
        result = LoadResult()
        run_load(f"{server.url}/predict", bodies, requests=600, concurrency=8, duration_s=60,
                 keep_answers=True, result=result)  # fmt: skip
        answered = [p["request_id"] for a in result.answers for p in json.loads(a)["predictions"]]
        archived = logfiles.archives(server.log)
        assert archived, "no rotation happened at the 0.08 MiB bound"
        first = answered[0]  # its row is in the oldest archive by now
        assert server.post("/feedback", {"request_id": first, "label": 1}) == (
            200, {"request_id": first, "stored": True}
        )  # fmt: skip
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait(timeout=10)
    assert result.statuses == {200: 600}
    assert len(archived) <= 8  # none deleted yet: every answered id must be found
    logged = all_ids(server.log)
    assert len(logged) == len(set(logged))
    assert set(answered) <= set(logged), "acknowledged predictions missing after rotation"
    for file in [server.log, *logfiles.archives(server.log)]:
        assert mode(file) == 0o640
    frame, _ = read_labelled(server.log)
    assert list(frame["request_id"]) == [first]

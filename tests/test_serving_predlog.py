import sqlite3
import threading

import pytest

from opsnb.errors import ConfigError
from opsnb.serving.predlog import LogUnavailableError, PredictionLog


def rows(n: int, start: int = 0):
    return [(f"id{i}", 1.0 + i, "v1", '{"x": 1}', 0.25, 0.5) for i in range(start, start + n)]


def count(path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT count(*) FROM predictions").fetchone()[0])


def test_a_write_returns_only_once_its_rows_are_visible_to_another_connection(tmp_path):
    path = tmp_path / "log.sqlite"
    log = PredictionLog(path)
    seen = []
    for k in range(3):
        log.write(rows(5, start=5 * k))
        seen.append(count(path))  # a fresh reader sees the commit at once
    log.close()
    assert seen == [5, 10, 15]
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_writes_from_many_threads_are_all_committed(tmp_path):
    log = PredictionLog(tmp_path / "log.sqlite")
    threads = [
        threading.Thread(target=lambda k=k: [log.write(rows(2, start=1000 * k + 2 * j))
                                             for j in range(50)])
        for k in range(4)
    ]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()
    assert count(tmp_path / "log.sqlite") == 400


def test_the_first_label_stands_unless_replaced_and_unknown_ids_are_refused(tmp_path):
    path = tmp_path / "log.sqlite"
    log = PredictionLog(path)
    log.write(rows(1))
    stored = (log.feedback("id0", 1.0), log.feedback("id0", 0.0), log.feedback("nope", 1.0))
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT request_id, label FROM feedback").fetchall() == [("id0", 1.0)]
    assert log.feedback("id0", 0.0, replace=True) == "stored"  # an administrator's correction
    log.close()
    assert stored == ("stored", "exists", "unknown")
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT request_id, label FROM feedback").fetchall() == [("id0", 0.0)]


def test_the_log_files_are_created_0640(tmp_path):
    log = PredictionLog(tmp_path / "log.sqlite")
    log.write(rows(1))
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    log.close()
    assert modes["log.sqlite"] == 0o640
    assert set(modes.values()) == {0o640}, modes  # -wal and -shm follow the database


def test_a_log_that_cannot_be_written_raises_log_unavailable_and_a_probe_tells_recovery(
    tmp_path,
):
    log = PredictionLog(tmp_path / "log.sqlite")
    log.write(rows(1))
    log._conn.execute("PRAGMA query_only=1")  # the same refusal a read-only file gives
    with pytest.raises(LogUnavailableError, match=r"OperationalError: attempt to write a read"):
        log.write(rows(1, start=1))
    log.probe()  # a fresh connection can write again
    log.write(rows(1, start=1))
    log.close()
    assert count(tmp_path / "log.sqlite") == 2


def test_a_failed_write_logs_none_of_its_rows(tmp_path):
    path = tmp_path / "log.sqlite"
    log = PredictionLog(path)
    log.write(rows(1))
    with pytest.raises(LogUnavailableError, match="IntegrityError"):
        log.write(rows(3))  # id0 again: the whole transaction is refused
    log.write(rows(2, start=1))
    log.close()
    assert count(path) == 3


def test_an_unknown_synchronous_mode_is_refused(tmp_path):
    with pytest.raises(
        ConfigError, match=r"log synchronous mode 'SOMETIMES' is not one of OFF, NOR"
    ):
        PredictionLog(tmp_path / "log.sqlite", synchronous="SOMETIMES")


@pytest.mark.parametrize(("mode", "level"), [("off", 0), ("NORMAL", 1), ("FULL", 2)])
def test_the_synchronous_mode_asked_for_is_the_one_sqlite_uses(tmp_path, mode, level):
    """``--log-sync FULL`` reaches SQLite: each commit is synced to disk (power-loss safe)."""
    log = PredictionLog(tmp_path / "log.sqlite", synchronous=mode)
    assert log.synchronous == mode.upper()
    assert log._conn.execute("PRAGMA synchronous").fetchone()[0] == level
    log.write(rows(3))
    log.close()
    assert count(tmp_path / "log.sqlite") == 3

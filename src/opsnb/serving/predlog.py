"""The prediction log: every answered prediction and every label that arrives, in SQLite (WAL).

The service writes one transaction per predictor call (all of its requests' rows at once), on
the predictor thread, and answers those requests only after the commit returned, so an
acknowledged prediction survives a ``kill -9`` of the server. With ``synchronous="NORMAL"``
(the default) a commit survives a process crash; ``"FULL"`` also survives a power loss, at the
price of an fsync per commit.

Tables (queryable from notebooks with ``sqlite3`` or ``pandas.read_sql``)::

    predictions(request_id TEXT PRIMARY KEY, ts REAL, model_version TEXT,
                features TEXT (JSON), output REAL, latency_ms REAL)
    feedback(request_id TEXT PRIMARY KEY, label REAL, ts REAL)

A log that cannot be written (read-only, full disk, I/O error) raises :class:`LogUnavailableError`;
the service then answers 503 and :meth:`PredictionLog.probe` (a fresh connection and a committed
heartbeat row) tells when it can be written again. The files are created ``0640`` (SQLite gives
its ``-wal`` and ``-shm`` files the database's mode): features may be personal data.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from opsnb.errors import ConfigError, OpsnbError

SYNC_MODES = ("OFF", "NORMAL", "FULL")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    request_id TEXT PRIMARY KEY, ts REAL NOT NULL, model_version TEXT NOT NULL,
    features TEXT NOT NULL, output REAL NOT NULL, latency_ms REAL NOT NULL);
CREATE TABLE IF NOT EXISTS feedback (
    request_id TEXT PRIMARY KEY, label REAL NOT NULL, ts REAL NOT NULL);
CREATE TABLE IF NOT EXISTS heartbeat (id INTEGER PRIMARY KEY CHECK (id = 1), ts REAL NOT NULL);
"""
FILE_MODE = 0o640
"""Mode of a log created by the service: owner reads and writes, its group reads."""


class LogUnavailableError(OpsnbError):
    """The prediction log cannot be written now; nothing of the failed write was logged."""


def _unavailable(exc: sqlite3.Error) -> LogUnavailableError:
    return LogUnavailableError(f"{type(exc).__name__}: {exc}")


PredictionRow = tuple[str, float, str, str, float, float]
"""(request_id, ts, model_version, features JSON, output, latency_ms)."""


class PredictionLog:
    """An append-only SQLite log, safe to call from several threads (one connection, a lock).

    Args:
        path: the database file (created with its tables if missing).
        synchronous: SQLite's ``synchronous`` setting, one of :data:`SYNC_MODES`.
    """

    def __init__(self, path: str | os.PathLike[str], *, synchronous: str = "NORMAL") -> None:
        if synchronous.upper() not in SYNC_MODES:
            raise ConfigError(
                f"log synchronous mode {synchronous!r} is not one of {', '.join(SYNC_MODES)}"
            )
        self.path = Path(path)
        self.synchronous = synchronous.upper()
        self._lock = threading.Lock()
        self._conn = self._connect()

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):  # create it 0640 before SQLite does (0644)
            os.close(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, FILE_MODE))
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout=5000")  # several server processes may share it
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            conn.executescript(_SCHEMA)
        except sqlite3.Error:
            conn.close()
            raise
        return conn

    def write(self, rows: Sequence[PredictionRow]) -> None:
        """Log predictions in one transaction; return once it is committed.

        Raises:
            LogUnavailableError: nothing of ``rows`` was logged (read-only or full disk, I/O error).
        """
        with self._lock:
            try:
                self._conn.execute("BEGIN")
                self._conn.executemany("INSERT INTO predictions VALUES (?, ?, ?, ?, ?, ?)", rows)
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                raise _unavailable(exc) from exc

    def feedback(self, request_id: str, label: float, *, replace: bool = False) -> str:
        """Store the ground truth of a logged prediction.

        The first label of a request stands; ``replace`` (an administrator's correction)
        overwrites it. Returns ``"stored"``, ``"unknown"`` (no such logged prediction) or
        ``"exists"`` (a label is already stored and ``replace`` is False).

        Raises:
            LogUnavailableError: the label could not be written.
        """
        verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
        with self._lock:
            try:
                cursor = self._conn.execute(
                    f"{verb} INTO feedback SELECT ?, ?, ? "
                    "WHERE EXISTS (SELECT 1 FROM predictions WHERE request_id = ?)",
                    (request_id, label, time.time(), request_id),
                )
                if cursor.rowcount == 1:
                    return "stored"
                known = self._conn.execute(
                    "SELECT 1 FROM predictions WHERE request_id = ?", (request_id,)
                ).fetchone()
            except sqlite3.Error as exc:
                raise _unavailable(exc) from exc
            return "exists" if known else "unknown"

    def probe(self) -> None:
        """Reconnect and commit a heartbeat row: return only if the log can be written again.

        Raises:
            LogUnavailableError: it still cannot.
        """
        with self._lock:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            try:
                self._conn = self._connect()
                self._conn.execute("INSERT OR REPLACE INTO heartbeat VALUES (1, ?)", (time.time(),))
            except sqlite3.Error as exc:
                raise _unavailable(exc) from exc

    def close(self) -> None:
        """Close the connection (every write has already been committed)."""
        with self._lock:
            self._conn.close()

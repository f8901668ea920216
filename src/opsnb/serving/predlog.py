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
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from opsnb.errors import ConfigError

SYNC_MODES = ("OFF", "NORMAL", "FULL")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    request_id TEXT PRIMARY KEY, ts REAL NOT NULL, model_version TEXT NOT NULL,
    features TEXT NOT NULL, output REAL NOT NULL, latency_ms REAL NOT NULL);
CREATE TABLE IF NOT EXISTS feedback (
    request_id TEXT PRIMARY KEY, label REAL NOT NULL, ts REAL NOT NULL);
"""
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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
        self._conn.execute("PRAGMA busy_timeout=5000")  # several server processes may share it
        self._conn.executescript(_SCHEMA)

    def write(self, rows: Sequence[PredictionRow]) -> None:
        """Log predictions in one transaction; return once it is committed.

        Raises:
            sqlite3.Error: nothing of ``rows`` was logged (e.g. a repeated request id).
        """
        with self._lock:
            try:
                self._conn.execute("BEGIN")
                self._conn.executemany("INSERT INTO predictions VALUES (?, ?, ?, ?, ?, ?)", rows)
                self._conn.execute("COMMIT")
            except sqlite3.Error:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise

    def feedback(self, request_id: str, label: float) -> bool:
        """Store the ground truth of a logged prediction; False if the request id is unknown.

        A later label for the same request replaces the earlier one.
        """
        with self._lock:
            cursor = self._conn.execute(
                "INSERT OR REPLACE INTO feedback SELECT ?, ?, ? "
                "WHERE EXISTS (SELECT 1 FROM predictions WHERE request_id = ?)",
                (request_id, label, time.time(), request_id),
            )
            return cursor.rowcount == 1

    def close(self) -> None:
        """Close the connection (every write has already been committed)."""
        with self._lock:
            self._conn.close()

"""The prediction log: every answered prediction and every label that arrives, in SQLite (WAL).

One writer thread owns the connection. Writes from many requests are grouped into one
transaction (group commit), and each request's future resolves only after that transaction
committed, so an acknowledged prediction survives a ``kill -9`` of the server. With
``synchronous="NORMAL"`` (the default) a commit survives a process crash; ``"FULL"`` also
survives a power loss, at the price of an fsync per group.

Tables (queryable from notebooks with ``sqlite3`` or ``pandas.read_sql``)::

    predictions(request_id TEXT PRIMARY KEY, ts REAL, model_version TEXT,
                features TEXT (JSON), output REAL, latency_ms REAL)
    feedback(request_id TEXT PRIMARY KEY, label REAL, ts REAL)
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opsnb.errors import ConfigError

log = logging.getLogger(__name__)

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


@dataclass
class _Job:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    rows: Sequence[PredictionRow] = ()
    work: Callable[[sqlite3.Connection], Any] | None = None


def _settle_all(settled: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in settled:
        if future.done():
            continue
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)


class PredictionLog:
    """An append-only SQLite log with group commit; see the module docstring.

    Args:
        path: the database file (created with its tables if missing).
        synchronous: SQLite's ``synchronous`` setting, one of :data:`SYNC_MODES`.
        max_group: most writes committed in one transaction.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, synchronous: str = "NORMAL", max_group: int = 1024
    ) -> None:
        if synchronous.upper() not in SYNC_MODES:
            raise ConfigError(
                f"log synchronous mode {synchronous!r} is not one of {', '.join(SYNC_MODES)}"
            )
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._synchronous = synchronous.upper()
        self._max_group = max_group
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._conn = self._connect()
        self._lock = threading.Lock()  # the writer thread and write() share the connection
        self._thread = threading.Thread(target=self._run, name="opsnb-predlog", daemon=True)
        self._thread.start()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute("PRAGMA busy_timeout=5000")  # several server processes may share one log
        conn.executescript(_SCHEMA)
        return conn

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                break
            group = [job]
            while len(group) < self._max_group:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)  # finish this group, then stop
                    break
                group.append(more)
            self._commit(group)
        self._conn.close()

    def write(self, rows: Sequence[PredictionRow]) -> None:
        """Log predictions from the calling thread; return once they are committed."""
        with self._lock:
            try:
                self._conn.execute("BEGIN")
                self._conn.executemany("INSERT INTO predictions VALUES (?, ?, ?, ?, ?, ?)", rows)
                self._conn.execute("COMMIT")
            except sqlite3.Error:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise

    def _commit(self, group: list[_Job]) -> None:
        with self._lock:
            self._commit_locked(group)

    def _commit_locked(self, group: list[_Job]) -> None:
        results: list[tuple[Any, BaseException | None]] = []
        rows = [row for job in group for row in job.rows]
        try:
            self._conn.execute("BEGIN")
            if rows:  # all predictions of the group in one statement
                self._conn.executemany("INSERT INTO predictions VALUES (?, ?, ?, ?, ?, ?)", rows)
            for job in group:
                try:
                    results.append((job.work(self._conn) if job.work else None, None))
                except sqlite3.Error as exc:  # one statement failed; SQLite undid only it
                    results.append((None, exc))
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            if len(group) > 1 and rows:  # find the offending job: commit each job alone
                for job in group:
                    self._commit_locked([job])
                return
            log.error("prediction log commit failed: %s", exc)
            results = [(None, exc)] * len(group)
        by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
        for job, (result, error) in zip(group, results, strict=True):
            by_loop.setdefault(job.loop, []).append((job.future, result, error))
        for loop, settled in by_loop.items():
            loop.call_soon_threadsafe(_settle_all, settled)  # one wake-up per group and loop

    async def _submit(self, job: _Job) -> Any:
        self._queue.put(job)
        return await job.future

    def _job(self) -> _Job:
        loop = asyncio.get_running_loop()
        return _Job(loop, loop.create_future())

    async def append(self, rows: Sequence[PredictionRow]) -> None:
        """Log predictions via the writer thread (grouped with others); return once committed."""
        job = self._job()
        job.rows = rows
        await self._submit(job)

    async def feedback(self, request_id: str, label: float) -> bool:
        """Store the ground truth of a logged prediction; False if the request id is unknown."""

        def work(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "INSERT OR REPLACE INTO feedback SELECT ?, ?, ? "
                "WHERE EXISTS (SELECT 1 FROM predictions WHERE request_id = ?)",
                (request_id, label, time.time(), request_id),
            )
            return cursor.rowcount == 1  # the cursor stays in this thread

        job = self._job()
        job.work = work
        return bool(await self._submit(job))

    def close(self) -> None:
        """Commit what is queued, then stop the writer thread."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

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

Retention: past ``max_bytes`` of rows, or once its oldest prediction is ``max_age_s`` old, the
log rotates at a group boundary (before a group's transaction, never inside one). Under
SQLite's write lock (``BEGIN IMMEDIATE``: no worker process commits meanwhile) the rows are
copied into a new archive file (:func:`opsnb.logfiles.archive_path`, mode ``0640``, committed
with an fsync and renamed into place), then deleted from the current file in the same held
transaction. The file is not renamed: other worker processes keep their connection, and
SQLite's ``-wal``/``-shm`` files, named after the database, never pair with the wrong one. A
crash between the two commits leaves rows in both files; the next open removes from the
current file what the newest archive holds. Archives beyond ``keep`` are deleted oldest
first. A label for a request id that was archived is stored in the current file (readers join
across files: :func:`opsnb.logfiles.open_readonly`); the first label still wins.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from opsnb import logfiles
from opsnb.errors import ConfigError, OpsnbError
from opsnb.serving.store import escape

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
_RETRY_S = 60.0
"""After a failed rotation (say, no room for the archive), wait this long before trying again."""
log = logging.getLogger("opsnb.serve")


class LogUnavailableError(OpsnbError):
    """The prediction log cannot be written now; nothing of the failed write was logged."""


def _unavailable(exc: sqlite3.Error) -> LogUnavailableError:
    return LogUnavailableError(f"{type(exc).__name__}: {exc}")


def check_retention(max_size: float | None, max_age: float | None, keep: int) -> None:
    """Refuse a retention setting that cannot work (a bound <= 0, ``keep`` out of range)."""
    for name, value in (("log max size", max_size), ("log max age", max_age)):
        if value is not None and not value > 0:
            raise ConfigError(f"{name} must be > 0 (or none: no bound), got {value!r}")
    if not 1 <= keep <= logfiles.MAX_ARCHIVES:
        raise ConfigError(
            f"log keep must be 1..{logfiles.MAX_ARCHIVES} archives (readers attach them all "
            f"to one SQLite connection), got {keep!r}; pass --log-keep in that range"
        )


PredictionRow = tuple[str, float, str, str, float, float]
"""(request_id, ts, model_version, features JSON, output, latency_ms)."""


class PredictionLog:
    """An append-only SQLite log, safe to call from several threads (one connection, a lock).

    Args:
        path: the database file (created with its tables if missing).
        synchronous: SQLite's ``synchronous`` setting, one of :data:`SYNC_MODES`.
        max_bytes: rotate once the rows take more than this many bytes (None: no size bound).
        max_age_s: rotate once the oldest prediction is this many seconds old (None: no age bound).
        keep: archives kept, 1 to :data:`opsnb.logfiles.MAX_ARCHIVES`; older ones are deleted.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "NORMAL",
        max_bytes: int | None = None,
        max_age_s: float | None = None,
        keep: int = 8,
    ) -> None:
        if synchronous.upper() not in SYNC_MODES:
            raise ConfigError(
                f"log synchronous mode {synchronous!r} is not one of {', '.join(SYNC_MODES)}"
            )
        check_retention(max_bytes, max_age_s, keep)
        self.path = Path(path)
        self.synchronous = synchronous.upper()
        self.max_bytes, self.max_age_s, self.keep = max_bytes, max_age_s, keep
        self.rotations = 0
        self._lock = threading.Lock()
        self._oldest: float | None = None
        self._retry_at = 0.0
        self._conn = self._connect()
        self._heal()
        if max_age_s is not None:
            self._oldest = self._conn.execute("SELECT min(ts) FROM predictions").fetchone()[0]

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
            self._maybe_rotate()
            try:
                self._conn.execute("BEGIN")
                self._conn.executemany("INSERT INTO predictions VALUES (?, ?, ?, ?, ?, ?)", rows)
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                raise _unavailable(exc) from exc
            if self._oldest is None and rows:
                self._oldest = min(row[1] for row in rows)

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
                if known:
                    return "exists"
                archived, labelled = self._archived(request_id)
                if not archived:
                    return "unknown"
                if labelled and not replace:
                    return "exists"
                cursor = self._conn.execute(
                    f"{verb} INTO feedback VALUES (?, ?, ?)", (request_id, label, time.time())
                )
            except sqlite3.Error as exc:
                raise _unavailable(exc) from exc
            return "stored" if cursor.rowcount == 1 else "exists"

    def _archived(self, request_id: str) -> tuple[bool, bool]:
        """Whether an archive holds the prediction ``request_id``, and a label of it."""
        for archive in reversed(logfiles.archives(self.path)):
            conn = sqlite3.connect(f"file:{archive}?mode=ro", uri=True)
            try:
                if conn.execute(
                    "SELECT 1 FROM predictions WHERE request_id = ?", (request_id,)
                ).fetchone():
                    label = conn.execute(
                        "SELECT 1 FROM feedback WHERE request_id = ?", (request_id,)
                    ).fetchone()
                    return True, label is not None
            finally:
                conn.close()
        return False, False

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

    def _due(self, oldest: float | None) -> bool:
        """Whether the current file is past a bound (``oldest``: its oldest prediction's time)."""
        if self.max_bytes is not None:
            pages = self._conn.execute("PRAGMA page_count").fetchone()[0]
            free = self._conn.execute("PRAGMA freelist_count").fetchone()[0]
            size = self._conn.execute("PRAGMA page_size").fetchone()[0]
            empty = (
                1
                + self._conn.execute(  # page 1 and one root page per table and index
                    "SELECT count(*) FROM sqlite_master WHERE rootpage > 0"
                ).fetchone()[0]
            )
            if (pages - free - empty) * size > self.max_bytes:
                return True
        return (
            self.max_age_s is not None
            and oldest is not None
            and (time.time() - oldest > self.max_age_s)
        )

    def _maybe_rotate(self) -> None:
        """At a group boundary (lock held): rotate if a bound is passed; never fail the write."""
        if (self.max_bytes is None and self.max_age_s is None) or time.time() < self._retry_at:
            return
        try:
            if self._due(self._oldest):
                self._rotate()
        except (OSError, sqlite3.Error) as exc:
            self._retry_at = time.time() + _RETRY_S
            log.error("prediction log %s could not rotate: %s; retrying in %.0f s",
                      escape(self.path), escape(exc), _RETRY_S)  # fmt: skip

    def _rotate(self) -> None:
        """Copy the rows into a new archive, then delete them here, under the write lock."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")  # no process commits to this file until we are done
        try:
            oldest = conn.execute("SELECT min(ts) FROM predictions").fetchone()[0]
            if not self._due(oldest):  # another worker rotated, or a stale oldest time
                self._oldest = oldest
                conn.execute("ROLLBACK")
                return
            archive = logfiles.archive_path(self.path, time.time())
            self._write_archive(archive)
            conn.execute("DELETE FROM predictions")
            conn.execute("DELETE FROM feedback")
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            raise
        self._oldest = None
        self.rotations += 1
        with contextlib.suppress(sqlite3.Error):
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        for old in logfiles.archives(self.path)[: -self.keep]:
            with contextlib.suppress(FileNotFoundError):
                old.unlink()
            log.info("prediction log archive %s deleted (keeping %d)",
                     escape(old), self.keep)  # fmt: skip
        log.info("prediction log %s rotated into %s",
                 escape(self.path), escape(archive))  # fmt: skip

    def _write_archive(self, archive: Path) -> None:
        """Copy every row of the log into ``archive`` (0640), durably, and rename it into place."""
        part = archive.with_name(archive.name + ".tmp")
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
        os.close(os.open(part, os.O_CREAT | os.O_EXCL | os.O_WRONLY, FILE_MODE))
        copy = sqlite3.connect(part, isolation_level=None)
        try:
            copy.execute("PRAGMA synchronous=FULL")
            copy.executescript(_SCHEMA)
            copy.execute("ATTACH DATABASE ? AS src", (f"file:{self.path.resolve()}?mode=ro",))
            copy.execute("BEGIN")
            copy.execute("INSERT INTO main.predictions SELECT * FROM src.predictions")
            copy.execute("INSERT INTO main.feedback SELECT * FROM src.feedback")
            copy.execute("COMMIT")
        except BaseException:
            copy.close()
            part.unlink()
            raise
        copy.close()
        os.replace(part, archive)
        directory = os.open(archive.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def _heal(self) -> None:
        """Remove rows the newest archive already holds (a crash between a rotation's commits)."""
        newest = logfiles.archives(self.path)[-1:]
        if not newest:
            return
        conn = self._conn
        try:
            conn.execute("ATTACH DATABASE ? AS newest", (f"file:{newest[0]}?mode=ro",))
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(
                    "DELETE FROM main.predictions WHERE request_id IN "
                    "(SELECT request_id FROM newest.predictions)"
                )
                conn.execute(  # a label posted after the rotation has its own time: kept
                    "DELETE FROM main.feedback WHERE (request_id, ts) IN "
                    "(SELECT request_id, ts FROM newest.feedback)"
                )
                conn.execute("COMMIT")
            finally:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                conn.execute("DETACH DATABASE newest")
        except sqlite3.Error as exc:
            log.error("prediction log %s: rows of archive %s not cleared: %s",
                      escape(self.path), escape(newest[0]),
                      escape(exc))  # fmt: skip

    def close(self) -> None:
        """Close the connection (every write has already been committed)."""
        with self._lock:
            self._conn.close()

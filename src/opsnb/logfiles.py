"""The prediction log's files: the current one and its rotated archives, read as one log.

``opsnb serve`` rotates its log (:mod:`opsnb.serving.predlog`): the rows of the current file
are copied into an archive beside it, ``<stem>.<UTC time>Z<suffix>`` (for example
``predictions.20261128T153500.123456Z.sqlite``), then deleted from the current file. Readers
(:mod:`opsnb.feedback`, :mod:`opsnb.monitoring.logs`) open the log with :func:`open_readonly`:
its ``predictions`` and ``feedback`` are views over every archive and the current file, oldest
first, so a label posted after its prediction was archived still joins it.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from pathlib import Path

from opsnb.errors import DataError

MAX_ARCHIVES = 9
"""Most archives kept (SQLite attaches at most 10 files to one connection)."""
_STAMP = r"\.\d{8}T\d{6}\.\d{6}Z"
_PREDICTIONS = "request_id, ts, model_version, features, output, latency_ms"


def archive_path(log: str | os.PathLike[str], when: float) -> Path:
    """The archive of ``log`` rotated at UNIX time ``when`` (sorts by time)."""
    file = Path(log)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(when)) + f".{int(when % 1 * 1e6):06d}Z"
    return file.with_name(f"{file.stem}.{stamp}{file.suffix}")


def archives(log: str | os.PathLike[str]) -> list[Path]:
    """The archives of ``log``, oldest first (half-written ``.tmp`` files are not archives)."""
    file = Path(log)
    if not file.parent.is_dir():
        return []
    pattern = re.compile(re.escape(file.stem) + _STAMP + re.escape(file.suffix))
    found = [p for p in file.parent.iterdir() if pattern.fullmatch(p.name)]
    return sorted(found, key=lambda p: p.name)


def open_readonly(log: str | os.PathLike[str]) -> sqlite3.Connection:
    """The log read-only, with temporary views ``predictions`` and ``feedback`` over all files.

    ``predictions`` keeps a ``rowid`` column in commit order across files (the archive's
    position in the high bits); ``feedback`` holds the latest label of each request id.
    Without archives the connection reads the file's own tables.

    Raises:
        DataError: more archives than SQLite can attach (remove the oldest).
    """
    file = Path(log).resolve()
    conn = sqlite3.connect(f"file:{file}?mode=ro", uri=True)
    older = archives(file)
    if not older:
        return conn
    if len(older) > MAX_ARCHIVES:
        conn.close()
        raise DataError(
            f"prediction log {file} has {len(older)} archives; at most {MAX_ARCHIVES} can be read "
            f"together: remove the oldest ({older[0].name}, ...) or lower --log-keep"
        )
    try:
        parts, labels = [], []
        for k, archive in enumerate(older):
            conn.execute(f"ATTACH DATABASE ? AS a{k}", (f"file:{archive}?mode=ro",))
            parts.append(
                f"SELECT ({k} << 40) + rowid AS rowid, {_PREDICTIONS} FROM a{k}.predictions"
            )
            labels.append(f"SELECT request_id, label, ts FROM a{k}.feedback")
        parts.append(
            f"SELECT ({len(older)} << 40) + rowid AS rowid, {_PREDICTIONS} FROM main.predictions"
        )
        labels.append("SELECT request_id, label, ts FROM main.feedback")
        conn.execute(f"CREATE TEMP VIEW predictions AS {' UNION ALL '.join(parts)}")
        conn.execute(
            "CREATE TEMP VIEW feedback AS SELECT request_id, label, ts FROM (SELECT *, "
            "ROW_NUMBER() OVER (PARTITION BY request_id ORDER BY ts DESC) AS latest FROM ("
            f"{' UNION ALL '.join(labels)})) WHERE latest = 1"
        )
    except sqlite3.Error as exc:
        conn.close()
        raise DataError(f"prediction log {file} or its archives cannot be read: {exc}") from exc
    return conn

"""Reading a prediction log (the server's SQLite file) in chunks, one model version at a time.

A chunk is the rows of one read: request ids, timestamps, the features as a float64 matrix in
schema order (categories as their code, an unseen category as code ``len(categories)``, a
missing value as NaN) and the served output. Labels from ``/feedback`` are read separately and
joined by request id. Rows are read in the order the server committed them (``rowid``), across
the log's rotated archives and the current file (:func:`opsnb.logfiles.open_readonly`).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from opsnb import logfiles
from opsnb.errors import DataError

CHUNK_ROWS = 100_000
_COLUMNS = {"request_id", "ts", "model_version", "features", "output"}


class LogError(DataError):
    """A prediction log that cannot be analysed: not an opsnb log, empty, or another model's."""


@dataclass
class Chunk:
    """Rows read from the log in one go."""

    ids: np.ndarray
    ts: np.ndarray
    x: np.ndarray
    output: np.ndarray
    offset: int

    def __len__(self) -> int:
        return len(self.ids)


def connect(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """Open a prediction log read-only; refuse a file that is not one."""
    file = Path(path)
    if not file.is_file():
        raise LogError(f"prediction log {file} does not exist; pass the --log the server wrote")
    try:
        conn = logfiles.open_readonly(file)  # the current file and its rotated archives
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as exc:
        raise LogError(
            f"{file} is not an opsnb prediction log: SQLite cannot read it ({exc}); pass the "
            "file 'opsnb serve --log' wrote"
        ) from exc
    if "predictions" not in tables:
        conn.close()
        raise LogError(
            f"{file} is not an opsnb prediction log: it has no 'predictions' table (tables: "
            f"{', '.join(sorted(tables)) or 'none'}); pass the file 'opsnb serve --log' wrote"
        )
    have = {r[1] for r in conn.execute("PRAGMA table_info(predictions)")}
    if not have >= _COLUMNS:
        conn.close()
        raise LogError(
            f"{file}: table 'predictions' lacks column(s) {', '.join(sorted(_COLUMNS - have))}; "
            "it was not written by opsnb serve"
        )
    return conn


def versions(conn: sqlite3.Connection) -> pd.DataFrame:
    """Rows, first and last timestamp per model version in the log."""
    return pd.read_sql_query(
        "SELECT model_version, COUNT(*) AS rows, MIN(ts) AS first_ts, MAX(ts) AS last_ts "
        "FROM predictions GROUP BY model_version ORDER BY MIN(ts)",
        conn,
    )


def pick_version(table: pd.DataFrame, wanted: str, path: str | os.PathLike[str]) -> list[str]:
    """Check the log has rows of model ``wanted``; return sentences about the rows left aside.

    Raises:
        LogError: the log is empty, or none of its rows were served by ``wanted``.
    """
    if table.empty or int(table["rows"].sum()) == 0:
        raise LogError(
            f"prediction log {path} is empty: no prediction was logged; replay traffic through "
            "the server first"
        )
    if wanted not in set(table["model_version"]):
        seen = ", ".join(f"{r.model_version} ({r.rows} rows)" for r in table.itertuples())
        raise LogError(
            f"prediction log {path} holds no prediction of model version {wanted} (the bundle's); "
            f"it holds {seen}: analyse it with the bundle that served those"
        )
    others = table[table["model_version"] != wanted]
    return [
        f"left aside {r.rows} rows of model version {r.model_version}: one analysis never mixes "
        "versions (analyse them with that version's bundle)"
        for r in others.itertuples()
    ]


def encode(records: list[dict[str, Any]], schema: dict[str, Any]) -> np.ndarray:
    """Records (feature name -> JSON value) to a float64 matrix in schema order."""
    x = np.empty((len(records), len(schema["features"])), dtype=np.float64)
    for j, feature in enumerate(schema["features"]):
        name = feature["name"]
        values = [r.get(name) for r in records]
        if feature["kind"] == "categorical":
            # one dict lookup per value: a known category -> its code, null -> NaN, any other
            # value (a category never seen in training) -> the extra code len(categories)
            codes: dict[Any, float] = {c: float(i) for i, c in enumerate(feature["categories"])}
            codes[None] = np.nan
            unseen = float(len(feature["categories"]))
            x[:, j] = np.array([codes.get(v, unseen) for v in values], dtype=np.float64)
        else:
            x[:, j] = np.array(values, dtype=np.float64)
    return x


def read_chunks(
    conn: sqlite3.Connection,
    schema: dict[str, Any],
    version: str,
    *,
    chunk_rows: int = CHUNK_ROWS,
    rowids: tuple[int, int] | None = None,
    offset: int = 0,
) -> Iterator[Chunk]:
    """Yield the log's rows of model ``version`` in commit order, ``chunk_rows`` at a time.

    ``rowids`` limits the read to SQLite rowids in ``[first, stop)``; ``offset`` is the position
    of its first row among the version's rows (count windows are numbered from it).
    """
    first, stop = rowids if rowids is not None else (-(2**63), 2**63 - 1)
    cursor = conn.execute(
        "SELECT request_id, ts, features, output FROM predictions WHERE model_version = ? "
        "AND rowid >= ? AND rowid < ? ORDER BY rowid",
        (version, first, stop),
    )
    while rows := cursor.fetchmany(chunk_rows):
        ids, ts, texts, output = zip(*rows, strict=True)
        records = orjson.loads("[" + ",".join(texts) + "]")
        yield Chunk(
            ids=np.asarray(ids, dtype=object),
            ts=np.asarray(ts, dtype=np.float64),
            x=encode(records, schema),
            output=np.asarray(output, dtype=np.float64),
            offset=offset,
        )
        offset += len(rows)


def split_rowids(conn: sqlite3.Connection, version: str, rows: int, parts: int) -> list[int]:
    """The first rowid of each of ``parts`` equal runs of the version's rows, but the first."""
    points = []
    for k in range(1, parts):
        (rowid,) = conn.execute(
            "SELECT rowid FROM predictions WHERE model_version = ? ORDER BY rowid LIMIT 1 OFFSET ?",
            (version, k * rows // parts),
        ).fetchone()
        points.append(int(rowid))
    return points


def read_labels(conn: sqlite3.Connection) -> tuple[pd.DataFrame, int]:
    """Labels from ``/feedback`` (request_id, label, label_ts) and how many name unknown ids."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "feedback" not in tables:
        return pd.DataFrame({"request_id": [], "label": [], "label_ts": []}), 0
    labels = pd.read_sql_query(
        "SELECT f.request_id, f.label, f.ts AS label_ts FROM feedback f "
        "JOIN predictions p ON p.request_id = f.request_id",
        conn,
    )
    (unknown,) = conn.execute(
        "SELECT COUNT(*) FROM feedback f WHERE NOT EXISTS "
        "(SELECT 1 FROM predictions p WHERE p.request_id = f.request_id)"
    ).fetchone()
    return labels, int(unknown)

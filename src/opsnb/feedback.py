"""Labelled rows from the prediction log: logged requests joined with their feedback labels.

The service logs every answered prediction and every label posted to ``/feedback`` in SQLite
(:mod:`opsnb.serving.predlog` writes it; this module only reads it, so serving never needs
pandas). :func:`read_labelled` is what ``opsnb update --from-log`` screens.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pandas as pd

from opsnb import logfiles
from opsnb.errors import DataError


def read_labelled(
    path: str | os.PathLike[str], *, until: float | None = None
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The logged predictions that have a label, in log order, as one frame; and the counts.

    Each row holds the logged features, the label (the latest one when a request was labelled
    more than once), ``request_id``, ``predicted_at`` and ``labelled_at``. Predictions without
    a label are left out (counted as ``unlabelled``); labels that arrived after ``until`` (a
    UNIX time) are left for a later update (counted as ``late``).

    Raises:
        DataError: the log does not exist, holds no prediction, or no label at all.
    """
    file = Path(path)
    if not file.is_file():
        raise DataError(f"prediction log {file} does not exist; give the server's --log file")
    conn = logfiles.open_readonly(file)  # the current file and its rotated archives
    try:
        predictions = conn.execute("SELECT count(*) FROM predictions").fetchone()[0]
        events = conn.execute("SELECT count(*) FROM feedback").fetchone()[0]
        rows = conn.execute(
            "SELECT p.request_id, p.ts, p.features, f.label, f.ts FROM predictions p JOIN ("
            "  SELECT request_id, label, ts, ROW_NUMBER() OVER ("
            "    PARTITION BY request_id ORDER BY ts DESC, rowid DESC) AS latest"
            "  FROM feedback WHERE ts <= ?) f"
            " ON f.request_id = p.request_id AND f.latest = 1 ORDER BY p.ts, p.rowid",
            (until if until is not None else float("inf"),),
        ).fetchall()
        late = conn.execute(
            "SELECT count(DISTINCT request_id) FROM feedback WHERE ts > ? AND request_id NOT IN "
            "(SELECT request_id FROM feedback WHERE ts <= ?)",
            (until if until is not None else float("inf"),) * 2,
        ).fetchone()[0]
        distinct = conn.execute("SELECT count(DISTINCT request_id) FROM feedback").fetchone()[0]
    except sqlite3.Error as exc:
        raise DataError(f"prediction log {file} cannot be read: {exc}") from exc
    finally:
        conn.close()
    if not predictions:
        raise DataError(f"prediction log {file} holds no prediction; nothing to update from")
    if not rows:
        raise DataError(
            f"prediction log {file} has {predictions} prediction(s) but no feedback label"
            + (f" before {until}" if until is not None and events else "")
            + "; post labels to /feedback first"
        )
    features = pd.DataFrame([json.loads(r[2]) for r in rows])
    frame = features.assign(
        label=[r[3] for r in rows],
        request_id=[r[0] for r in rows],
        predicted_at=[r[1] for r in rows],
        labelled_at=[r[4] for r in rows],
    )
    counts = {
        "predictions": int(predictions),
        "labelled": len(rows),
        "unlabelled": int(predictions) - len(rows) - int(late),
        "late": int(late),
        "duplicate_labels": int(events) - int(distinct),
    }
    return frame, counts

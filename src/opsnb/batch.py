"""One chunk of a batch scoring job, and the job's output files.

:func:`score_table` checks a chunk against the frozen schema, scores its conforming rows and
returns them with their quarantined ones; :func:`staged` gives a job's files hidden temporary
names until the job completes; :class:`ScoreSummary` is the job's account (rows in, scored,
quarantined by reason), saved beside the output. The chunked engine (:mod:`opsnb.scoring`) and
the Dask engine (:mod:`opsnb.cluster`) share all of it, so both give the same answers.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from opsnb.artifacts import read_json
from opsnb.inputs import InputSet
from opsnb.predictor import CompiledModel
from opsnb.rowcheck import check_rows
from opsnb.schema import Schema

MALFORMED = "malformed CSV line"

QUARANTINE_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("row", pa.int64()),
        ("reason", pa.string()),
        ("column", pa.string()),
        ("value", pa.string()),
        ("record", pa.string()),
    ]
)


@dataclass
class ScoreSummary:
    """What a scoring job did; saved as ``<out>.summary.json`` once the job completed.

    Attributes:
        rows_in: rows read (malformed CSV lines included).
        scored: rows scored and written to the output.
        quarantined: rows written to the quarantine file.
        reasons: quarantined rows per reason.
        wall_s: seconds from start to the final rename.
        engine: ``chunked`` or ``dask``.
        model_version: the model's version (12 hex digits of its SHA-256).
        output, quarantine: where the two files (folders, on Dask) are.
        files: input files read.
        partitions: Dask partitions (0 for the chunked engine).
    """

    rows_in: int
    scored: int
    quarantined: int
    reasons: dict[str, int]
    wall_s: float
    engine: str
    model_version: str
    output: str
    quarantine: str
    files: int
    partitions: int = 0
    workers: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rows_per_s(self) -> float:
        """Rows read per second of wall time."""
        return self.rows_in / self.wall_s if self.wall_s else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The summary as plain JSON-able values."""
        return {**asdict(self), "rows_per_s": round(self.rows_per_s, 1)}

    def sentence(self) -> str:
        """One line: rows in, scored, quarantined (by reason), rate."""
        why = ", ".join(f"{r} {n:,}" for r, n in sorted(self.reasons.items())) or "none"
        return (
            f"{self.rows_in:,} rows in, {self.scored:,} scored, {self.quarantined:,} quarantined "
            f"({why}) in {self.wall_s:.1f} s ({self.rows_per_s:,.0f} rows/s, {self.engine}) "
            f"-> {self.output}"
        )


def side_paths(out: Path) -> tuple[Path, Path]:
    """The quarantine and summary paths that go with output ``out``."""
    stem = out.name[: -len(".parquet")] if out.name.endswith(".parquet") else out.name
    suffix = ".parquet" if out.name.endswith(".parquet") else ""
    return out.with_name(f"{stem}.quarantine{suffix}"), out.with_name(f"{stem}.summary.json")


def read_summary(out: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the summary of a completed job whose output is ``out``."""
    summary: dict[str, Any] = read_json(side_paths(Path(out))[1])
    return summary


@contextmanager
def staged(final: Path) -> Iterator[Path]:
    """Yield a hidden temporary path beside ``final``; on success it replaces ``final``.

    Works for a file or a folder. On any failure (an interrupt included) the temporary path is
    removed and ``final`` is untouched.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    target = tmp / final.name
    try:
        yield target
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _promote(target, final)
    shutil.rmtree(tmp, ignore_errors=True)


def _promote(source: Path, final: Path) -> None:
    if final.is_dir() and not final.is_symlink():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        final.rename(old)
        source.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(source, final)


# -- one chunk ---------------------------------------------------------------------------------
def output_schema(ids: list[str]) -> pa.Schema:
    """Columns of the scores file."""
    return pa.schema(
        [
            ("source", pa.string()),
            ("row", pa.int64()),
            *((name, pa.string()) for name in ids),
            ("prediction", pa.float64()),
            ("model_version", pa.string()),
        ]
    )


def score_table(
    model: CompiledModel,
    schema: Schema,
    table: pa.Table,
    *,
    source: str,
    rows: np.ndarray,
    ids: list[str],
) -> tuple[pa.Table, pa.Table]:
    """Check, encode and score one chunk; return its scores and its quarantine rows."""
    checked = check_rows(table, schema)
    kept = checked.ok
    n_ok = int(kept.sum())
    prediction = model.predict(checked.matrix) if n_ok else np.empty(0, np.float64)
    all_ok = n_ok == table.num_rows
    columns: dict[str, Any] = {
        "source": pa.array([source] * n_ok, pa.string()),
        "row": pa.array(rows if all_ok else rows[kept], pa.int64()),
    }
    for name in ids:
        values = table.column(name).cast(pa.string())
        columns[name] = values if all_ok else values.filter(pa.array(kept))
    columns["prediction"] = pa.array(prediction, pa.float64())
    columns["model_version"] = pa.array([model.version] * n_ok, pa.string())
    scores = pa.table(columns, schema=output_schema(ids))
    refused = checked.refused
    records = table.take(pa.array(refused)).to_pylist() if refused.size else []
    quarantine = pa.table(
        {
            "source": [source] * len(refused),
            "row": rows[refused].tolist(),
            "reason": checked.reason,
            "column": checked.column,
            "value": checked.value,
            "record": [json.dumps(r, default=str) for r in records],
        },
        schema=QUARANTINE_SCHEMA,
    )
    return scores, quarantine


def malformed_table(lines: list[tuple[str, str]]) -> pa.Table:
    """Quarantine rows for malformed CSV lines (their text is the record)."""
    return pa.table(
        {
            "source": [s for s, _ in lines],
            "row": [None] * len(lines),
            "reason": [MALFORMED] * len(lines),
            "column": [None] * len(lines),
            "value": [None] * len(lines),
            "record": [text for _, text in lines],
        },
        schema=QUARANTINE_SCHEMA,
    )


def read_columns(schema: Schema, inputs: InputSet) -> tuple[list[str], list[str]]:
    """The columns a job reads (features, then the schema's ids the input has) and those ids."""
    features = schema.feature_names
    ids = [c for c in schema.ids if c in inputs.columns and c not in features]
    return features + ids, ids

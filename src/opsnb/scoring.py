"""Batch scoring of files of any size through the compiled library, in chunks or on Dask.

:func:`score` reads the input in bounded chunks (:mod:`opsnb.inputs`), checks every row against
the bundle's frozen schema and encodes it in one pass (:mod:`opsnb.rowcheck`), scores the
conforming rows with the verified in-process predictor and streams two Parquet files:

- the scores: ``source`` (the input file's name), ``row`` (the row's position in that file;
  for CSV among its well-formed lines), the schema's id columns when the input has them,
  ``prediction`` (a probability or a value) and ``model_version``;
- the quarantine (``<out>.quarantine.parquet``): each refused row's ``source``, ``row``,
  ``reason``, ``column``, ``value`` and the whole input ``record`` as JSON; a malformed CSV line
  is kept as its text with reason ``malformed CSV line``.

Both are written under hidden temporary names and renamed into place only when every row was
read, scored or quarantined; the summary (``<out>.summary.json``: rows in, scored, quarantined
by reason, rows/s) is renamed last, so its presence means the job completed. An interrupted job
leaves nothing under the final names. ``engine="dask"`` runs the same per-chunk code on a Dask
cluster (:mod:`opsnb.cluster`).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from opsnb.artifacts import write_json
from opsnb.batch import (
    MALFORMED,
    QUARANTINE_SCHEMA,
    ScoreSummary,
    malformed_table,
    output_schema,
    read_columns,
    read_summary,
    score_table,
    side_paths,
    staged,
)
from opsnb.bundle import resolve_bundle, verify_bundle
from opsnb.errors import ConfigError
from opsnb.inputs import BadLines, InputSet, prefetch, read_pieces, resolve_input
from opsnb.predictor import CompiledModel, load_bundle
from opsnb.schema import Schema

CHUNK_ROWS = 131_072
"""Rows scored at once by the chunked engine: large enough that per-chunk overheads vanish,
small enough that a chunk's columns take a few tens of MB."""
ENGINES = ("chunked", "dask")
__all__ = ["CHUNK_ROWS", "ENGINES", "MALFORMED", "ScoreSummary", "read_summary", "score"]


def score(
    run: str | os.PathLike[str],
    input_spec: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    threads: int = 1,
    chunk_rows: int = CHUNK_ROWS,
    engine: str = "chunked",
    scheduler: str | None = None,
    workers: int | None = None,
    on_rows: Callable[[int], object] | None = None,
    on_start: Callable[[int | None], object] | None = None,
) -> ScoreSummary:
    """Score every row of ``input_spec`` with the bundle of ``run``; write ``out`` (see module).

    Args:
        run: a run folder or a bundle folder.
        input_spec: a CSV or Parquet file, a folder of Parquet parts, or a glob.
        out: the scores' path (a Parquet file; on Dask a folder of parts).
        threads: predictor threads (per worker on Dask).
        chunk_rows: rows per chunk (Parquet); bounds memory.
        engine: ``chunked`` (this process) or ``dask``.
        scheduler: on Dask, a scheduler address; ``None`` starts a LocalCluster.
        workers: LocalCluster workers (default: one per core).
        on_rows: called with each chunk's row count (a progress bar).
        on_start: called once with the total row count when known.

    Raises:
        ConfigError: an unknown engine, a bad option.
        ArtifactError: no bundle at ``run``, or a bundle file that does not match its manifest.
        DataError: an unreadable input (naming the file); SchemaError: missing features.
    """
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")
    if chunk_rows < 1 or threads < 1:
        raise ConfigError(f"chunk_rows and threads must be >= 1, got {chunk_rows}, {threads}")
    bundle = resolve_bundle(run)
    if engine == "dask":
        from opsnb import cluster  # noqa: PLC0415 - dask is an optional extra

        return cluster.score_on_dask(
            bundle, input_spec, Path(out), threads=threads, chunk_rows=chunk_rows,
            scheduler=scheduler, workers=workers, on_start=on_start, on_rows=on_rows,
        )  # fmt: skip
    started = time.perf_counter()
    model = load_bundle(verify_bundle(bundle), threads=threads)  # hashes checked, then loaded
    try:
        schema = model.schema
        inputs = resolve_input(input_spec, schema.feature_names)
        if on_start is not None:
            on_start(inputs.rows)
        return _score_chunked(
            model, schema, inputs, Path(out), chunk_rows=chunk_rows, on_rows=on_rows,
            started=started,
        )  # fmt: skip
    finally:
        model.close()


def _chunks(
    inputs: InputSet, columns: list[str], chunk_rows: int
) -> Iterator[tuple[str, np.ndarray, pa.Table, list[tuple[str, str]]]]:
    """Each chunk of every file: its file's name, row numbers, table, malformed lines."""
    bad = BadLines()
    for path in inputs.files:
        offset = 0
        for table in read_pieces(path, inputs.format, columns, chunk_rows=chunk_rows, bad=bad):
            rows = np.arange(offset, offset + table.num_rows, dtype=np.int64)
            offset += table.num_rows
            yield path.name, rows, table, bad.take()
        lines = bad.take()  # lines of a file's last block arrive after its last batch
        if lines:
            yield path.name, np.empty(0, np.int64), pa.table({c: [] for c in columns}), lines


def _write(
    writer: pq.ParquetWriter, scores: pa.Table, qwriter: pq.ParquetWriter, refused: pa.Table
) -> None:
    writer.write_table(scores)
    if refused.num_rows:
        qwriter.write_table(refused)


def _score_chunked(
    model: CompiledModel,
    schema: Schema,
    inputs: InputSet,
    out: Path,
    *,
    chunk_rows: int,
    on_rows: Callable[[int], object] | None,
    started: float,
) -> ScoreSummary:
    columns, ids = read_columns(schema, inputs)
    quarantine_path, summary_path = side_paths(out)
    summary_path.unlink(missing_ok=True)  # no stale "complete" beside a job under way
    counts: Counter[str] = Counter()
    rows_in = scored = 0
    chunks = prefetch(_chunks(inputs, columns, chunk_rows), depth=2)
    with staged(out) as tmp_out, staged(quarantine_path) as tmp_q:
        # Reading (one thread ahead), checking and scoring (here), writing (one thread behind)
        # overlap: the predictor's threads are not kept waiting on I/O. The writer thread is
        # joined before the files close, also when a SIGTERM interrupts the loop: closing a
        # Parquet file while a chunk is being written into it fails and hides the interrupt.
        pending: Future[None] | None = None
        with (
            pq.ParquetWriter(tmp_out, output_schema(ids)) as writer,
            pq.ParquetWriter(tmp_q, QUARANTINE_SCHEMA) as qwriter,
            ThreadPoolExecutor(1, "opsnb-write") as behind,
        ):
            for source, rows, table, lines in chunks:
                scores, refused = score_table(
                    model, schema, table, source=source, rows=rows, ids=ids
                )
                if lines:
                    refused = pa.concat_tables([refused, malformed_table(lines)])
                counts.update(refused.column("reason").to_pylist())
                if pending is not None:
                    pending.result()
                pending = behind.submit(_write, writer, scores, qwriter, refused)
                rows_in += table.num_rows + len(lines)
                scored += scores.num_rows
                if on_rows is not None:
                    on_rows(table.num_rows + len(lines))
            if pending is not None:
                pending.result()
        summary = ScoreSummary(
            rows_in=rows_in,
            scored=scored,
            quarantined=sum(counts.values()),
            reasons=dict(counts),
            wall_s=round(time.perf_counter() - started, 3),
            engine="chunked",
            model_version=model.version,
            output=str(out),
            quarantine=str(quarantine_path),
            files=len(inputs.files),
            extra={"threads": model.threads, "chunk_rows": chunk_rows},
        )
    write_json(summary_path, summary.to_dict())
    return summary

"""The files a batch job reads: a CSV or Parquet file, a folder of Parquet parts, or a glob.

:func:`resolve_input` turns what a user typed into a :class:`InputSet` (the files, their format,
their columns) after checking every file can be opened and holds every feature the schema needs,
so a wrong input stops with one error before anything is scored. :func:`read_pieces` then
streams a file as Arrow tables of a bounded number of rows: Parquet batch by batch (a reader
holds one row group at a time), CSV block by block with every column read as text (the row
check parses numbers, so a typo is one quarantined row, not a failed job) and each malformed
line handed to ``on_bad_line`` instead of stopping the job.
"""

from __future__ import annotations

import csv
import glob
import os
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from opsnb.errors import DataError, SchemaError
from opsnb.tables import CSV_SUFFIXES, MISSING_TOKENS, PARQUET_SUFFIXES

T = TypeVar("T")
CSV_BLOCK_BYTES = 8 << 20
"""Bytes of CSV text parsed at once: about 100,000 rows of a dozen columns."""


@dataclass(frozen=True)
class InputSet:
    """The files of one batch job, all of one format, in a stable order.

    Attributes:
        spec: what the user gave (a path or a glob).
        files: the files, sorted by path.
        format: ``"parquet"`` or ``"csv"``.
        columns: the columns of the first file (every file holds the schema's features).
        rows: the total row count when the format records it (Parquet), else ``None``.
    """

    spec: str
    files: tuple[Path, ...]
    format: str
    columns: tuple[str, ...]
    rows: int | None


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    if suffix in CSV_SUFFIXES:
        return "csv"
    raise DataError(
        f"input file {path} is neither CSV nor Parquet (suffix {suffix or 'none'!r}); expected "
        f"one of {', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)}"
    )


def _expand(spec: str) -> list[Path]:
    if any(ch in spec for ch in "*?["):
        files = [Path(p) for p in sorted(glob.glob(spec, recursive=True)) if Path(p).is_file()]
        if not files:
            raise DataError(f"input glob {spec!r} matches no file (cwd: {Path.cwd()})")
        return files
    path = Path(spec)
    if not path.exists():
        raise DataError(f"input {path} does not exist; check the path (cwd: {Path.cwd()})")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not _hidden(p, path))
        data = [p for p in files if p.suffix.lower() in PARQUET_SUFFIXES + CSV_SUFFIXES]
        if not data:
            raise DataError(
                f"input folder {path} holds no .parquet or .csv file; give a file, a folder of "
                "Parquet parts, or a glob such as 'data/*.parquet'"
            )
        return data
    return [path]


def _hidden(path: Path, root: Path) -> bool:
    """Files under a hidden or underscore folder (``_SUCCESS``, ``.tmp``) are not data parts."""
    return any(part.startswith((".", "_")) for part in path.relative_to(root).parts)


def csv_header(path: Path) -> list[str]:
    """The column names in a CSV file's first line (surrounding spaces stripped)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            first = next(csv.reader(handle), [])
    except UnicodeDecodeError as exc:
        raise DataError(
            f"input file {path} is not UTF-8 text ({exc}); re-save it as UTF-8"
        ) from exc
    if not first:
        raise DataError(f"input file {path} is empty; expected a header line and rows")
    return [name.strip() for name in first]


def file_columns(path: Path, fmt: str) -> tuple[list[str], int | None]:
    """A file's column names and (Parquet) row count, read from its header or footer only."""
    if fmt == "csv":
        return csv_header(path), None
    try:
        meta = pq.read_metadata(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(
            f"input part {path} is not a readable Parquet file ({exc}); re-write or remove that "
            "part (no row of the job was scored)"
        ) from exc
    return list(meta.schema.to_arrow_schema().names), int(meta.num_rows)


def require_features(columns: list[str], features: list[str], *, where: Path) -> None:
    """Stop when ``columns`` lacks a feature, naming what is missing and what is there."""
    missing = [name for name in features if name not in columns]
    if missing:
        raise SchemaError(
            f"input {where} lacks feature column(s) {', '.join(map(repr, missing))} required by "
            f"schema.json; it has {', '.join(map(repr, columns))}; expected every feature of "
            f"the model ({', '.join(features)}); rename the columns or score another file",
            column=missing[0],
        )


def resolve_input(spec: str | os.PathLike[str], features: list[str]) -> InputSet:
    """Expand ``spec`` and check every file opens and holds every feature.

    Raises:
        DataError: nothing matches, a file is not CSV/Parquet, formats are mixed, or a Parquet
            footer is unreadable (a corrupt part).
        SchemaError: a file lacks a feature column.
    """
    text = os.fspath(spec)
    files = _expand(text)
    formats = {_format_of(p) for p in files}
    if len(formats) > 1:
        raise DataError(f"input {text!r} mixes CSV and Parquet files; score one format at a time")
    fmt = formats.pop()
    total: int | None = 0
    first: list[str] = []
    for path in files:
        columns, rows = file_columns(path, fmt)
        require_features(columns, features, where=path)
        first = first or columns
        total = None if rows is None or total is None else total + rows
    return InputSet(text, tuple(files), fmt, tuple(first), total)


class BadLines:
    """Collects the malformed lines of CSV files (pyarrow calls it from its parser threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.lines: list[tuple[str, str]] = []

    def handler(self, source: str) -> Callable[[pacsv.InvalidRow], str]:
        """The ``invalid_row_handler`` for one file: keep the line, skip it, go on."""

        def keep(row: pacsv.InvalidRow) -> str:
            why = f"{row.actual_columns} fields, expected {row.expected_columns}"
            with self._lock:
                self.lines.append((source, f"{why}: {row.text}"))
            return "skip"

        return keep

    def take(self) -> list[tuple[str, str]]:
        """Return and forget the lines collected so far."""
        with self._lock:
            taken, self.lines = self.lines, []
        return taken


def _csv_batches(
    path: Path, header: list[str], wanted: list[str], bad: BadLines
) -> Iterator[pa.Table]:
    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(
            column_names=header, skip_rows=1, block_size=CSV_BLOCK_BYTES, encoding="utf8"
        ),
        parse_options=pacsv.ParseOptions(invalid_row_handler=bad.handler(path.name)),
        convert_options=pacsv.ConvertOptions(
            column_types=dict.fromkeys(header, pa.string()),
            null_values=[t for t in MISSING_TOKENS if t] + [""],
            strings_can_be_null=True,
            include_columns=wanted,
        ),
    )
    for batch in reader:
        table = pa.Table.from_batches([batch])
        # ", " separators leave a space before each value: strip it (as tables.read_table does)
        yield pa.table(
            {name: pc.utf8_trim_whitespace(table.column(name)) for name in table.column_names}
        )


def read_pieces(
    path: Path, fmt: str, columns: list[str], *, chunk_rows: int, bad: BadLines | None = None
) -> Iterator[pa.Table]:
    """Stream ``columns`` of one file as tables of at most ``chunk_rows`` rows (Parquet).

    CSV comes in parser blocks (:data:`CSV_BLOCK_BYTES`), every column as text.

    Raises:
        DataError: the file cannot be read past some point (a corrupt page, an I/O error),
            naming the file.
    """
    try:
        if fmt == "parquet":
            handle = pq.ParquetFile(path, page_checksum_verification=True)
            present = [c for c in columns if c in handle.schema_arrow.names]
            for batch in handle.iter_batches(batch_size=chunk_rows, columns=present):
                yield pa.Table.from_batches([batch])
        else:
            header = csv_header(path)
            wanted = [c for c in columns if c in header]
            yield from _csv_batches(path, header, wanted, bad or BadLines())
    except (pa.ArrowException, OSError) as exc:
        raise DataError(
            f"input part {path} could not be read to the end ({exc}); re-write or remove that "
            "part and score again"
        ) from exc


_DONE = object()


def prefetch(items: Iterator[T], *, depth: int = 2) -> Iterator[T]:
    """Run ``items`` in a thread up to ``depth`` items ahead of the consumer.

    Reading Parquet or parsing CSV releases the GIL, so the next chunk is read while this one
    is scored. An exception in the thread is raised here; when the consumer stops early (an
    error, an interrupt) the thread stops at its next item.
    """
    ready: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple[Any, BaseException | None]) -> bool:
        while not stop.is_set():
            try:
                ready.put(entry, timeout=0.1)
            except queue.Full:
                continue
            return True
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((_DONE, None))
        except BaseException as exc:  # handed to the consumer, raised there
            put((_DONE, exc))

    thread = threading.Thread(target=produce, name="opsnb-read", daemon=True)
    thread.start()
    try:
        while True:
            item, error = ready.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)

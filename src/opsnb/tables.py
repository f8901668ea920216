"""Reading tables from files as found in the wild: CSV (any common dialect) and Parquet.

CSV: ``,`` or ``, `` separators, a header row or none (``columns`` then names the columns),
``?``, ``NA`` or an empty field as a missing value. Every way a file can be unusable (missing,
empty, header only, not text, not a table) stops with one :class:`~opsnb.errors.DataError` that
names the problem.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from opsnb.artifacts import sha256_file
from opsnb.errors import DataError

CSV_SUFFIXES = (".csv", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq")
MISSING_TOKENS = ("?", "NA", "")


def read_table(
    path: Path, *, columns: list[str] | str | None = None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read a CSV or Parquet file; return the frame and its provenance (hash, size, options).

    Raises:
        DataError: the path does not exist or is not a file; the file is empty, not CSV or
            Parquet, not UTF-8 text, has a header but no rows, or its columns disagree with
            ``columns``.
    """
    if not path.exists():
        raise DataError(f"dataset file {path} does not exist; check the path (cwd: {Path.cwd()})")
    if not path.is_file():
        raise DataError(f"dataset {path} is not a file; give a .csv or .parquet file")
    suffix = path.suffix.lower()
    if suffix not in CSV_SUFFIXES + PARQUET_SUFFIXES:
        raise DataError(
            f"dataset file {path.name} is neither CSV nor Parquet (suffix {suffix or 'none'!r}); "
            f"expected one of {', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)}"
        )
    size = path.stat().st_size
    if size == 0:
        raise DataError(f"dataset file {path} is empty (0 bytes); expected a header and rows")
    names = _column_list(columns)
    provenance: dict[str, Any] = {
        "path": str(path.resolve()),
        "size_bytes": size,
        "file_sha256": sha256_file(path),
    }
    if suffix in PARQUET_SUFFIXES:
        frame = _read_parquet(path)
        provenance["format"] = "parquet"
    else:
        frame = _read_csv(path, names)
        provenance.update(
            format="csv",
            separator=", or ,",
            missing_tokens=list(MISSING_TOKENS),
            header=names is None,
        )
    if frame.empty:
        raise DataError(
            f"dataset file {path.name} has a header ({len(frame.columns)} columns) but no data "
            "rows; expected at least one row"
        )
    return frame, provenance


def _column_list(columns: list[str] | str | None) -> list[str] | None:
    if not columns:
        return None
    names = [c.strip() for c in columns.split(",")] if isinstance(columns, str) else columns
    return [str(c) for c in names]


def _read_parquet(path: Path) -> pd.DataFrame:
    import pyarrow  # noqa: PLC0415 (only to name its error type)

    try:
        return pd.read_parquet(path)
    except (pyarrow.ArrowException, OSError) as exc:
        raise DataError(f"dataset file {path.name} is not a readable Parquet file: {exc}") from exc


def _read_csv(path: Path, names: list[str] | None) -> pd.DataFrame:
    data = path.read_bytes()
    if b"\x00" in data[:4096]:
        raise DataError(
            f"dataset file {path.name} holds binary data (NUL bytes), not CSV text; "
            "export it as CSV or Parquet"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(
            f"dataset file {path.name} is not UTF-8: byte 0x{data[exc.start]:02x} at offset "
            f"{exc.start} (line {line}); re-save it as UTF-8 "
            f"(e.g. iconv -f latin1 -t utf-8 {path.name})"
        ) from exc
    if not text.strip():
        raise DataError(f"dataset file {path.name} holds only whitespace; expected CSV rows")
    header: Literal["infer"] | int | None = "infer"
    if names:
        first = [f.strip() for f in text.lstrip().split("\n", 1)[0].split(",")]
        if len(first) != len(names):
            raise DataError(
                f"dataset file {path.name} has {len(first)} fields per row but columns names "
                f"{len(names)}: {', '.join(names)}; give one name per field"
            )
        header = 0 if first == names else None  # a header row that repeats the names is skipped
    try:
        frame = pd.read_csv(
            io.StringIO(text),
            sep=",",
            skipinitialspace=True,
            na_values=list(MISSING_TOKENS),
            header=header,
            names=names,
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise DataError(f"dataset file {path.name} is not valid CSV: {exc}") from exc
    unnamed = [c for c in frame.columns if str(c).startswith("Unnamed: ")]
    if unnamed:
        raise DataError(
            f"dataset file {path.name} has {len(unnamed)} column(s) without a name in its header; "
            "name every column, or pass -p columns a,b,... for a file without a header"
        )
    return frame

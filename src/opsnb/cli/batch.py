"""``opsnb score`` and ``opsnb generate``: batch scoring and its input data."""

from __future__ import annotations

import argparse
import signal
from typing import Any


def _rows_bar(args: argparse.Namespace, total: int | None = None) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total, unit="rows", unit_scale=True, disable=True if args.quiet else None,
        smoothing=0.1, dynamic_ncols=True,
    )  # fmt: skip


def _cmd_score(args: argparse.Namespace) -> int:
    from opsnb import scoring

    # A SIGTERM ends the job like Ctrl-C: the staged files are removed, nothing half-written
    # stays. The handler only takes note and the job stops at the next chunk: an exit raised by
    # the handler itself can land inside pyarrow while it builds a table, which swallows it and
    # hands the half-built table to the writer (exit 1, or a crash).
    stopped: list[int] = []
    signal.signal(signal.SIGTERM, lambda *_: stopped.append(143))
    bar = _rows_bar(args)

    def progress(rows: int) -> None:
        bar.update(rows)
        if stopped:
            raise SystemExit(stopped[0])

    def start(total: int | None) -> None:
        bar.reset(total=total)

    try:
        summary = scoring.score(
            args.run,
            args.input,
            args.out,
            threads=args.threads,
            chunk_rows=args.chunk_rows,
            engine=args.engine,
            scheduler=args.scheduler,
            workers=args.workers,
            on_rows=progress,
            on_start=start,
        )
    finally:
        bar.close()
    print(summary.sentence())
    print(f"quarantine: {summary.quarantine}")
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    from opsnb import loans

    bar = _rows_bar(args, args.rows)
    try:
        parts = loans.write_loan_parts(
            args.out, args.rows, seed=args.seed, rows_per_part=args.rows_per_part,
            on_part=bar.update,
        )  # fmt: skip
    finally:
        bar.close()
    print(f"wrote {args.rows:,} loan applications as {len(parts)} Parquet parts in {args.out}")
    return 0


def _add_batch_commands(sub: Any) -> None:
    """``opsnb score`` and ``opsnb generate``."""
    sc = sub.add_parser("score", help="score a CSV/Parquet file, folder or glob of any size")
    sc.add_argument("run", help="run folder (runs/<id>, runs/latest) or bundle folder")
    sc.add_argument("input", help="a .csv or .parquet file, a folder of Parquet parts, a glob")
    sc.add_argument("--out", required=True, help="scores (.parquet; a folder on Dask)")
    sc.add_argument("--threads", type=int, default=1, help="predictor threads (per worker)")
    # defaults as in opsnb.scoring (CHUNK_ROWS, ENGINES): the parser imports nothing heavy
    sc.add_argument("--chunk-rows", type=int, default=131_072, help="rows a chunk")
    sc.add_argument("--engine", choices=("chunked", "dask"), default="chunked")
    sc.add_argument("--scheduler", help="with --engine dask: scheduler address (tcp://host:8786)")
    sc.add_argument("--workers", type=int, help="with --engine dask and no --scheduler: workers")
    sc.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    sc.set_defaults(handler=_cmd_score)

    gen = sub.add_parser("generate", help="write N loan applications as Parquet parts")
    gen.add_argument("--rows", type=int, required=True, help="e.g. 10_000_000")
    gen.add_argument("--out", required=True, help="a new folder")
    gen.add_argument("--seed", type=int, default=42)
    gen.add_argument("--rows-per-part", type=int, default=250_000)  # loans.PART_ROWS
    gen.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    gen.set_defaults(handler=_cmd_generate)

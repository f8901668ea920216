"""Scoring on a Dask cluster: a LocalCluster sized to the machine, or an existing scheduler.

The input becomes a ``dask.dataframe`` whose partitions are row-group ranges of its Parquet
files (one partition per CSV file), each carrying the file's name and row numbers. Partitions
are scored with ``map_partitions`` by the same per-chunk code as the chunked engine
(:func:`opsnb.scoring.score_table`), and every partition writes its own scores and quarantine
part under a hidden staging folder beside the output; the folders are renamed into place only
when every partition reported, so an incomplete job presents nothing as complete.

The bundle travels once per worker: :class:`BundlePlugin` carries its files' bytes, and each
worker writes them to a private folder, verifies every hash against the manifest (whose own
hash is the plugin's key), loads and self-checks the library once, and keeps it for every
partition it scores. Workers need opsnb and its dependencies installed, not gcc, not the run
folder: the compiled library is shipped. Input and output paths must be reachable from every
worker (one machine, or a shared filesystem).

A worker that dies mid-job costs its partitions a retry on another worker (each part file is
written atomically, so a retried partition replaces, never duplicates, its output).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from distributed import Client, LocalCluster, WorkerPlugin, as_completed, get_worker

from opsnb import config
from opsnb.artifacts import read_json, sha256_bytes, write_json
from opsnb.batch import (
    ScoreSummary,
    malformed_table,
    read_columns,
    score_table,
    side_paths,
    staged,
)
from opsnb.bundle import verify_bundle
from opsnb.errors import ConfigError, OpsnbError
from opsnb.inputs import BadLines, InputSet, csv_header, read_pieces, resolve_input
from opsnb.predictor import CompiledModel, load_bundle

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
RETRIES = 3
"""Times a partition is retried after its worker died or it failed."""
DELAY_ENV = config.PARTITION_DELAY_ENV
_MODELS: dict[str, CompiledModel] = {}
_LOADS: Counter[str] = Counter()
_ROW, _SOURCE, _LINE = "_opsnb_row", "_opsnb_source", "_opsnb_malformed"


# -- the cluster -------------------------------------------------------------------------------
@contextmanager
def dask_client(scheduler: str | None = None, *, workers: int | None = None) -> Iterator[Client]:
    """A client of the scheduler at ``scheduler``, or of a LocalCluster with ``workers``.

    The LocalCluster (one single-threaded worker process per core by default, loopback only,
    no dashboard) is closed on exit; an existing cluster is left running.

    Raises:
        ConfigError: the scheduler cannot be reached within :data:`CONNECT_TIMEOUT_S`.
    """
    if scheduler:
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            raise ConfigError(
                f"cannot reach the Dask scheduler at {scheduler} within {CONNECT_TIMEOUT_S:g} s "
                f"({exc.__class__.__name__}: {exc}); start one (dask scheduler; dask worker "
                f"{scheduler}) or leave out --scheduler to use a LocalCluster on this machine"
            ) from exc
        with client:
            yield client
        return
    n = workers or os.cpu_count() or 1
    with (
        LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            host="127.0.0.1",
            # None still starts the scheduler's HTTP routes on 8787, which another cluster on
            # this machine may hold: a free loopback port instead
            dashboard_address="127.0.0.1:0",
            silence_logs=logging.ERROR,
        ) as local,
        Client(local) as client,
    ):
        yield client


# -- the bundle on every worker ----------------------------------------------------------------
class BundlePlugin(WorkerPlugin):  # type: ignore[misc]
    """Ships a bundle's files to each worker, which verifies and loads it once."""

    def __init__(self, bundle: Path, *, threads: int = 1) -> None:
        manifest = (bundle / "manifest.json").read_bytes()
        self.key = sha256_bytes(manifest)
        self.name = f"opsnb-bundle-{self.key[:16]}"
        names = read_json(bundle / "manifest.json")["files"]
        self.files = {"manifest.json": manifest} | {n: (bundle / n).read_bytes() for n in names}
        self.threads = threads
        self._folder: Path | None = None

    def setup(self, worker: Any) -> None:
        """Write the files to a private folder, verify every hash, load and self-check once."""
        if self.key in _MODELS:
            return
        if sha256_bytes(self.files["manifest.json"]) != self.key:
            raise OpsnbError(f"bundle manifest arrived changed on worker {worker.address}")
        self._folder = Path(tempfile.mkdtemp(prefix="opsnb-bundle-"))
        for name, data in self.files.items():
            target = self._folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        _MODELS[self.key] = load_bundle(self._folder, threads=self.threads)  # hashes first
        _LOADS[self.key] += 1

    def teardown(self, worker: Any) -> None:
        """Close the model and remove the private folder."""
        model = _MODELS.pop(self.key, None)
        if model is not None:
            model.close()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)


def bundle_loads(key: str) -> int:
    """How many times this worker process loaded the bundle ``key`` (a test reads it)."""
    return _LOADS[key]


def _model(key: str) -> CompiledModel:
    model = _MODELS.get(key)
    if model is None:
        where = get_worker().address
        raise OpsnbError(f"worker {where} has no verified bundle {key[:12]}; register the plugin")
    return model


# -- partitions --------------------------------------------------------------------------------
def pieces(inputs: InputSet, *, partition_rows: int) -> list[tuple[str, list[int], int]]:
    """Partitions as (file, row groups, first row): Parquet row groups up to ``partition_rows``.

    A CSV file is one partition (its row groups are ``[]``).
    """
    out: list[tuple[str, list[int], int]] = []
    for path in inputs.files:
        if inputs.format == "csv":
            out.append((str(path), [], 0))
            continue
        meta = pq.read_metadata(path)
        groups: list[int] = []
        first = rows = 0
        for g in range(meta.num_row_groups):
            if groups and rows + meta.row_group(g).num_rows > partition_rows:
                out.append((str(path), groups, first))
                first, rows, groups = first + rows, 0, []
            groups.append(g)
            rows += meta.row_group(g).num_rows
        out.append((str(path), groups, first))
    return out


def read_piece(
    piece: tuple[str, list[int], int], *, fmt: str, columns: list[str], chunk_rows: int
) -> pd.DataFrame:
    """Read one partition: its columns, its file's name and row numbers, malformed CSV lines."""
    path, groups, first = Path(piece[0]), piece[1], piece[2]
    bad = BadLines()
    if fmt == "parquet":
        table = pq.ParquetFile(path).read_row_groups(groups, columns=columns)
    else:
        table = pa.concat_tables(read_pieces(path, fmt, columns, chunk_rows=chunk_rows, bad=bad))
    frame: pd.DataFrame = table.to_pandas()
    frame[_ROW] = np.arange(first, first + len(frame), dtype=np.int64)
    frame[_SOURCE] = path.name
    lines = [text for _, text in bad.take()]
    if lines:
        extra = pd.DataFrame({_LINE: lines, _SOURCE: path.name, _ROW: -1})
        frame = pd.concat([frame, extra], ignore_index=True)
    return frame


def _write_part(table: pa.Table, folder: Path, number: int) -> None:
    """Write a partition's part atomically (a retried partition replaces its own part)."""
    target = folder / f"part-{number:05d}.parquet"
    tmp = folder / f".part-{number:05d}.{os.getpid()}.{time.monotonic_ns()}.tmp"
    pq.write_table(table, tmp)
    os.replace(tmp, target)


def score_partition(
    frame: pd.DataFrame,
    *,
    key: str,
    ids: list[str],
    features: list[str],
    out_dir: str,
    quarantine_dir: str,
    partition_info: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Score one partition on a worker; write its parts; return its one-row tally."""
    started = time.perf_counter()
    delay = float(os.environ.get(DELAY_ENV, "0") or 0)
    if delay:
        time.sleep(delay)
    number = int((partition_info or {}).get("number", 0))
    model = _model(key)
    malformed = frame[_LINE].notna() if _LINE in frame else pd.Series(False, index=frame.index)
    good = frame[~malformed]
    source = str(frame[_SOURCE].iloc[0]) if len(frame) else ""
    table = pa.Table.from_pandas(good[features + ids], preserve_index=False)
    scores, refused = score_table(
        model, model.schema, table, source=source, rows=good[_ROW].to_numpy(np.int64), ids=ids
    )
    if malformed.any():
        lines = [(source, str(t)) for t in frame.loc[malformed, _LINE]]
        refused = pa.concat_tables([refused, malformed_table(lines)])
    _write_part(scores, Path(out_dir), number)
    _write_part(refused, Path(quarantine_dir), number)
    reasons = Counter(refused.column("reason").to_pylist())
    return pd.DataFrame(
        {
            "partition": [number],
            "rows_in": [len(frame)],
            "scored": [scores.num_rows],
            "quarantined": [refused.num_rows],
            "reasons": [";".join(f"{r}={n}" for r, n in sorted(reasons.items()))],
            "worker": [get_worker().address],
            "seconds": [time.perf_counter() - started],
        }
    )


_TALLY = pd.DataFrame(
    {
        "partition": pd.Series(dtype="int64"),
        "rows_in": pd.Series(dtype="int64"),
        "scored": pd.Series(dtype="int64"),
        "quarantined": pd.Series(dtype="int64"),
        "reasons": pd.Series(dtype="object"),
        "worker": pd.Series(dtype="object"),
        "seconds": pd.Series(dtype="float64"),
    }
)


def _input_meta(inputs: InputSet, columns: list[str]) -> pd.DataFrame:
    meta: pd.DataFrame
    if inputs.format == "parquet":
        arrow = pq.read_schema(inputs.files[0])
        meta = arrow.empty_table().select([c for c in columns if c in arrow.names]).to_pandas()
    else:
        header = csv_header(inputs.files[0])
        meta = pd.DataFrame({c: pd.Series(dtype=object) for c in columns if c in header})
    meta[_ROW] = pd.Series(dtype="int64")
    meta[_SOURCE] = pd.Series(dtype=object)
    return meta


def score_on_dask(
    bundle: Path,
    input_spec: str | os.PathLike[str],
    out: Path,
    *,
    threads: int = 1,
    chunk_rows: int = 131_072,
    partition_rows: int = 1_000_000,
    scheduler: str | None = None,
    workers: int | None = None,
    on_start: Callable[[int | None], object] | None = None,
    on_rows: Callable[[int], object] | None = None,
) -> ScoreSummary:
    """Score on Dask; see the module docstring and :func:`opsnb.scoring.score`."""
    started = time.perf_counter()
    verified = verify_bundle(bundle)  # refuse a tampered bundle before any worker sees it
    schema = verified.schema
    features = schema.feature_names
    inputs = resolve_input(input_spec, features)
    if on_start is not None:
        on_start(inputs.rows)
    columns, ids = read_columns(schema, inputs)
    parts = pieces(inputs, partition_rows=partition_rows)
    quarantine_path, summary_path = side_paths(out)
    summary_path.unlink(missing_ok=True)
    with dask_client(scheduler, workers=workers) as client:
        plugin = BundlePlugin(bundle, threads=threads)
        client.register_plugin(plugin, name=plugin.name)
        with staged(out) as tmp_out, staged(quarantine_path) as tmp_q:
            tmp_out.mkdir()
            tmp_q.mkdir()
            frame = dd.from_map(
                read_piece, parts, fmt=inputs.format, columns=columns, chunk_rows=chunk_rows,
                meta=_input_meta(inputs, columns), enforce_metadata=False,
            )  # fmt: skip
            tallies = frame.map_partitions(
                score_partition, key=plugin.key, ids=ids, features=features,
                out_dir=str(tmp_out), quarantine_dir=str(tmp_q), meta=_TALLY,
                enforce_metadata=False,
            )  # fmt: skip
            # A worker's death reschedules its partitions (the scheduler's allowed-failures);
            # an exception in a partition is retried RETRIES times before the job fails.
            futures = client.compute(tallies.to_delayed(), retries=RETRIES)
            done = []
            for future in as_completed(futures):  # a partition at a time, for the progress bar
                done.append(future.result())
                if on_rows is not None:
                    on_rows(int(done[-1]["rows_in"].sum()))
            tally = pd.concat(done, ignore_index=True) if done else _TALLY
            _check_complete(tally, len(parts), tmp_out, tmp_q)
            loads = client.run(bundle_loads, plugin.key)
        client.unregister_worker_plugin(plugin.name)
    reasons: Counter[str] = Counter()
    for text in tally["reasons"]:
        for item in filter(None, str(text).split(";")):
            reason, count = item.rsplit("=", 1)
            reasons[reason] += int(count)
    summary = ScoreSummary(
        rows_in=int(tally["rows_in"].sum()),
        scored=int(tally["scored"].sum()),
        quarantined=int(tally["quarantined"].sum()),
        reasons=dict(reasons),
        wall_s=round(time.perf_counter() - started, 3),
        engine="dask",
        model_version=verified.version,
        output=str(out),
        quarantine=str(quarantine_path),
        files=len(inputs.files),
        partitions=len(parts),
        workers=len(loads),
        extra={"threads": threads, "bundle_loads": loads, "by_worker": _by_worker(tally)},
    )
    write_json(summary_path, summary.to_dict())
    return summary


def _by_worker(tally: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Partitions and busy seconds per worker."""
    groups = tally.groupby("worker")
    return {
        str(worker): {"partitions": len(g), "busy_s": round(float(g["seconds"].sum()), 3)}
        for worker, g in groups
    }


def _check_complete(tally: pd.DataFrame, expected: int, out: Path, quarantine: Path) -> None:
    """Every partition reported once and left both parts, or the job fails."""
    done = sorted(tally["partition"].astype(int))
    for folder in (out, quarantine):
        for number in range(expected):
            if not (folder / f"part-{number:05d}.parquet").is_file():
                done = [d for d in done if d != number]
    if done != list(range(expected)):
        missing = sorted(set(range(expected)) - set(done))
        raise OpsnbError(
            f"Dask job incomplete: partitions {missing[:10]} of {expected} reported no output; "
            "nothing was written under the final name; run again"
        )

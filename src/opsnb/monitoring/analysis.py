"""The monitor's analysis of a prediction log: windows, drift, quality, the checker, alerts.

:func:`analyse_log` reads the log once, in chunks: each chunk's rows get their window index
(by count: ``"500"`` rows; or by time: ``"60s"``, ``"5min"``, ``"1h"``), are counted into the
drift histograms, scored by the checker, and kept only as (window, score, checker score, label)
plus the review candidates. The statistics are then computed per window, vectorised over
windows. :func:`write_outputs` saves ``drift.json``, ``quality.json``, ``alerts.json`` and
``review.parquet``.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import re
import sqlite3
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from opsnb.artifacts import read_json, sha256_file, write_json, write_parquet
from opsnb.errors import ArtifactError, ConfigError
from opsnb.monitoring import alerts as alerting
from opsnb.monitoring import checker as checking
from opsnb.monitoring import logs, quality
from opsnb.monitoring.drift import DriftCounts, feature_stats, missing_p_value
from opsnb.monitoring.reference import check_reference

REVIEW_ROWS = 200
PARALLEL_ROWS = 200_000
"""A log is split across worker processes in runs of at least this many rows."""
_TIME_UNITS = {"s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


@dataclass(frozen=True)
class Windows:
    """How rows are grouped: ``size`` rows per window, or ``seconds`` of log time per window."""

    size: int | None = None
    seconds: float | None = None

    @classmethod
    def parse(cls, text: str | int) -> Windows:
        """``500`` or ``"500"`` (rows), ``"30s"``, ``"5min"``, ``"1h"``, ``"1d"`` (log time)."""
        spec = str(text).strip()
        match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|min|h|d)?", spec)
        if not match or float(match.group(1)) <= 0:
            raise ConfigError(
                f"window {text!r} is not a window size; expected a row count such as 500 or a "
                "duration such as 30s, 5min, 1h, 1d"
            )
        number, unit = float(match.group(1)), match.group(2)
        if unit is None:
            return cls(size=int(number))
        return cls(seconds=number * _TIME_UNITS[unit])

    def count(self, rows: int, first_ts: float, last_ts: float) -> int:
        """How many windows ``rows`` rows between the two timestamps fill."""
        if self.size is not None:
            return max(math.ceil(rows / self.size), 1)
        assert self.seconds is not None
        return int((last_ts - first_ts) // self.seconds) + 1

    def index(self, offset: int, n: int, ts: np.ndarray, first_ts: float) -> np.ndarray:
        """Window index of ``n`` rows starting at row ``offset`` with timestamps ``ts``."""
        if self.size is not None:
            return (offset + np.arange(n)) // self.size
        assert self.seconds is not None
        return ((ts - first_ts) // self.seconds).astype(np.int64)

    def describe(self) -> str:
        """``"500 rows"`` or ``"60 s"``."""
        return f"{self.size} rows" if self.size is not None else f"{self.seconds:g} s"


@dataclass
class Bundle:
    """What the monitor reads from a bundle: schema, reference, checker, model version."""

    path: Path
    schema: dict[str, Any]
    reference: dict[str, Any]
    checker: dict[str, Any]
    version: str

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Bundle:
        """Read a bundle folder (or a run folder holding ``bundle/``), hashes checked."""
        folder = Path(path)
        if (folder / "bundle" / "manifest.json").is_file():
            folder = folder / "bundle"
        if not (folder / "manifest.json").is_file():
            raise ArtifactError(
                f"{path} is neither a run folder with bundle/manifest.json nor a bundle folder",
                path=str(path),
            )
        manifest = read_json(folder / "manifest.json")
        files = manifest.get("files", {})
        for name in ("schema.json", "reference.json", "checker.json"):
            if name not in files:
                raise ArtifactError(
                    f"bundle {folder} has no {name} in its manifest; the monitor needs it: "
                    "rebuild the bundle with the operationalize stage",
                    path=name,
                )
            if sha256_file(folder / name) != files[name]:
                raise ArtifactError(
                    f"bundle file {name} does not match manifest.json; refusing to use it",
                    path=name,
                )
        schema = read_json(folder / "schema.json")
        return cls(
            path=folder,
            schema=schema,
            reference=check_reference(read_json(folder / "reference.json"), schema),
            checker=checking.check_checker(read_json(folder / "checker.json"), schema),
            version=str(manifest["model_sha256"])[:12],
        )


@dataclass
class MonitorResult:
    """Everything the analysis found; the notebook shows it, :func:`write_outputs` saves it."""

    task: str
    metric: str | None
    floor: float | None
    windows: pd.DataFrame
    drift: pd.DataFrame
    quality: pd.DataFrame
    checker: pd.DataFrame
    alerts: list[dict[str, Any]]
    review: pd.DataFrame
    live_counts: dict[str, np.ndarray]
    reference: dict[str, Any]
    thresholds: alerting.Thresholds
    notes: list[str] = field(default_factory=list)

    def alert_table(self) -> pd.DataFrame:
        """Alerts grouped by kind and subject (first window, count, worst evidence, action)."""
        return alerting.table(self.alerts)

    def verdict(self) -> dict[str, Any]:
        """The stage's one-line verdict (``text``, ``passed``): no high-severity alert passes."""
        high = [a for a in self.alerts if a["severity"] == "high"]
        kinds = sorted({a["kind"] for a in high})
        drifted = self.drifted_features()
        text = (
            f"{'PASS' if not high else 'FAIL'}: {len(drifted)} of {len(self.reference['features'])}"
            f" features drifted ({', '.join(drifted) or 'none'}); {len(self.alerts)} alert(s)"
            + (f", high: {', '.join(kinds)}" if kinds else "")
        )
        return {"text": text, "passed": not high}

    def drifted_features(self) -> list[str]:
        """Features with at least one drift alert, in schema order."""
        hit = {a["subject"] for a in self.alerts if a["kind"] in ("drift", "new_category")}
        return [f["name"] for f in self.reference["features"] if f["name"] in hit]

    def heatmap(self) -> pd.DataFrame:
        """Sampling-adjusted PSI, features by windows (the prediction last)."""
        return self.drift.pivot(index="feature", columns="window", values="psi_adjusted").reindex(
            [*(f["name"] for f in self.reference["features"]), "(prediction)"]
        )


def _review_candidates(
    chunk: logs.Chunk, window: np.ndarray, checker: np.ndarray, keep: int
) -> pd.DataFrame:
    gap = np.abs(chunk.output - checker)
    top = np.argsort(-gap)[:keep]
    return pd.DataFrame(
        {
            "request_id": chunk.ids[top],
            "window": window[top],
            "served": chunk.output[top],
            "checker": checker[top],
            "disagreement": gap[top],
            "_row": list(chunk.x[top]),
        }
    )


def _decode(review: pd.DataFrame, schema: dict[str, Any]) -> pd.DataFrame:
    matrix = np.vstack(review.pop("_row").to_list()) if len(review) else None
    for j, feature in enumerate(schema["features"]):
        column = matrix[:, j] if matrix is not None else np.zeros(0)
        if feature["kind"] == "categorical":
            names = [*feature["categories"], "(unseen)"]
            review[feature["name"]] = [None if np.isnan(v) else names[int(v)] for v in column]
        else:
            review[feature["name"]] = column
    return review


def analyse_log(
    bundle: Bundle,
    log_path: str | os.PathLike[str],
    *,
    window: str | int = 500,
    problem: dict[str, Any] | None = None,
    thresholds: alerting.Thresholds | None = None,
    refusals: dict[str, Any] | None = None,
    chunk_rows: int = logs.CHUNK_ROWS,
    review_rows: int = REVIEW_ROWS,
    workers: int = 2,
) -> MonitorResult:
    """Analyse the rows ``bundle``'s model logged in ``log_path`` (other versions left aside).

    Args:
        bundle: the served bundle (:meth:`Bundle.load`).
        log_path: the server's SQLite prediction log.
        window: window size (:meth:`Windows.parse`).
        problem: ``problem.json`` (metric, quality floor, drift thresholds); None: no floor.
        thresholds: alert thresholds (default: from ``problem``, else :class:`Thresholds`).
        refusals: contract refusals seen by the replay, by field (``serving.json``).
        chunk_rows: rows read per chunk.
        review_rows: how many of the most disagreeing requests go to the review queue.
        workers: processes reading a log of more than :data:`PARALLEL_ROWS` rows at once
            (forked: each reads its own run of rows; their counts add up).
    """
    spec = Windows.parse(window)
    limits = thresholds or _thresholds(problem)
    conn = logs.connect(log_path)
    try:
        table = logs.versions(conn)
        notes = logs.pick_version(table, bundle.version, log_path)
        mine = table[table["model_version"] == bundle.version].iloc[0]
        first_ts, last_ts = float(mine["first_ts"]), float(mine["last_ts"])
        n_windows = spec.count(int(mine["rows"]), first_ts, last_ts)
        labels, unknown = logs.read_labels(conn)
        summaries = [*bundle.reference["features"], {"kind": "numeric", "name": "(prediction)",
                                                     **bundle.reference["prediction"]}]  # fmt: skip
        label_index = pd.Index(labels["request_id"])
        _SHARED.update(
            bundle=bundle, spec=spec, summaries=summaries, windows=n_windows, first_ts=first_ts,
            label_index=label_index, label_values=labels["label"].to_numpy(np.float64),
            log_path=log_path, chunk_rows=chunk_rows, review_rows=review_rows,
        )  # fmt: skip
        try:
            part = _read(conn, int(mine["rows"]), workers)
        finally:
            _SHARED.clear()
    finally:
        conn.close()
    counts, rows, bounds = part.counts, part.kept, part.bounds
    if unknown:
        notes.append(
            f"{unknown} label(s) from /feedback name request ids that are not in the prediction "
            "log; they were ignored (send the request_id a /predict answer returned)"
        )
    windows = pd.DataFrame(
        {
            "window": np.arange(n_windows),
            "rows": counts.rows,
            "labels": np.bincount(
                rows[:, 0].astype(np.int64), weights=~np.isnan(rows[:, 3]), minlength=n_windows
            ).astype(int),
            "first_ts": bounds[:, 0],
            "last_ts": bounds[:, 1],
        }
    )
    for w in np.flatnonzero(counts.rows == 0):
        start = first_ts + w * (spec.seconds or 0)
        notes.append(
            f"window {w} ({pd.Timestamp(start, unit='s'):%Y-%m-%d %H:%M:%S} + {spec.describe()}) "
            "has no rows: no statistics and no alerts for it"
        )
    drift = _drift_frame(summaries, counts)
    review = _decode(
        part.candidates.reset_index(drop=True)
        .nlargest(review_rows, "disagreement")
        .reset_index(drop=True),
        bundle.schema,
    )
    task = bundle.schema["task"]
    metric = (problem or {}).get("metric")
    metric = None if metric in (None, "auto") else metric
    floor = (problem or {}).get("quality_floor")
    window_of = rows[:, 0].astype(np.int64)
    qual = quality.quality_table(
        task,
        window=window_of,
        scores=rows[:, 1],
        labelled=~np.isnan(rows[:, 3]),
        labels=np.nan_to_num(rows[:, 3]),
        windows=n_windows,
        calibration=bundle.reference.get("calibration"),
    )
    check = _checker_frame(bundle.checker, window_of, rows[:, 1], rows[:, 2], n_windows)
    live_counts = {s["name"]: c.sum(axis=0) for s, c in zip(summaries, counts.counts, strict=True)}
    found = alerting.drift_alerts(drift, limits, n_windows, len(summaries) - 1)
    found += alerting.quality_alerts(qual, limits, metric, floor)
    found += alerting.checker_alerts(check, limits, n_windows)
    found += alerting.refusal_alerts(refusals or {}, limits, spec.size)
    found.sort(key=lambda a: (a["window"] if a["window"] is not None else -1, a["kind"]))
    return MonitorResult(
        task, metric, floor, windows, drift, qual, check, found, review, live_counts,
        bundle.reference, limits, notes,
    )  # fmt: skip


@dataclass
class _Part:
    """What one pass over a run of the log's rows found (see :func:`_read_part`)."""

    counts: DriftCounts
    kept: np.ndarray
    candidates: pd.DataFrame
    bounds: np.ndarray


_SHARED: dict[str, Any] = {}
"""The read's inputs, set before worker processes fork so they are not pickled per task."""


def _read_part(task: tuple[int, int, int]) -> _Part:
    """Read rowids ``[first, stop)`` (starting at row ``offset``) of the log in ``_SHARED``."""
    first, stop, offset = task
    bundle: Bundle = _SHARED["bundle"]
    spec: Windows = _SHARED["spec"]
    counts = DriftCounts(_SHARED["summaries"], _SHARED["windows"])
    n_windows = counts.windows
    label_index, label_values = _SHARED["label_index"], _SHARED["label_values"]
    kept: list[np.ndarray] = [np.zeros((0, 4))]
    candidates: list[pd.DataFrame] = []
    bounds = np.full((n_windows, 2), np.nan)
    conn = logs.connect(_SHARED["log_path"])
    try:
        for chunk in logs.read_chunks(
            conn, bundle.schema, bundle.version, chunk_rows=_SHARED["chunk_rows"],
            rowids=(first, stop), offset=offset,
        ):  # fmt: skip
            w = spec.index(chunk.offset, len(chunk), chunk.ts, _SHARED["first_ts"])
            counts.add(w, np.column_stack([chunk.x, chunk.output]))
            second = checking.score_checker(bundle.checker, chunk.x)
            at = label_index.get_indexer(chunk.ids) if len(label_index) else np.full(len(w), -1)
            label = np.full(len(w), np.nan)
            label[at >= 0] = label_values[at[at >= 0]]
            kept.append(np.column_stack([w, chunk.output, second, label]))
            candidates.append(_review_candidates(chunk, w, second, _SHARED["review_rows"]))
            lo = np.full(n_windows, np.inf)
            hi = np.full(n_windows, -np.inf)
            np.minimum.at(lo, w, chunk.ts)
            np.maximum.at(hi, w, chunk.ts)
            bounds[:, 0] = np.fmin(bounds[:, 0], np.where(np.isinf(lo), np.nan, lo))
            bounds[:, 1] = np.fmax(bounds[:, 1], np.where(np.isinf(hi), np.nan, hi))
    finally:
        conn.close()
    return _Part(counts, np.vstack(kept), pd.concat(candidates or [pd.DataFrame()]), bounds)


def _read(conn: sqlite3.Connection, rows: int, workers: int) -> _Part:
    """One pass over the log, split across ``workers`` forked processes for large logs."""
    parts = max(1, min(workers, rows // PARALLEL_ROWS + 1))
    version = _SHARED["bundle"].version
    points = logs.split_rowids(conn, version, rows, parts)
    edges = [-(2**63), *points, 2**63 - 1]
    tasks = [(edges[k], edges[k + 1], k * rows // parts) for k in range(parts)]
    if parts == 1:
        found = [_read_part(tasks[0])]
    else:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(parts, mp_context=context) as pool:
            found = list(pool.map(_read_part, tasks))
    merged = found[0]
    for part in found[1:]:
        merged.counts.merge(part.counts)
        merged.kept = np.vstack([merged.kept, part.kept])
        merged.candidates = pd.concat([merged.candidates, part.candidates])
        merged.bounds[:, 0] = np.fmin(merged.bounds[:, 0], part.bounds[:, 0])
        merged.bounds[:, 1] = np.fmax(merged.bounds[:, 1], part.bounds[:, 1])
    return merged


def _thresholds(problem: dict[str, Any] | None) -> alerting.Thresholds:
    given = problem or {}
    defaults = alerting.Thresholds()
    return alerting.Thresholds(
        psi=float(given.get("drift_psi", defaults.psi)),
        alpha=float(given.get("drift_alpha", defaults.alpha)),
    )


def _drift_frame(summaries: list[dict[str, Any]], counts: DriftCounts) -> pd.DataFrame:
    frames = []
    for j, summary in enumerate(summaries):
        stats_j = feature_stats(summary, counts.counts[j], counts.missing[:, j])
        stats_j.insert(0, "window", np.arange(counts.windows))
        stats_j.insert(0, "feature", summary["name"])
        stats_j["reference_missing"] = summary["missing_share"]
        stats_j["missing_p_value"] = missing_p_value(
            stats_j["missing_share"].to_numpy(), stats_j["rows"].to_numpy(),
            summary["missing_share"],
        )  # fmt: skip
        stats_j["new_rows"] = counts.counts[j][:, -1] if summary["kind"] == "categorical" else 0
        frames.append(stats_j)
    return pd.concat(frames, ignore_index=True)


def _checker_frame(
    spec: dict[str, Any], window: np.ndarray, served: np.ndarray, second: np.ndarray, n: int
) -> pd.DataFrame:
    gap = np.abs(served - second)
    rows = np.bincount(window, minlength=n)
    over = np.bincount(window, weights=gap > spec["disagreement_threshold"], minlength=n)
    rate = over / np.maximum(rows, 1)
    base = min(max(spec["baseline_rate"], 1e-3), 0.5)
    p_value = stats.binom.sf(over - 1, np.maximum(rows, 1), base)
    return pd.DataFrame(
        {
            "window": np.arange(n),
            "rows": rows,
            "disagreement_rate": np.where(rows > 0, rate, np.nan),
            "mean_gap": np.bincount(window, weights=gap, minlength=n) / np.maximum(rows, 1),
            "baseline_rate": spec["baseline_rate"],
            "p_value": np.where(rows > 0, p_value, np.nan),
        }
    )


def write_outputs(result: MonitorResult, out: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``drift.json``, ``quality.json``, ``alerts.json`` and ``review.parquet`` to ``out``."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {name: folder / name for name in
             ("drift.json", "quality.json", "alerts.json", "review.parquet")}  # fmt: skip
    write_json(paths["drift.json"], drift_document(result))
    write_json(paths["quality.json"], quality_document(result))
    write_json(paths["alerts.json"], result.alerts)
    write_parquet(paths["review.parquet"], result.review)
    return paths


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    clean = frame.astype(object).where(frame.notna(), None)
    return [
        {str(k): (round(v, 6) if isinstance(v, float) else v) for k, v in r.items()}
        for r in clean.to_dict("records")
    ]


def drift_document(result: MonitorResult) -> dict[str, Any]:
    """``drift.json``: windows, per feature and window statistics, thresholds, notes."""
    return {
        "windows": _records(result.windows),
        "drift": _records(result.drift),
        "drifted_features": result.drifted_features(),
        "thresholds": result.thresholds.__dict__,
        "notes": result.notes,
    }


def quality_document(result: MonitorResult) -> dict[str, Any]:
    """``quality.json``: realized and estimated metrics and checker disagreement per window."""
    return {
        "task": result.task,
        "metric": result.metric,
        "floor": result.floor,
        "windows": _records(result.quality),
        "checker": _records(result.checker),
    }

"""The engine benchmark (``opsnb bench``): the compiled predictor against the alternatives.

For a model and its bundle, each engine scores batches of 1 to 32,768 rows with 1 and 2 threads:
opsnb's predictor, XGBoost ``inplace_predict``, XGBoost ``predict`` with a DMatrix, ONNX Runtime
(the model converted with onnxmltools, when both are installed and it converts), TL2cgen's own
``Predictor``, and a C loop calling the library's per-row ``predict`` (the limit). Each cell is
the median of repeated calls; ratios are taken against XGBoost ``inplace_predict`` and ONNX
Runtime measured in the same run, so a loaded machine slows every engine alike. Before timing,
every engine's predictions are compared with opsnb's on the same rows.
"""

from __future__ import annotations

import logging
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tl2cgen
import xgboost as xgb

from opsnb import compiler, config, csource, loans, predictor, training, validation
from opsnb.bundle import LIBRARY, VerifiedBundle, verify_bundle
from opsnb.native import private_copy
from opsnb.schema import NUMERIC, Feature, target_vector, to_matrix

log = logging.getLogger(__name__)

BATCH_SIZES = (1, 16, 256, 4096, 32768)
QUICK_BATCH_SIZES = (1, 16, 256)
THREADS = (1, 2)
OPSNB = "opsnb predictor"
XGB_INPLACE = "xgboost inplace_predict"
XGB_DMATRIX = "xgboost predict(DMatrix)"
ONNX = "onnxruntime"
TL2CGEN = "tl2cgen Predictor"
C_LOOP = "C loop (limit)"
ENGINES = (OPSNB, XGB_INPLACE, XGB_DMATRIX, ONNX, TL2CGEN, C_LOOP)

Engine = Callable[[np.ndarray], np.ndarray]


@dataclass
class BenchResult:
    """Every measured cell, the engines' agreement, and why an engine was left out."""

    records: list[dict[str, Any]] = field(default_factory=list)
    agreement: list[dict[str, Any]] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    load: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def table(self) -> pd.DataFrame:
        """Median µs per row: a row per (model, threads, batch), a column per engine."""
        frame = pd.DataFrame(self.records)
        wide = frame.pivot_table(
            index=["model", "threads", "batch"], columns="engine", values="us_per_row"
        )
        return wide[[e for e in ENGINES if e in wide.columns]].round(3)

    def ratios(self) -> pd.DataFrame:
        """How many times faster opsnb's predictor is than each rival (>1: opsnb wins)."""
        wide = self.table()
        out = pd.DataFrame(index=wide.index)
        for rival in (XGB_INPLACE, ONNX, XGB_DMATRIX, TL2CGEN):
            if rival in wide.columns:
                out[f"x vs {rival}"] = (wide[rival] / wide[OPSNB]).round(2)
        if C_LOOP in wide.columns:
            out[f"{C_LOOP} / opsnb"] = (wide[C_LOOP] / wide[OPSNB]).round(2)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: records, agreement, skipped engines, load average."""
        return {
            "records": self.records,
            "agreement": self.agreement,
            "skipped": self.skipped,
            "loadavg": list(self.load),
        }


def _timed(fn: Engine, batches: list[np.ndarray], *, budget_s: float, min_reps: int = 3) -> float:
    """Median seconds of one call, after a warm-up call, over at least ``min_reps`` calls.

    Successive calls get different rows (``batches`` in turn): scoring one row over and over
    would let the branch predictor learn its path and flatter every engine.
    """
    fn(batches[0])
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_reps or (time.perf_counter() - start < budget_s and len(times) < 2000):
        x = batches[len(times) % len(batches)]
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _rotating(pool: np.ndarray, batch: int, count: int = 64) -> list[np.ndarray]:
    """Up to ``count`` different C-contiguous batches of ``batch`` rows from ``pool``."""
    starts = np.linspace(0, len(pool) - batch, min(count, len(pool) - batch + 1)).astype(int)
    return [pool[s : s + batch] for s in starts]


def _onnx_engine(booster: xgb.Booster, n_features: int, threads: int) -> Engine:
    import onnxmltools  # noqa: PLC0415 - optional extra "bench"
    import onnxruntime as ort  # noqa: PLC0415
    from onnxmltools.convert.common.data_types import FloatTensorType  # noqa: PLC0415

    plain = booster.copy()  # onnxmltools wants features named f0, f1, ...
    plain.feature_names = None
    plain.feature_types = None
    onx = onnxmltools.convert_xgboost(
        plain, initial_types=[("x", FloatTensorType([None, n_features]))]
    )
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(
        onx.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    output = session.get_outputs()[-1].name
    binary = len(session.get_outputs()) == 2

    def run(x: np.ndarray) -> np.ndarray:
        out = session.run([output], {"x": x})[0]
        return np.asarray(out[:, 1] if binary else out).ravel()

    return run


def _checked_copy(bundle: VerifiedBundle) -> Path:
    """A private copy of the bundle's library, checked against the verified hash."""
    library = private_copy(bundle.library, prefix="opsnb-bench-")
    bundle.check_copy(LIBRARY, library)
    return library


def _engines(
    booster: xgb.Booster,
    bundle: VerifiedBundle,
    threads: int,
    skipped: dict[str, str],
) -> tuple[dict[str, Engine], list[Callable[[], None]]]:
    """The Python-callable engines for ``threads`` threads, and how to release them."""
    names, types = bundle.schema.feature_names, bundle.schema.feature_types
    compiled = predictor.load_bundle(bundle, threads=threads)
    booster.set_param({"nthread": threads})
    library = _checked_copy(bundle)
    lib = tl2cgen.Predictor(str(library), nthread=threads)
    engines: dict[str, Engine] = {
        OPSNB: compiled.predict,
        XGB_INPLACE: booster.inplace_predict,
        XGB_DMATRIX: lambda x: booster.predict(
            xgb.DMatrix(
                x,
                feature_names=names,
                feature_types=types,
                enable_categorical=True,
                nthread=threads,
            )
        ),
        TL2CGEN: lambda x: np.asarray(lib.predict(tl2cgen.DMatrix(x))).ravel(),
    }
    try:
        engines[ONNX] = _onnx_engine(booster, len(names), threads)
    except Exception as exc:  # not installed, or the model has splits ONNX cannot express
        skipped[ONNX] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    # The loaded code stays mapped once its file is gone: remove the private copy at the end.
    return engines, [compiled.close, lambda: shutil.rmtree(library.parent, ignore_errors=True)]


def _c_loop(
    bundle: VerifiedBundle, rows: np.ndarray, batches: tuple[int, ...], budget_s: float
) -> dict[int, float]:
    """Median seconds per batch of a C program calling the library's ``predict`` row by row."""
    with tempfile.TemporaryDirectory(prefix="opsnb-bench-") as tmp:
        folder = Path(tmp)
        (folder / "c_loop.c").write_text(csource.C_LOOP_SOURCE)
        lib = folder / "model.so"  # run in a child process: a plain copy, gone with the folder
        shutil.copyfile(bundle.library, lib)
        bundle.check_copy(LIBRARY, lib)  # checked before the C loop loads it
        subprocess.run(
            [
                "gcc",
                "-O2",
                "-std=c99",
                "-I",
                str(bundle.path),
                "c_loop.c",
                str(lib),
                f"-Wl,-rpath,{lib.parent}",
                "-lm",
                "-o",
                "c_loop",
            ],
            cwd=folder,
            check=True,
            capture_output=True,
        )
        rows.astype(np.float32).tofile(folder / "rows.f32")
        medians = {}
        for batch in batches:
            probe = subprocess.run(
                [folder / "c_loop", folder / "rows.f32", str(len(rows)), str(batch), "3"],
                capture_output=True,
                text=True,
                check=True,
            )
            once = float(probe.stdout) * 1e-9
            reps = int(min(2000, max(3, budget_s / max(once, 1e-7))))
            done = subprocess.run(
                [folder / "c_loop", folder / "rows.f32", str(len(rows)), str(batch), str(reps)],
                capture_output=True,
                text=True,
                check=True,
            )
            medians[batch] = float(done.stdout) * 1e-9
    return medians


def bench_model(
    name: str,
    model_path: Path,
    bundle: VerifiedBundle,
    rows: np.ndarray,
    *,
    batches: tuple[int, ...] = BATCH_SIZES,
    threads: tuple[int, ...] = THREADS,
    budget_s: float = 0.5,
    result: BenchResult | None = None,
) -> BenchResult:
    """Measure every engine on one model; ``rows`` (schema order) are tiled to the largest batch.

    ``bundle`` was verified once by the caller: every engine loads a checked copy of its library.
    """
    result = result or BenchResult()
    booster = training.load_model(model_path)
    pool = np.ascontiguousarray(np.resize(rows, (max(batches), rows.shape[1])), np.float32)
    for n_threads in threads:
        skipped: dict[str, str] = {}
        engines, closers = _engines(booster, bundle, n_threads, skipped)
        result.skipped.update({f"{engine} on {name}": why for engine, why in skipped.items()})
        probe = pool[:256]
        ours = engines[OPSNB](probe)
        for engine, fn in engines.items():
            diff = float(np.max(np.abs(np.asarray(fn(probe), np.float64) - ours)))
            result.agreement.append(
                {
                    "model": name,
                    "threads": n_threads,
                    "engine": engine,
                    "max_abs_diff_vs_opsnb": diff,
                }
            )
        for batch in batches:
            x = _rotating(pool, batch)
            for engine, fn in engines.items():
                _record(
                    result,
                    name,
                    engine,
                    threads=n_threads,
                    batch=batch,
                    s=_timed(fn, x, budget_s=budget_s),
                )
        for close in closers:
            close()
        if n_threads == 1:
            for batch, seconds in _c_loop(bundle, pool, batches, budget_s).items():
                _record(result, name, C_LOOP, threads=1, batch=batch, s=seconds)
    result.load = os.getloadavg()
    return result


def _record(
    result: BenchResult, model: str, engine: str, *, threads: int, batch: int, s: float
) -> None:
    result.records.append(
        {
            "model": model,
            "engine": engine,
            "threads": threads,
            "batch": batch,
            "median_us": round(s * 1e6, 2),
            "us_per_row": s * 1e6 / batch,
            "rows_per_s": round(batch / s),
        }
    )


def large_model(
    folder: Path, *, trees: int = 1000, depth: int = 8, rows: int = 20_000, seed: int = 0
) -> tuple[Path, Path, np.ndarray]:
    """Train (once, then reuse) a big forest on loan data, codes as plain numbers.

    Category codes are numeric features here so that onnxmltools can convert the model and ONNX
    Runtime can be compared. Returns the model file, its schema file and test rows.
    """
    folder.mkdir(parents=True, exist_ok=True)
    frame = loans.loan_applications(rows, seed=seed)
    schema = validation.infer_schema(
        frame, target=loans.LOANS_TARGET, task="binary", timestamp=loans.LOANS_TIMESTAMP
    )
    x = to_matrix(frame, schema)
    schema = replace(
        schema,
        features=tuple(  # codes as numbers, see above
            Feature(
                f.name,
                NUMERIC,
                f.nullable,
                min=float(np.nanmin(x[:, j])),
                max=float(np.nanmax(x[:, j])),
            )
            for j, f in enumerate(schema.features)
        ),
    )
    model_path = folder / f"large-{trees}x{depth}-{rows}-{seed}.ubj"
    schema_path = model_path.with_suffix(".schema.json")
    schema.save(schema_path)
    if not model_path.is_file():
        params = {**training.base_params("binary", seed=seed), "max_depth": depth, "eta": 0.05}
        dtrain = xgb.DMatrix(
            x,
            label=target_vector(frame, schema),
            missing=np.nan,
            feature_names=schema.feature_names,
        )
        training.save_model(xgb.train(params, dtrain, trees), model_path)
    return model_path, schema_path, x[-5000:]


def run_bench(
    *,
    run_dir: Path | None = None,
    quick: bool = False,
    large: bool = True,
    threads: tuple[int, ...] = THREADS,
    cache_dir: Path | None = None,
) -> BenchResult:
    """Benchmark the run's bundle (if given) and a large model; ``quick`` keeps it to seconds."""
    result = BenchResult()
    batches = QUICK_BATCH_SIZES if quick else BATCH_SIZES
    budget = 0.05 if quick else 0.5
    cache = cache_dir or config.compile_cache_dir()
    if run_dir is not None:
        test = pd.read_parquet(run_dir / "data" / "test.parquet")
        verified = verify_bundle(run_dir / "bundle")
        bench_model(
            "run model",
            run_dir / "model" / "model.ubj",
            verified,
            to_matrix(test, verified.schema),
            batches=batches,
            threads=threads,
            budget_s=budget,
            result=result,
        )
    if large:
        trees, depth, n = (60, 4, 4000) if quick else (1000, 8, 20_000)
        model_path, schema_path, rows = large_model(
            config.bench_models_dir(), trees=trees, depth=depth, rows=n
        )
        # The compiled library is cached by model hash; the bundle around it is scratch.
        with tempfile.TemporaryDirectory(prefix="opsnb-bench-bundle-") as tmp:
            bundle = Path(tmp) / "bundle"
            compiler.compile_bundle(
                model_path, bundle, schema_path=schema_path, sample=rows[:2000], cache_dir=cache
            )
            bench_model(
                f"large {trees}x{depth}",
                model_path,
                verify_bundle(bundle),
                rows,
                batches=batches,
                threads=threads,
                budget_s=budget,
                result=result,
            )
    return result

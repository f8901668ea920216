"""XGBoost model file -> Treelite -> TL2cgen C source -> verified shared library.

The steps can be run and tested alone: :func:`load_model`, :func:`generate_source`,
:func:`build_library`. :func:`compile_bundle` is the shortcut for the common case: it runs the
steps and writes a serving bundle (library, header, schema, ``manifest.json`` with hashes).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import tl2cgen
import treelite

from opsnb.artifacts import sha256_file, write_json
from opsnb.errors import CompileError, ParityError

log = logging.getLogger(__name__)

BUNDLE_FILES = ("model.so", "model.h", "schema.json")


def load_model(model_path: str | os.PathLike[str]) -> treelite.Model:
    """Load an XGBoost JSON/UBJ model file into Treelite."""
    try:
        return treelite.frontend.load_xgboost_model(str(model_path))
    except Exception as exc:  # Treelite raises its own TreeliteError and ValueErrors
        raise CompileError(f"Treelite cannot load {model_path}: {exc}") from exc


def generate_source(
    model: treelite.Model, src_dir: str | os.PathLike[str], *, parallel_units: int = 0
) -> Path:
    """Write the C source of ``model`` into ``src_dir`` (``main.c``/``tu*.c``, ``header.h``)."""
    params: dict[str, Any] = {"parallel_comp": parallel_units} if parallel_units else {}
    try:
        tl2cgen.generate_c_code(model, dirpath=str(src_dir), params=params)
    except Exception as exc:
        raise CompileError(f"TL2cgen could not generate C code: {exc}") from exc
    return Path(src_dir)


def build_library(
    src_dir: str | os.PathLike[str],
    lib_path: str | os.PathLike[str],
    *,
    toolchain: str = "gcc",
    jobs: int | None = None,
) -> Path:
    """Compile the C source in ``src_dir`` into the shared library ``lib_path``."""
    src = Path(src_dir)
    try:
        built = tl2cgen.create_shared(toolchain, str(src), nthread=jobs or os.cpu_count() or 1)
    except Exception as exc:
        raise CompileError(f"{toolchain} failed to build {src}: {exc}") from exc
    target = Path(lib_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(built, target)
    return target


def compile_bundle(
    model_path: str | os.PathLike[str],
    bundle_dir: str | os.PathLike[str],
    *,
    schema_path: str | os.PathLike[str],
    parallel_units: int = 0,
    toolchain: str = "gcc",
) -> dict[str, Any]:
    """Compile ``model_path`` into ``bundle_dir`` and return the bundle manifest.

    Runs :func:`load_model`, :func:`generate_source` and :func:`build_library`, copies the
    generated header and the schema beside the library, and records each file's SHA-256 with
    the versions that made it in ``manifest.json``.
    """
    bundle = Path(bundle_dir)
    bundle.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model = load_model(model_path)
    with tempfile.TemporaryDirectory(prefix="opsnb-compile-") as tmp:
        src = generate_source(model, Path(tmp) / "src", parallel_units=parallel_units)
        build_library(src, bundle / "model.so", toolchain=toolchain)
        shutil.copyfile(src / "header.h", bundle / "model.h")
    shutil.copyfile(schema_path, bundle / "schema.json")
    manifest = {
        "files": {name: sha256_file(bundle / name) for name in BUNDLE_FILES},
        "model_sha256": sha256_file(model_path),
        "num_feature": model.num_feature,
        "compile_seconds": round(time.perf_counter() - t0, 2),
        "versions": {p: version(p) for p in ("xgboost", "treelite", "tl2cgen", "opsnb")},
    }
    write_json(bundle / "manifest.json", manifest)
    log.info("compiled %s in %.1f s", model_path, manifest["compile_seconds"])
    return manifest


def parity_report(
    reference: np.ndarray, compiled: np.ndarray, *, tolerance: float, label: str = "xgboost"
) -> dict[str, Any]:
    """Compare two prediction vectors; name the worst row."""
    diff = np.abs(np.asarray(reference, np.float64) - np.asarray(compiled, np.float64))
    worst = int(np.argmax(diff)) if len(diff) else -1
    return {
        "reference": label,
        "rows": len(diff),
        "max_abs_diff": float(diff.max()) if len(diff) else 0.0,
        "worst_row": worst,
        "tolerance": tolerance,
        "passed": bool(len(diff) and diff.max() <= tolerance),
    }


def check_parity(report: dict[str, Any]) -> dict[str, Any]:
    """Return ``report`` if it passed; otherwise raise :class:`ParityError` naming the worst row."""
    if not report["passed"]:
        raise ParityError(
            f"compiled predictions differ from {report['reference']} by "
            f"{report['max_abs_diff']:.3g} at row {report['worst_row']} "
            f"(tolerance {report['tolerance']:g}, {report['rows']} rows compared)"
        )
    return report

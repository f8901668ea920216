"""XGBoost model file -> Treelite -> TL2cgen C source -> shared library -> verified bundle.

The steps can be run and tested alone: :func:`load_model`, :func:`generate_source` (TL2cgen's C
plus opsnb's batch entry point, see :mod:`opsnb.csource`), :func:`build_library` (gcc, one process
per translation unit). :func:`compile_cached` runs them once per model hash, options and
toolchain, keeping the result in a cache, so an unchanged model costs nothing to "recompile".
:func:`compile_bundle` is the shortcut for the common case: compile (or reuse), prove parity
against XGBoost and Treelite on the test split and the golden edge rows, and write the bundle:
``model.so``, ``model.h``, ``model-src.zip`` (builds with make or CMake, no Python),
``schema.json``, ``golden.json`` and ``manifest.json`` with every file's SHA-256 (the layout and
the manifest belong to :mod:`opsnb.bundle`).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import tl2cgen
import treelite
import xgboost as xgb

from opsnb import bundle as layout
from opsnb import config, csource, golden, signing
from opsnb.artifacts import (
    atomic_path,
    read_json,
    sha256_bytes,
    sha256_file,
    sha256_json,
    write_json,
)
from opsnb.errors import CompileError
from opsnb.native import NativeModel, private_copy
from opsnb.parity import DEFAULT_TOLERANCE, write_golden
from opsnb.schema import Schema

log = logging.getLogger(__name__)

CACHED_FILES = (layout.LIBRARY, layout.HEADER, layout.SOURCES)
"""The bundle files a compilation produces (kept in the compile cache)."""


@dataclass(frozen=True)
class CompileOptions:
    """How to compile; every field is part of the cache key.

    The defaults were chosen by measurement on a 1,000-tree depth-8 model (µs per row at 32,768
    rows, one thread, best of 3 rounds on a shared 2-core machine): 20 trees per unit with blocks
    of 64 rows 33.9; 20/512 27.4; 5/256 20.4; 2/512 19.2; 5/1024 18.6 (XGBoost
    ``inplace_predict`` ~34-48; TL2cgen's row-by-row ``predict`` ~180). Small units also compile
    faster (98 s against 180-270 s for 20-tree units: more, smaller translation units in parallel).
    Quantized thresholds then took 5/1024 from 18.3-19.0 to 16.1-16.4 µs per row (XGBoost 23.5-24.0
    in the same process), but stay off: TL2cgen 1.0 writes the quantization table with 8
    significant digits, which does not round-trip every float32 (0.122648716 becomes 0.12264872),
    so a value equal to such a threshold takes the wrong branch. The golden rows probe every
    threshold, so a quantized build that hits this is refused by parity.

    Attributes:
        trees_per_unit: trees per translation unit. Small units compile in parallel and are the
            blocks the batch entry point runs over a block of rows (see :mod:`opsnb.csource`).
        block_rows: rows scored together, unit by unit: a unit's code is fetched once per block.
        quantize: compare integer bin indices instead of float thresholds (TL2cgen ``quantize``).
        annotate: mark each branch likely/unlikely from how training rows flow (needs rows).
        cflags: C compiler flags (no ``-march=native``: the library must run on other hosts).
    """

    trees_per_unit: int = 5
    block_rows: int = 1024
    quantize: bool = False
    annotate: bool = False
    cflags: tuple[str, ...] = ("-O3",)


@dataclass
class CompileResult:
    """Where a compiled library lies and what making it cost."""

    folder: Path
    key: str
    cache_hit: bool
    compile_seconds: float
    info: dict[str, Any] = field(default_factory=dict)


def load_model(model_path: str | os.PathLike[str]) -> treelite.Model:
    """Load an XGBoost JSON/UBJ model file into Treelite; refuse models opsnb cannot serve."""
    try:
        model = treelite.frontend.load_xgboost_model(str(model_path))
    except Exception as exc:  # Treelite raises its own TreeliteError and ValueErrors
        raise CompileError(f"Treelite cannot load {model_path}: {exc}") from exc
    header = model.get_header_accessor()
    targets = int(header.get_field("num_target")[0])
    classes = [int(c) for c in header.get_field("num_class")]
    if targets != 1 or classes != [1]:
        raise CompileError(
            f"{model_path} has {targets} target(s) and num_class={classes}; "
            "opsnb compiles models with one output per row (binary:logistic, reg:*): "
            "train multiclass problems as one binary model per class"
        )
    return model


def toolchain_version(toolchain: str = "gcc") -> str:
    """The first line of ``<toolchain> --version`` (part of the cache key)."""
    try:
        done = subprocess.run(
            [toolchain, "--version"], capture_output=True, text=True, check=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise CompileError(
            f"C compiler {toolchain!r} is not usable ({exc}); install gcc or pass toolchain="
        ) from exc
    return done.stdout.splitlines()[0].strip()


@contextlib.contextmanager
def _native_stderr_to_log() -> Iterator[None]:
    """Send what native code writes to stderr (fd 2) to this module's log at DEBUG.

    TL2cgen embeds an older Treelite that prints a version notice on every model it reads from
    a newer one (expected: DESIGN.md pins them so); users should not see it on every compile.
    TL2cgen's own log lines ("Parallel compilation enabled ...") come through a Python callback
    that prints to ``sys.stdout``: they go to the log too.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    printed = io.StringIO()
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            with contextlib.redirect_stdout(printed):
                yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            native = sink.read().decode(errors="replace").splitlines()
            for line in [*native, *printed.getvalue().splitlines()]:
                log.debug("native: %s", line)


def generate_source(
    model: treelite.Model,
    src_dir: str | os.PathLike[str],
    *,
    options: CompileOptions,
    annotation: str | os.PathLike[str] | None = None,
) -> list[str]:
    """Write TL2cgen's C and opsnb's ``opsnb_batch.c`` into ``src_dir``; return the .c files."""
    src = Path(src_dir)
    units = max(1, math.ceil(model.num_tree / options.trees_per_unit))
    params: dict[str, Any] = {"parallel_comp": units, "quantize": int(options.quantize)}
    if annotation is not None:
        params["annotate_in"] = os.fspath(annotation)
    try:
        with _native_stderr_to_log():
            tl2cgen.generate_c_code(model, dirpath=str(src), params=params)
    except Exception as exc:
        raise CompileError(f"TL2cgen could not generate C code into {src}: {exc}") from exc
    made = sorted(p.name for p in src.glob("tu*.c"))
    shim = csource.batch_entry_point(
        n_features=model.num_feature,
        n_units=len(made),
        base_score=csource.base_score_literal((src / "main.c").read_text()),
        quantize=options.quantize,
        block_rows=options.block_rows,
    )
    (src / "opsnb_batch.c").write_text(shim)
    with open(src / "header.h", "a") as header:
        header.write(csource.DECLARATION)
    return sorted(p.name for p in src.glob("*.c"))


def build_library(
    src_dir: str | os.PathLike[str],
    sources: list[str],
    *,
    cflags: tuple[str, ...] = ("-O3",),
    toolchain: str = "gcc",
    jobs: int | None = None,
) -> Path:
    """Compile ``sources`` in ``src_dir`` (in parallel) and link ``model.so`` there."""
    src = Path(src_dir)
    flags = [*cflags, "-fPIC", "-std=c99"]

    def run(args: list[str]) -> None:
        done = subprocess.run(args, cwd=src, capture_output=True, text=True, check=False)
        if done.returncode:
            raise CompileError(
                f"{' '.join(args)} failed in {src} (exit {done.returncode}): {done.stderr[-2000:]}"
            )

    with ThreadPoolExecutor(jobs or os.cpu_count() or 1) as pool:
        list(pool.map(run, [[toolchain, *flags, "-c", "-o", s[:-2] + ".o", s] for s in sources]))
    objects = [s[:-2] + ".o" for s in sources]
    run([toolchain, "-shared", "-Wl,-Bsymbolic", "-o", layout.LIBRARY, *objects, "-lm"])
    return src / layout.LIBRARY


def export_source_package(
    src_dir: str | os.PathLike[str], sources: list[str], target: Path, *, cflags: tuple[str, ...]
) -> Path:
    """Zip the C sources with a Makefile and a CMakeLists.txt that build ``model.so``."""
    src = Path(src_dir)
    with atomic_path(target) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as pkg:
        for name in [*sources, "header.h"]:
            pkg.write(src / name, f"model-src/{name}")
        pkg.writestr("model-src/Makefile", csource.makefile(sources, cflags=list(cflags)))
        pkg.writestr("model-src/CMakeLists.txt", csource.cmakelists(sources, cflags=list(cflags)))
    return target


def compile_cached(
    model_path: str | os.PathLike[str],
    *,
    options: CompileOptions = CompileOptions(),
    annotate_rows: np.ndarray | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    toolchain: str = "gcc",
) -> CompileResult:
    """Compile ``model_path`` once per (model hash, options, toolchain, versions); reuse after.

    Returns:
        The cache folder holding ``model.so``, ``model.h`` and ``model-src.zip``.
    """
    if options.annotate and annotate_rows is None:
        raise CompileError(
            "CompileOptions(annotate=True) needs annotate_rows (training rows in schema order) "
            "to count how often each branch is taken; pass them or set annotate=False"
        )
    rows = None if annotate_rows is None else np.ascontiguousarray(annotate_rows, np.float32)
    identity = {
        "model_sha256": sha256_file(model_path),
        "options": asdict(options),
        "annotate_rows_sha256": None if rows is None else sha256_bytes(rows.tobytes()),
        "toolchain": toolchain_version(toolchain),
        "versions": {p: version(p) for p in ("treelite", "tl2cgen")},
        "shim": csource.SHIM_VERSION,
    }
    key = sha256_json(identity)[:24]
    folder = Path(cache_dir) if cache_dir is not None else config.compile_cache_dir()
    entry = folder / key
    if (entry / "compile.json").is_file():
        info: dict[str, Any] = read_json(entry / "compile.json")
        log.info("compile cache hit %s for %s", key, model_path)
        return CompileResult(entry, key, True, info["compile_seconds"], info)
    t0 = time.perf_counter()
    model = load_model(model_path)
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=folder))
    try:
        annotation = None
        if rows is not None and options.annotate:
            annotation = staging / "annotation.json"
            tl2cgen.annotate_branch(model, tl2cgen.DMatrix(rows), annotation)
        src = staging / "src"
        sources = generate_source(model, src, options=options, annotation=annotation)
        build_library(src, sources, cflags=options.cflags, toolchain=toolchain)
        shutil.move(src / layout.LIBRARY, staging / layout.LIBRARY)
        shutil.copyfile(src / "header.h", staging / layout.HEADER)
        export_source_package(src, sources, staging / "model-src.zip", cflags=options.cflags)
        shutil.rmtree(src)
        info = {
            **identity,
            "key": key,
            "trees": model.num_tree,
            "units": sum(s.startswith("tu") for s in sources),
            "compile_seconds": round(time.perf_counter() - t0, 2),
        }
        write_json(staging / "compile.json", info)
        try:
            staging.rename(entry)  # atomic: a cache entry is complete or absent
        except OSError:  # another process finished the same key first: use theirs
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("compiled %s in %.1f s (cache key %s)", model_path, info["compile_seconds"], key)
    return CompileResult(entry, key, False, info["compile_seconds"], info)


def compile_bundle(
    model_path: str | os.PathLike[str],
    bundle_dir: str | os.PathLike[str],
    *,
    schema_path: str | os.PathLike[str],
    sample: np.ndarray,
    options: CompileOptions = CompileOptions(),
    annotate_rows: np.ndarray | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    cache_dir: str | os.PathLike[str] | None = None,
    toolchain: str = "gcc",
) -> dict[str, Any]:
    """Compile (or reuse) ``model_path``, prove parity, write ``bundle_dir``; return its manifest.

    Args:
        model_path: the XGBoost JSON/UBJ model file.
        bundle_dir: where the bundle goes; its files are replaced atomically, never in place.
        schema_path: the frozen ``schema.json`` (feature order, categories).
        sample: rows in schema order the parity contract scores (the test split).
        options: compile options (see :class:`CompileOptions`).
        annotate_rows: training rows for branch annotation, with ``options.annotate``.
        tolerance: max absolute difference allowed against each reference.
        cache_dir: the compile cache (default :func:`opsnb.config.compile_cache_dir`).
        toolchain: the C compiler.

    Raises:
        CompileError: the model cannot be compiled.
        ParityError: the library disagrees with XGBoost or Treelite: no bundle is written.
    """
    t0 = time.perf_counter()
    built = compile_cached(
        model_path,
        options=options,
        annotate_rows=annotate_rows,
        cache_dir=cache_dir,
        toolchain=toolchain,
    )
    schema = Schema.load(schema_path)
    library = NativeModel(
        private_copy(built.folder / layout.LIBRARY), feature_names=schema.feature_names
    )
    booster = xgb.Booster()
    booster.load_model(os.fspath(model_path))
    proof = golden.prove_parity(
        library.predict,
        booster=booster,
        model=load_model(model_path),
        schema=schema,
        sample=sample,
        tolerance=tolerance,
    )
    shutil.rmtree(library.path.parent, ignore_errors=True)  # the loaded code stays mapped
    bundle = Path(bundle_dir)
    for name in CACHED_FILES:
        with atomic_path(bundle / name) as tmp:
            shutil.copyfile(built.folder / name, tmp)
    with atomic_path(bundle / layout.SCHEMA) as tmp:
        shutil.copyfile(schema_path, tmp)  # byte for byte: the sealed contract is the frozen one
    gold = proof["golden"]
    write_golden(
        bundle / layout.GOLDEN,
        gold["rows"],
        gold["expected"],
        labels=gold["labels"],
        tolerance=tolerance,
    )
    manifest = layout.write_manifest(
        bundle,
        model_sha256=built.info["model_sha256"],
        num_feature=library.n_features,
        compile={
            "cache_key": built.key,
            "cache_hit": built.cache_hit,
            "compile_seconds": built.compile_seconds,
            "bundle_seconds": round(time.perf_counter() - t0, 2),
            "options": asdict(options),
            "toolchain": built.info["toolchain"],
            "trees": built.info["trees"],
            "units": built.info["units"],
        },
        parity=proof["reports"],
        versions={p: version(p) for p in ("xgboost", "treelite", "tl2cgen", "opsnb")},
    )
    signing.sign_bundle(bundle)  # with the project key: opsnb serve trusts it by default
    log.info("bundle %s written (%s)", bundle, json.dumps(manifest["compile"]))
    return manifest

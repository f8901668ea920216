"""The in-process predictor over a compiled bundle.

A shared library is native code: loading it runs it. So a model is built from a
:class:`~opsnb.bundle.VerifiedBundle` (every bundle file checked against ``manifest.json`` once,
see :func:`opsnb.bundle.verify_bundle`); the library is copied to a fresh private path, the copy
is checked against the verified hash and only then loaded: ``dlopen`` of a path already loaded
returns the old library, and a file overwritten while loaded crashes the process, so each load
gets a path never used before.

Predictions go straight into the library's batch entry point (``opsnb_predict``, see
:mod:`opsnb.native`) with no per-call DMatrix; a large batch is split across ``threads`` threads
(ctypes releases the GIL). The entry point keeps no state, so any number of threads may call
:meth:`CompiledModel.predict` at once.
"""

from __future__ import annotations

import itertools
import os
import shutil
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from opsnb.bundle import GOLDEN, LIBRARY, MANIFEST, VerifiedBundle, verify_bundle
from opsnb.errors import ArtifactError, ConfigError, SchemaError
from opsnb.native import NativeModel, private_copy
from opsnb.parity import check_parity, golden_arrays, parity_report
from opsnb.schema import Schema, to_matrix

if TYPE_CHECKING:
    import pandas as pd

PART_BUDGET_S = 100e-6
"""A thread takes a part of a batch only if scoring that part costs at least this long: handing
rows to another thread costs tens of microseconds, which a smaller part would not pay back."""

SMALL_BATCH = 64
"""Batches up to this size go through per-thread buffers allocated once (no per-call setup)."""


def _timed(fn: Any, *args: Any) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


class CompiledModel:
    """A verified compiled model, callable with a DataFrame or a float32 array in schema order.

    Args:
        bundle: the verified bundle (see :func:`opsnb.bundle.verify_bundle`); its library is
            loaded from a private copy checked against the verified hash.
        threads: how many threads one large batch is split across.

    Attributes:
        bundle: the :class:`~opsnb.bundle.VerifiedBundle` the model was loaded from.
        schema: the bundle's schema.
        version: the first 12 hex digits of the model file's SHA-256.
        n_features: the number of input columns.
        manifest: the bundle's ``manifest.json``.
        threads: how many threads one large batch is split across.
    """

    def __init__(self, bundle: VerifiedBundle, *, threads: int = 1) -> None:
        if threads < 1:
            raise ConfigError(f"threads must be >= 1, got {threads}")
        if not isinstance(bundle, VerifiedBundle):
            raise ConfigError(
                f"CompiledModel needs a VerifiedBundle, got {type(bundle).__name__}; "
                "use load_bundle(path) or opsnb.bundle.verify_bundle(path) first"
            )
        self.bundle = bundle
        self.bundle_dir = bundle.path
        self.manifest = bundle.manifest
        self.schema: Schema = bundle.schema
        self.version: str = bundle.version
        library = private_copy(bundle.library, prefix=f"opsnb-{self.version}-")
        self._private = library.parent
        try:  # the copy is what gets loaded: check it, not the original (TOCTOU)
            bundle.check_copy(LIBRARY, library)
        except ArtifactError:
            shutil.rmtree(self._private, ignore_errors=True)
            raise
        self._native = NativeModel(library, feature_names=self.schema.feature_names)
        self.n_features = self._native.n_features
        self.threads = threads
        self._pool = ThreadPoolExecutor(threads - 1, "opsnb-predict") if threads > 1 else None
        self._local = threading.local()
        self.min_rows_per_thread = self._rows_worth_a_thread() if self._pool else 0
        """Measured at load: a 100-tree model needs a few hundred rows per thread, a
        1,000-tree one a dozen (see :data:`PART_BUDGET_S`)."""

    def _rows_worth_a_thread(self) -> int:
        """Time this model per row (best of 3 on 256 rows) and turn the budget into rows."""
        x = np.zeros((256, self.n_features), np.float32)
        out = np.empty(len(x), np.float64)
        best = min(_timed(self._native.predict_into, x, out) for _ in range(3))
        return int(np.clip(np.ceil(PART_BUDGET_S / (best / len(x))), 8, 4096))

    def __repr__(self) -> str:
        return f"CompiledModel(version={self.version!r}, threads={self.threads})"

    def _matrix(self, data: pd.DataFrame | np.ndarray) -> np.ndarray:
        pandas = sys.modules.get("pandas")  # not loaded: data cannot be a DataFrame
        if pandas is not None and isinstance(data, pandas.DataFrame):
            return to_matrix(data, self.schema)
        x = data if isinstance(data, np.ndarray) else np.asarray(data)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            hint = " (one row? use x.reshape(1, -1))" if x.ndim == 1 else ""
            raise SchemaError(
                f"expected an array of shape (rows, {self.n_features}) in schema order "
                f"({', '.join(self.schema.feature_names)}), got shape {x.shape}{hint}"
            )
        if x.dtype == np.float32 and x.flags.c_contiguous:
            return x
        try:
            with np.errstate(over="ignore"):  # too large for float32 -> inf -> refused by name
                return np.ascontiguousarray(x, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise SchemaError(
                f"array of dtype {x.dtype} is not numeric ({exc}); expected float32 codes and "
                "values in schema order, or pass a DataFrame to encode categories by name"
            ) from exc

    def predict(self, data: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Return one float64 per row: a probability (binary) or a value (regression).

        Raises:
            SchemaError: a missing column, a wrong shape, or a value beyond float32 range.
        """
        x = self._matrix(data)
        n = x.shape[0]
        if n <= SMALL_BATCH:
            return self._predict_small(x, n)
        out = np.empty(n, np.float64)
        parts = min(self.threads, n // self.min_rows_per_thread) if self._pool else 1
        if self._pool is None or parts < 2:
            self._native.predict_into(x, out)
            return out
        bounds = np.linspace(0, n, parts + 1).astype(int)
        # The pool scores every part but the first; the calling thread scores the first.
        futures = [
            self._pool.submit(self._native.predict_into, x[a:b], out[a:b], row_offset=a)
            for a, b in itertools.pairwise(bounds[1:])
        ]
        first = slice(bounds[0], bounds[1])
        self._native.predict_into(x[first], out[first])
        for future in futures:
            future.result()
        return out

    def _predict_small(self, x: np.ndarray, n: int) -> np.ndarray:
        """Score a small batch through this thread's preallocated buffers (addresses cached)."""
        buffers = getattr(self._local, "buffers", None)
        if buffers is None:
            rows = np.empty((SMALL_BATCH, self.n_features), np.float32)
            out = np.empty(SMALL_BATCH, np.float64)
            buffers = self._local.buffers = (rows, out, rows.ctypes.data, out.ctypes.data)
        rows, out, rows_at, out_at = buffers
        rows[:n] = x
        rc = self._native.call(rows_at, n, self.n_features, 0, out_at)
        if rc:
            self._native.raise_for(rc, x)
        return out[:n].copy()

    def self_check(self) -> dict[str, Any]:
        """Re-score the bundle's golden edge rows and compare with their recorded outputs.

        Returns:
            The parity report (worst row and its label, max absolute difference).

        The rows come from the verified bundle (parsed from the bytes that were hashed), so
        nothing is read or hashed again.

        Raises:
            ArtifactError: the bundle has no ``golden.json``, or it is not a golden document.
            ParityError: an output differs beyond the recorded tolerance.
        """
        doc = self.bundle.golden
        if doc is None:
            raise ArtifactError(
                f"{self.bundle_dir}/{MANIFEST} lists no {GOLDEN}; rebuild the bundle with "
                "this opsnb to get one",
                path=GOLDEN,
            )
        rows, expected = golden_arrays(doc, where=str(self.bundle_dir / GOLDEN))
        report = parity_report(
            expected,
            self.predict(rows),
            tolerance=float(doc.get("tolerance", 1e-5)),
            label="golden.json",
            row_labels=doc.get("labels"),
        )
        return check_parity(report)

    def close(self) -> None:
        """Stop the worker threads, delete the private copy (its code stays mapped until exit)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        shutil.rmtree(self._private, ignore_errors=True)


def load_bundle(
    bundle: VerifiedBundle | str | os.PathLike[str],
    *,
    threads: int = 1,
    self_check: bool = True,
) -> CompiledModel:
    """Load a bundle (verified first when given a path), then re-prove parity on its golden rows.

    See :class:`CompiledModel`; ``threads`` splits large batches, ``self_check`` runs
    :meth:`CompiledModel.self_check` when the bundle has ``golden.json``. Pass the
    :class:`~opsnb.bundle.VerifiedBundle` you already have, and its files are not hashed again.
    """
    verified = bundle if isinstance(bundle, VerifiedBundle) else verify_bundle(bundle)
    model = CompiledModel(verified, threads=threads)
    if self_check and verified.golden is not None:
        try:
            model.self_check()
        except Exception:
            model.close()
            raise
    return model

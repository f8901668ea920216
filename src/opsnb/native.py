"""The ctypes binding to a compiled model's batch entry point, ``opsnb_predict``.

Every library opsnb builds exports, beside TL2cgen's per-row ``predict``::

    int64_t opsnb_predict(const float* x, int64_t n_rows, int32_t n_cols,
                          int32_t pred_margin, double* out);

``x`` is row-major float32 in schema order with NaN for a missing value. It returns 0, ``-1`` when
``n_cols`` is not the model's feature count, ``-2`` when memory ran out, or ``1 + i`` when the
``i``-th value of ``x`` (row-major) is infinite: compiled trees would predict silently on it.
The call holds no global state, so many threads may call it at once; ctypes releases the GIL.

This module loads code without checking it: callers verify the file first (the predictor checks
the bundle manifest, the compiler loads what it has just built).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from opsnb.errors import CompileError, SchemaError

ENTRY_POINT = "opsnb_predict"


def private_copy(library: str | os.PathLike[str], *, prefix: str = "opsnb-model-") -> Path:
    """Copy ``library`` to a fresh folder nobody else uses and return the copy's path.

    ``dlopen`` of a path already loaded returns the old library, and a file overwritten while
    loaded crashes the process: a never-reused path avoids both.
    """
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    target = folder / Path(library).name
    shutil.copyfile(library, target)
    return target


class NativeModel:
    """A loaded library: one call scores a whole float32 batch."""

    def __init__(self, path: str | os.PathLike[str], *, feature_names: list[str]) -> None:
        self.path = Path(path)
        try:
            self._lib = ctypes.CDLL(str(self.path), mode=os.RTLD_LOCAL)
            fn = getattr(self._lib, ENTRY_POINT)
        except (OSError, AttributeError) as exc:
            raise CompileError(
                f"{self.path} is not an opsnb model library ({exc}); "
                f"expected the exported function {ENTRY_POINT}: rebuild it with opsnb.compiler"
            ) from exc
        fn.argtypes = [
            ctypes.c_void_p,
            ctypes.c_int64,
            ctypes.c_int32,
            ctypes.c_int32,
            ctypes.c_void_p,
        ]
        fn.restype = ctypes.c_int64
        self.call = fn
        """The raw entry point: ``call(x_address, rows, n_cols, margin, out_address) -> status``."""
        self.n_features = int(self._lib.get_num_feature())
        self.feature_names = feature_names
        if len(feature_names) != self.n_features:
            raise CompileError(
                f"{self.path} takes {self.n_features} features but the schema lists "
                f"{len(feature_names)}; the bundle mixes files of two models: rebuild it"
            )

    def predict_into(
        self, x: np.ndarray, out: np.ndarray, *, margin: bool = False, row_offset: int = 0
    ) -> None:
        """Score ``x`` (C-contiguous float32, shape (rows, n_features)) into ``out`` (float64).

        ``row_offset`` is where ``x`` starts in the caller's batch (errors name that row).

        Raises:
            ValueError: ``out`` cannot hold one float64 per row of ``x`` (the library writes
                through the pointer: a shorter ``out`` would be written past its end).
        """
        if out.shape != (x.shape[0],) or out.dtype != np.float64 or not out.flags.c_contiguous:
            raise ValueError(
                f"out must be a contiguous float64 array of {x.shape[0]} rows, got "
                f"{out.dtype} of shape {out.shape}"
            )
        rc = self.call(x.ctypes.data, x.shape[0], self.n_features, int(margin), out.ctypes.data)
        if rc:
            self.raise_for(rc, x, row_offset)

    def predict(self, x: np.ndarray, *, margin: bool = False) -> np.ndarray:
        """Score a float32 array in schema order; return one float64 per row."""
        x = np.ascontiguousarray(x, np.float32)
        out = np.empty(x.shape[0], np.float64)
        self.predict_into(x, out, margin=margin)
        return out

    def raise_for(self, rc: int, x: np.ndarray, row_offset: int = 0) -> None:
        """Raise the error a non-zero status of :attr:`call` on rows ``x`` stands for."""
        if rc == -2:
            raise MemoryError(f"{ENTRY_POINT} could not allocate its row buffer")
        if rc < 0:
            raise SchemaError(f"{ENTRY_POINT} refused {x.shape[1]} columns")
        row, col = divmod(rc - 1, self.n_features)
        name = self.feature_names[col]
        raise SchemaError(
            f"row {row + row_offset}, feature {name!r} is {x[row, col]} as float32; expected a "
            "finite value (|x| <= 3.4e38) or NaN for a missing one: compiled trees cannot score it",
            column=name,
        )

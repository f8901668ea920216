"""The in-process predictor over a compiled bundle.

A shared library is native code: loading it runs it. So :func:`load_bundle` checks every bundle
file against ``manifest.json`` first, then copies the library to a fresh private path and loads
that copy: ``dlopen`` of a path already loaded returns the old library, and a file overwritten
while loaded crashes the process, so each load gets a path never used before.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tl2cgen

from opsnb.artifacts import read_json, sha256_file
from opsnb.errors import ArtifactError, ParityError, SchemaError
from opsnb.validation import feature_names, to_matrix


def verify_bundle(bundle_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Return the bundle manifest after checking every listed file's SHA-256 (nothing is loaded)."""
    bundle = Path(bundle_dir)
    manifest_path = bundle / "manifest.json"
    if not manifest_path.is_file():
        raise ArtifactError(
            f"{bundle} is not a bundle: manifest.json is missing", path="manifest.json"
        )
    manifest: dict[str, Any] = read_json(manifest_path)
    for name, expected in manifest["files"].items():
        path = bundle / name
        if not path.is_file():
            raise ArtifactError(f"bundle file {name} is missing from {bundle}", path=name)
        actual = sha256_file(path)
        if actual != expected:
            raise ArtifactError(
                f"bundle file {name} does not match manifest.json: sha256 {actual[:12]}… "
                f"expected {expected[:12]}…; refusing to load it (rebuild the bundle)",
                path=name,
            )
    return manifest


class CompiledModel:
    """A verified compiled model, callable with a DataFrame or a float32 array in schema order."""

    def __init__(self, bundle_dir: str | os.PathLike[str]) -> None:
        self.bundle_dir = Path(bundle_dir)
        self.manifest = verify_bundle(self.bundle_dir)
        self.schema: dict[str, Any] = read_json(self.bundle_dir / "schema.json")
        self.version = self.manifest["model_sha256"][:12]
        self._private = Path(tempfile.mkdtemp(prefix=f"opsnb-model-{self.version}-"))
        library = self._private / "model.so"
        shutil.copyfile(self.bundle_dir / "model.so", library)
        if sha256_file(library) != self.manifest["files"]["model.so"]:
            raise ArtifactError("model.so changed while it was being loaded", path="model.so")
        self._predictor = tl2cgen.Predictor(str(library), nthread=1)
        self._lock = threading.Lock()  # a tl2cgen.Predictor must not run in two threads at once
        self.n_features = len(feature_names(self.schema))

    def predict(self, data: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Return one output per row: a probability (binary) or a value (regression)."""
        x = to_matrix(data, self.schema) if isinstance(data, pd.DataFrame) else np.asarray(data)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise SchemaError(
                f"expected an array of shape (rows, {self.n_features}) in schema order, "
                f"got shape {x.shape}"
            )
        with self._lock:
            out = self._predictor.predict(tl2cgen.DMatrix(np.ascontiguousarray(x, np.float32)))
        return np.asarray(out, dtype=np.float64).reshape(len(x), -1)[:, 0]

    def self_check(self) -> dict[str, Any]:
        """Predict edge rows built from the schema (all missing, minima, maxima); all finite.

        TEMP: a minimal stand-in until issue 4's golden-row parity check lands.
        """
        lows = [0.0 if f["kind"] == "categorical" else f["min"] for f in self.schema["features"]]
        highs = [
            len(f["categories"]) - 1 if f["kind"] == "categorical" else f["max"]
            for f in self.schema["features"]
        ]
        rows = np.asarray([[np.nan] * self.n_features, lows, highs], dtype=np.float32)
        out = self.predict(rows)
        if not np.isfinite(out).all():
            raise ParityError(f"model {self.version} predicts non-finite values {out} on edge rows")
        return {"rows": len(rows), "passed": True}

    def close(self) -> None:
        """Forget the private copy of the library (the loaded code stays mapped until exit)."""
        shutil.rmtree(self._private, ignore_errors=True)


def load_bundle(bundle_dir: str | os.PathLike[str]) -> CompiledModel:
    """Verify and load a bundle; see :class:`CompiledModel`."""
    return CompiledModel(bundle_dir)

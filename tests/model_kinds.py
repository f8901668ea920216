"""Small real models of each kind opsnb compiles, with their schema and data (test helpers)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb

from opsnb import compiler
from opsnb.schema import Schema

CATEGORIES = ["red", "green", "blue", "grey", "pink"]


@dataclass
class Kind:
    """A trained model file, its schema file, and rows in schema order."""

    name: str
    model_path: Path
    schema_path: Path
    schema: Schema
    x: np.ndarray
    booster: xgb.Booster


def make_schema(task: str, *, categorical: bool) -> dict[str, Any]:
    """A minimal schema.json document (no dtype, lower/upper or policy: all optional)."""
    features: list[dict[str, Any]] = [
        {"name": f"x{i}", "kind": "numeric", "nullable": True, "min": -4.0, "max": 4.0}
        for i in range(4)
    ]
    if categorical:
        features.insert(
            2, {"name": "colour", "kind": "categorical", "nullable": True, "categories": CATEGORIES}
        )
    return {
        "version": 1,
        "task": task,
        "target": "y",
        "timestamp": None,
        "ids": [],
        "features": features,
    }


def make_rows(n: int, schema: Schema, *, seed: int, missing: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(schema.features))).astype(np.float32)
    for j, f in enumerate(schema.features):
        if f.is_categorical:
            x[:, j] = rng.integers(0, len(f.categories), n)
    x[rng.random(x.shape) < missing] = np.nan
    return x


def train_kind(folder: Path, name: str, *, trees: int = 40, depth: int = 4, seed: int = 0) -> Kind:
    """Train and save one of: binary, regression, categorical, missing, multiclass."""
    task = "regression" if name == "regression" else "binary"
    doc = make_schema(task, categorical=name in ("categorical", "multiclass"))
    schema = Schema.from_dict(doc)
    x = make_rows(
        3000, schema, seed=seed, missing={"missing": 0.15, "categorical": 0.05}.get(name, 0.0)
    )
    z = np.nan_to_num(x)
    signal = z[:, 0] + 0.5 * z[:, 1] * (z[:, -1] > 0.3) - 0.3 * z[:, 2] ** 2
    params: dict[str, Any] = {"max_depth": depth, "max_cat_to_onehot": 1, "seed": seed}
    if name == "regression":
        params["objective"], label = "reg:squarederror", signal
    elif name == "multiclass":
        params.update(objective="multi:softprob", num_class=3)
        label = np.digitize(signal, [-0.5, 0.5]).astype(float)
    else:
        params["objective"], label = "binary:logistic", (signal > 0).astype(float)
    types, names = schema.feature_types, schema.feature_names
    dtrain = xgb.DMatrix(
        x,
        label=label,
        feature_names=names,
        feature_types=types,
        enable_categorical=True,
        missing=np.nan,
    )
    booster = xgb.train(params, dtrain, trees)
    folder.mkdir(parents=True, exist_ok=True)
    model_path = folder / f"{name}.ubj"
    booster.save_model(model_path)
    schema_path = folder / f"{name}.schema.json"
    schema_path.write_text(json.dumps(doc))
    return Kind(name, model_path, schema_path, schema, x, booster)


def reference(kind: Kind, x: np.ndarray) -> np.ndarray:
    """XGBoost's own predictions (Booster.predict) for rows in schema order."""
    types, names = kind.schema.feature_types, kind.schema.feature_names
    d = xgb.DMatrix(
        x, feature_names=names, feature_types=types, enable_categorical=True, missing=np.nan
    )
    return np.asarray(kind.booster.predict(d), np.float64)


def bundle_of(kind: Kind, bundle: Path, cache: Path, **options: Any) -> dict[str, Any]:
    """Compile ``kind`` into ``bundle`` (test split = its last 500 rows)."""
    return compiler.compile_bundle(
        kind.model_path,
        bundle,
        schema_path=kind.schema_path,
        sample=kind.x[-500:],
        options=compiler.CompileOptions(**options),
        annotate_rows=kind.x[:2000] if options.get("annotate") else None,
        cache_dir=cache,
    )

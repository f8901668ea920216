"""The servers opsnb's service is measured against (started by serve_bench.py under uvicorn).

- ``handwritten_pandas``: what a user typically writes by hand: FastAPI, a pandas DataFrame per
  request, XGBoost ``predict`` on a DMatrix.
- ``handwritten_numpy``: the same with a numpy row and ``inplace_predict``.
- ``noop``: opsnb's own stack (Starlette, uvicorn with uvloop + httptools, orjson) answering a
  constant: the ceiling the Python HTTP stack leaves for any model.

Each factory reads the model and schema paths from ``$OPSNB_BENCH_MODEL`` and
``$OPSNB_BENCH_SCHEMA`` (:mod:`opsnb.config`).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import orjson
import pandas as pd
import xgboost as xgb
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from opsnb import config
from opsnb.schema import Schema, to_matrix


def _model_and_schema() -> tuple[xgb.Booster, Schema]:
    booster = xgb.Booster(model_file=os.environ[config.BENCH_MODEL_ENV])  # as users do
    return booster, Schema.load(os.environ[config.BENCH_SCHEMA_ENV])


def handwritten_pandas() -> FastAPI:
    """FastAPI + pandas DataFrame + ``Booster.predict(DMatrix)``, as found in tutorials."""
    booster, schema = _model_and_schema()
    app = FastAPI()

    @app.post("/predict")
    def predict(record: dict[str, Any]) -> dict[str, float]:
        frame = pd.DataFrame([record])
        return {"probability": float(booster.predict(xgb.DMatrix(to_matrix(frame, schema)))[0])}

    return app


def handwritten_numpy() -> FastAPI:
    """FastAPI + a numpy row + ``Booster.inplace_predict``."""
    booster, schema = _model_and_schema()
    codes = [
        {c: float(i) for i, c in enumerate(f.categories)} if f.is_categorical else None
        for f in schema.features
    ]
    names = schema.feature_names
    app = FastAPI()

    @app.post("/predict")
    def predict(record: dict[str, Any]) -> dict[str, float]:
        row = [
            np.nan if record[n] is None else (c.get(record[n], np.nan) if c else record[n])
            for n, c in zip(names, codes, strict=True)
        ]
        x = np.asarray([row], dtype=np.float32)
        return {"probability": float(booster.inplace_predict(x)[0])}

    return app


def noop() -> Starlette:
    """Read the body, answer a constant: the stack's own cost per request."""
    answer = orjson.dumps({"model_version": "noop", "predictions": [{"probability": 0.5}]})

    async def predict(request: Request) -> Response:
        await request.body()
        return Response(answer, media_type="application/json")

    return Starlette(routes=[Route("/predict", predict, methods=["POST"])])

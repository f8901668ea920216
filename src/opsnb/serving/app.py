"""The ASGI app: ``/predict``, ``/feedback``, ``/health``, ``/ready``, ``/metrics``, OpenAPI.

``create_app`` wires the pieces: the model slot (verified, checked, warmed models), the request
contract, the micro-batcher and the prediction log. A prediction is answered only after its log
row is committed. Bad input is answered 4xx (see :mod:`opsnb.serving.contract` for the
mapping), never 5xx; an overloaded server answers 503 with ``Retry-After`` before reading the
body.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from opsnb import config
from opsnb.bundle import VerifiedBundle
from opsnb.errors import OpsnbError, RequestError
from opsnb.serving import openapi
from opsnb.serving.batching import MicroBatcher
from opsnb.serving.contract import STATUSES, error_kind, parse_feedback
from opsnb.serving.metrics import ServiceMetrics
from opsnb.serving.predlog import PredictionLog
from opsnb.serving.reload import ModelSlot, ServedModel

log = logging.getLogger(__name__)

_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@dataclass(frozen=True, kw_only=True)
class ServeOptions:
    """How the service runs; every field has the documented default of ``opsnb serve``.

    Attributes:
        bundle: the run folder (``runs/<id>``) or bundle folder to serve.
        log_path: the SQLite prediction log (default: ``predictions.sqlite`` in ``bundle``).
        log_sync: SQLite ``synchronous`` mode of the log (NORMAL survives ``kill -9``).
        max_batch: most rows in one predictor call.
        max_wait_ms: longest a request waits for batch-mates.
        budget_ms: latency budget; past it requests are answered 503.
        max_body: largest accepted request body in bytes (413 above, before it is read).
        max_records: most records in one request.
        range_slack: how far past the training range values may go, in spans (None: any).
        drain_s: how long SIGTERM waits for admitted requests.
        load_first: load the model before accepting connections (worker processes that share
            a port do this, so none takes requests it cannot answer); otherwise the server
            answers ``/health`` at once and ``/ready`` turns true once the model is loaded.
    """

    bundle: str
    log_path: str | None = None
    log_sync: str = "NORMAL"
    max_batch: int = 256
    max_wait_ms: float = 2.0
    budget_ms: float = 250.0
    max_body: int = 1 << 20
    max_records: int = 1000
    range_slack: float | None = 1.0
    drain_s: float = 10.0
    load_first: bool = False


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status, headers, media_type="application/json")


def _refusal(exc: RequestError) -> Response:
    kind = error_kind(exc.status)
    body = {"error": kind, "message": str(exc), "record": exc.record, "field": exc.field}
    headers = {"Retry-After": "1"} if exc.status == 503 else None
    return _json(body, exc.status, headers)


class Service:
    """The state behind the routes: one per app (``verified``: see :func:`create_app`)."""

    def __init__(self, options: ServeOptions, verified: VerifiedBundle | None = None) -> None:
        self.options = options
        self.metrics = ServiceMetrics()
        self.slot = ModelSlot(
            options.bundle,
            verified=verified,
            range_slack=options.range_slack,
            max_records=options.max_records,
            warm_rows=options.max_batch,
        )
        self.batcher: MicroBatcher | None = None
        self.log: PredictionLog | None = None
        self._loader: asyncio.Task[Any] | None = None
        self._children: dict[tuple[str, int], tuple[Any, Any]] = {}

    def log_path(self) -> Path:
        """Where predictions are logged."""
        if self.options.log_path:
            return Path(self.options.log_path)
        return config.prediction_log_path(self.options.bundle)

    @contextlib.asynccontextmanager
    async def lifespan(self, _: Starlette) -> AsyncIterator[None]:
        """Start the log, the batcher and the first model load; on shutdown drain and close."""
        self.log = PredictionLog(self.log_path(), synchronous=self.options.log_sync)
        self.batcher = MicroBatcher(
            self.metrics,
            sink=self._log_batch,
            max_batch=self.options.max_batch,
            max_wait_s=self.options.max_wait_ms / 1000,
            budget_s=self.options.budget_ms / 1000,
        )
        self.batcher.start()
        if self.options.load_first:
            await self._reload_logged()
        else:
            self._loader = asyncio.create_task(self._reload_logged())
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        try:
            yield
        finally:
            await self.batcher.drain(self.options.drain_s)
            self.log.close()
            self.slot.close()

    def _log_batch(self, served: ServedModel, done: list[tuple[Any, np.ndarray]]) -> None:
        """Batch sink, on the predictor thread: commit the batch's log rows before any answer."""
        if self.log is None:
            raise OpsnbError("the prediction log is closed")
        now, clock, version = time.time(), time.perf_counter(), served.version
        self.log.write(
            [
                (rid, now, version, orjson.dumps(record).decode(), output, (clock - started) * 1000)
                for (ids, records, started), outputs in done
                for rid, record, output in zip(ids, records, outputs.tolist(), strict=True)
            ]
        )

    def _on_sighup(self) -> None:
        self._loader = asyncio.get_running_loop().create_task(self._reload_logged())  # keep a ref

    async def _reload_logged(self) -> None:
        with contextlib.suppress(OpsnbError):  # refused: logged, the old model keeps serving
            await self.reload()

    async def reload(self, bundle: str | None = None) -> str:
        """Load ``bundle`` (default: the configured one); return its version or raise."""
        try:
            served = await self.slot.reload(bundle)
        except OpsnbError:
            self.metrics.reloads.labels("refused").inc()
            raise
        # A served process allocates per request; the collector's full passes over every
        # object loaded so far (libraries, the model) showed up as p99 spikes. Those objects
        # live for the process, so move them out of the collector's sight.
        gc.freeze()
        self.metrics.reloads.labels("loaded").inc()
        self.metrics.model.clear()
        self.metrics.model.labels(served.version).set(1)
        return served.version

    async def _body(self, request: Request) -> bytes:
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/json":
            raise RequestError(
                f"content-type {media or '(none)'!r} is not accepted; send application/json",
                status=415,
            )
        limit = self.options.max_body
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            status = 413 if declared.isdigit() else 400
            raise RequestError(
                f"content-length {declared[:30]!r} exceeds the limit of {limit} bytes"
                if status == 413
                else f"content-length {declared[:30]!r} is not a byte count",
                status=status,
            )
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestError(f"request body exceeds the limit of {limit} bytes", status=413)
            chunks.append(chunk)
        return b"".join(chunks)

    async def predict(self, request: Request) -> Response:
        """``POST /predict``: one record or a list of records -> one prediction each."""
        started = time.perf_counter()
        served, batcher = self.slot.current, self.batcher
        try:
            if served is None or batcher is None:
                raise RequestError("the model is not loaded yet; retry shortly", status=503)
            batcher.arriving += 1
            try:
                rows, records = served.contract.parse(await self._body(request))
            finally:
                batcher.arriving -= 1
            ids = [uuid.uuid4().hex for _ in records]
            outputs = await batcher.predict(rows, served, (ids, records, started))
            version = served.version
            answer = _json(
                {
                    "model_version": version,
                    "predictions": [
                        {"request_id": rid, served.output: out}
                        for rid, out in zip(ids, outputs.tolist(), strict=True)
                    ],
                }
            )
            self.metrics.records.observe(len(records))
        except RequestError as exc:
            self.metrics.errors.labels(error_kind(exc.status)).inc()
            answer = _refusal(exc)
        except Exception:
            log.exception("prediction failed")
            self.metrics.errors.labels("internal").inc()
            answer = _json(
                {"error": "internal", "message": "prediction failed; see the server log"}, 500
            )
        self._observe("/predict", answer.status_code, started)
        return answer

    async def feedback(self, request: Request) -> Response:
        """``POST /feedback``: ``{"request_id": ..., "label": ...}`` stores a ground-truth label."""
        started = time.perf_counter()
        try:
            if self.log is None:
                raise RequestError("the service is starting; retry shortly", status=503)
            rid, label = parse_feedback(await self._body(request))
            if not await asyncio.to_thread(self.log.feedback, rid, label):
                raise RequestError(
                    f"request_id {rid[:60]!r} is not in the prediction log; send the id a "
                    "/predict answer returned",
                    status=404,
                    field="request_id",
                )
            answer = _json({"stored": True, "request_id": rid})
        except RequestError as exc:
            self.metrics.errors.labels(error_kind(exc.status)).inc()
            answer = _refusal(exc)
        self._observe("/feedback", answer.status_code, started)
        return answer

    async def admin_reload(self, request: Request) -> Response:
        """``POST /admin/reload`` (loopback clients only): load a new bundle, keep the old on error.

        An optional body ``{"bundle": path}`` names the bundle; default: the configured one.
        """
        if request.client is None or request.client.host not in _LOOPBACK:
            return _json({"error": "forbidden", "message": "reload only from loopback"}, 403)
        body = await request.body()
        try:
            data = orjson.loads(body) if body else {}
        except orjson.JSONDecodeError:
            data = None
        bundle = data.get("bundle") if type(data) is dict else None
        if data is None or (bundle is not None and type(bundle) is not str):
            return _json(
                {"error": STATUSES[400][0], "message": 'expected {"bundle": "<path>"} or nothing'},
                400,
            )
        try:
            version = await self.reload(bundle)
        except OpsnbError as exc:
            current = self.slot.current
            return _json(
                {
                    "error": "refused",
                    "message": str(exc),
                    "model_version": current.version if current else None,
                },
                409,
            )
        return _json(
            {
                "model_version": version,
                "bundle": str(self.slot.current and self.slot.current.bundle),
            }
        )

    async def health(self, _: Request) -> Response:
        """``GET /health``: the process is alive."""
        return _json({"alive": True})

    async def ready(self, _: Request) -> Response:
        """``GET /ready``: 200 once a verified model is loaded and warm, else 503."""
        served = self.slot.current
        if served is None:
            reason = self.slot.last_error or "the model is loading"
            return _json({"ready": False, "reason": reason}, 503)
        return _json({"ready": True, "model_version": served.version, "bundle": str(served.bundle)})

    async def metrics_page(self, _: Request) -> Response:
        """``GET /metrics``: Prometheus text format."""
        return Response(self.metrics.render(), media_type="text/plain; version=0.0.4")

    async def openapi_json(self, _: Request) -> Response:
        """``GET /openapi.json``: generated from the served bundle's schema."""
        served = self.slot.current
        if served is None:
            return _json({"ready": False, "reason": "the model is loading"}, 503)
        return _json(
            openapi.document(
                served.contract, version=served.version, max_body=self.options.max_body
            )
        )

    async def docs(self, _: Request) -> Response:
        """``GET /docs``: the OpenAPI page."""
        return HTMLResponse(openapi.docs_page())

    def refused(self, started: float) -> None:
        """Count a ``/predict`` refused for overload (answered by the admission wrapper)."""
        self.metrics.errors.labels("overload").inc()
        self._observe("/predict", 503, started)

    def _observe(self, endpoint: str, status: int, started: float) -> None:
        # labels() costs a locked lookup; the children are cached per (endpoint, status)
        key = (endpoint, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.metrics.requests.labels(endpoint, str(status)),
                self.metrics.latency.labels(endpoint),
            )
        children[0].inc()
        children[1].observe(time.perf_counter() - started)


class _Admission:
    """ASGI wrapper: refuses ``/predict`` past the latency budget before Starlette sees it.

    A refusal is a prebuilt 503 with ``Retry-After``: under overload most requests are refused,
    so a refusal must cost a small fraction of an answer. Other paths always pass.
    """

    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app = app
        self.service = service
        budget = service.options.budget_ms
        self._body = orjson.dumps(
            {
                "error": "overload",
                "record": None,
                "field": None,
                "message": f"over the latency budget of {budget:g} ms; retry later",
            }
        )
        self._headers = [
            (b"content-type", b"application/json"),
            (b"retry-after", b"1"),
            (b"content-length", str(len(self._body)).encode()),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        batcher = self.service.batcher
        if scope["type"] != "http" or scope["path"] != "/predict" or batcher is None:
            await self.app(scope, receive, send)
            return
        if not batcher.admit():
            started = time.perf_counter()
            await send({"type": "http.response.start", "status": 503, "headers": self._headers})
            await send({"type": "http.response.body", "body": self._body})
            self.service.refused(started)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            batcher.release()


def create_app(options: ServeOptions, *, verified: VerifiedBundle | None = None) -> ASGIApp:
    """Build the prediction service for ``options.bundle``; the model loads at startup.

    ``verified``: ``options.bundle`` as the caller already verified it (``opsnb serve`` checks
    the bundle before it starts); the first load uses it rather than hashing every file again.
    """
    service = Service(options, verified)
    app = Starlette(
        routes=[
            Route("/predict", service.predict, methods=["POST"]),
            Route("/feedback", service.feedback, methods=["POST"]),
            Route("/admin/reload", service.admin_reload, methods=["POST"]),
            Route("/health", service.health, methods=["GET"]),
            Route("/ready", service.ready, methods=["GET"]),
            Route("/metrics", service.metrics_page, methods=["GET"]),
            Route("/openapi.json", service.openapi_json, methods=["GET"]),
            Route("/docs", service.docs, methods=["GET"]),
        ],
        lifespan=service.lifespan,
    )
    return _Admission(app, service)

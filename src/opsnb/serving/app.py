"""The ASGI app: ``/predict``, ``/feedback``, ``/health``, ``/ready``, ``/metrics``, OpenAPI.

``create_app`` wires the pieces: the model slot (verified, checked, warmed models), the request
contract, the micro-batcher and the prediction log. A prediction is answered only after its log
row is committed: a log that cannot be written answers 503 ``log_unavailable`` and turns
``/ready`` to 503 until a probe finds it writable again. Bad input is answered 4xx (see
:mod:`opsnb.serving.contract` for the mapping), never 5xx; what happens before a route runs
(headers, body, admission) is :mod:`opsnb.serving.frontdoor`; credentials are
:mod:`opsnb.serving.admin`; model versions and workers :mod:`opsnb.serving.control`.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from opsnb import config, signing
from opsnb.bundle import VerifiedBundle
from opsnb.errors import OpsnbError, RequestError
from opsnb.serving import openapi
from opsnb.serving.admin import LOOPBACK_NAMES, Access
from opsnb.serving.batching import MicroBatcher
from opsnb.serving.contract import error_kind, parse_feedback
from opsnb.serving.control import POLL_S, Control
from opsnb.serving.frontdoor import FrontDoor
from opsnb.serving.metrics import ServiceMetrics
from opsnb.serving.predlog import LogUnavailableError, PredictionLog
from opsnb.serving.reload import ModelSlot, ServedModel
from opsnb.serving.store import ModelStore, Trust, escape

log = logging.getLogger(__name__)

_LOG_PROBE_S = 0.5


@dataclass(frozen=True, kw_only=True)
class ServeOptions:
    """How the service runs; every field has the documented default of ``opsnb serve``.

    Attributes:
        bundle: the run folder (``runs/<id>``) or bundle folder to serve.
        log_path: the SQLite prediction log (default: ``predictions.sqlite`` in ``bundle``).
        log_sync: SQLite ``synchronous`` mode of the log (NORMAL survives ``kill -9``).
        log_max_mb: rotate the log once its rows take this many MiB (None: no size bound).
        log_max_age_days: rotate the log once its oldest row is this old (None: no age bound).
        log_keep: rotated archives kept beside the log (1..9); the oldest are deleted.
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
        store: the model store reloads pick versions from (default: the folder holding
            ``bundle``; see :mod:`opsnb.serving.store`).
        trust_keys: public key files trusted beside the project key.
        allow_unsigned: load bundles without a trusted signature.
        admin_token: bearer token of ``/admin/reload`` (None: the endpoint is off).
        feedback_token: bearer token ``/feedback`` requires (see :mod:`opsnb.serving.admin`).
        allowed_hosts: host names admin requests may name in ``Host`` (beside loopback).
        body_timeout_s: how long a request body may take to arrive (408 after).
        header_timeout_s: how long request headers may take to arrive (connection closed).
        max_connections: open connections at most (uvicorn answers 503 past it).
        control_dir: the workers' shared instruction folder (set by :func:`serve`).
    """

    bundle: str
    log_path: str | None = None
    log_sync: str = "NORMAL"
    log_max_mb: float | None = 64.0
    log_max_age_days: float | None = None
    log_keep: int = 8
    max_batch: int = 256
    max_wait_ms: float = 2.0
    budget_ms: float = 250.0
    max_body: int = 1 << 20
    max_records: int = 1000
    range_slack: float | None = 1.0
    drain_s: float = 10.0
    load_first: bool = False
    store: str | None = None
    trust_keys: tuple[str, ...] = ()
    allow_unsigned: bool = False
    admin_token: str | None = field(default=None, repr=False)
    feedback_token: str | None = field(default=None, repr=False)
    allowed_hosts: tuple[str, ...] = ()
    body_timeout_s: float = 10.0
    header_timeout_s: float = 10.0
    max_connections: int = 1024
    control_dir: str | None = None


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status, headers, media_type="application/json")


def _kind(exc: RequestError) -> str:
    return exc.kind or error_kind(exc.status)


def _refusal_body(exc: RequestError) -> bytes:
    return orjson.dumps(
        {"error": _kind(exc), "message": str(exc), "record": exc.record, "field": exc.field}
    )


def _refusal(exc: RequestError) -> Response:
    headers = {"Retry-After": "1"} if exc.status == 503 else None
    return Response(_refusal_body(exc), exc.status, headers, media_type="application/json")


class Service:
    """The state behind the routes: one per app (``verified``: see :func:`create_app`)."""

    def __init__(self, options: ServeOptions, verified: VerifiedBundle | None = None) -> None:
        self.options = options
        self.metrics = ServiceMetrics()
        self.slot = ModelSlot(
            ModelStore.serving(options.bundle, options.store),
            trust=Trust(signing.trusted_keys(options.trust_keys), options.allow_unsigned),
            verified=verified,
            range_slack=options.range_slack,
            max_records=options.max_records,
            warm_rows=options.max_batch,
        )
        self.access = Access(
            options.admin_token,
            options.feedback_token,
            (*LOOPBACK_NAMES, *options.allowed_hosts),
        )
        self.control = Control(options.control_dir)
        self.batcher: MicroBatcher | None = None
        self.log: PredictionLog | None = None
        self.log_error: str | None = None
        self.reload_error: str | None = None
        self._applied = -1
        self._tasks: set[asyncio.Task[Any]] = set()
        self._children: dict[tuple[str, int], tuple[Any, Any]] = {}

    def log_path(self) -> Path:
        """Where predictions are logged."""
        if self.options.log_path:
            return Path(self.options.log_path)
        return config.prediction_log_path(self.options.bundle)

    def _open_log(self) -> PredictionLog:
        opts = self.options
        return PredictionLog(
            self.log_path(),
            synchronous=opts.log_sync,
            max_bytes=None if opts.log_max_mb is None else int(opts.log_max_mb * (1 << 20)),
            max_age_s=None if opts.log_max_age_days is None else opts.log_max_age_days * 86400,
            keep=opts.log_keep,
        )

    @contextlib.asynccontextmanager
    async def lifespan(self, _: Starlette) -> AsyncIterator[None]:
        """Start the log, the batcher and the first model load; on shutdown drain and close."""
        try:
            self.log = self._open_log()
        except LogUnavailableError as exc:  # start anyway: 503 until the log can be written
            self._log_failed(exc)
        self.batcher = MicroBatcher(
            self.metrics,
            sink=self._log_batch,
            max_batch=self.options.max_batch,
            max_wait_s=self.options.max_wait_ms / 1000,
            budget_s=self.options.budget_ms / 1000,
        )
        self.batcher.start()
        first = self._apply(*self.control.read())  # a worker started late follows the rest
        if self.options.load_first:
            await first
        else:
            self._spawn(first)
        if self.control.shared:
            self._spawn(self._follow())
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        try:
            yield
        finally:
            await self.batcher.drain(self.options.drain_s)
            for task in self._tasks:
                task.cancel()
            if self.log is not None:
                self.log.close()
            self.slot.close()

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)  # keep a reference until it is done
        task.add_done_callback(self._tasks.discard)

    def _log_batch(self, served: ServedModel, done: list[tuple[Any, np.ndarray]]) -> None:
        """Batch sink, on the predictor thread: commit the batch's log rows before any answer."""
        if self.log is None:
            raise LogUnavailableError(self.log_error or "the prediction log is not open")
        now, clock, version = time.time(), time.perf_counter(), served.version
        self.log.write(
            [
                (rid, now, version, orjson.dumps(record).decode(), output, (clock - started) * 1000)
                for (ids, records, started), outputs in done
                for rid, record, output in zip(ids, records, outputs.tolist(), strict=True)
            ]
        )

    def _log_failed(self, exc: Exception) -> None:
        """The log cannot be written: refuse predictions and probe it until it can."""
        self.metrics.log_failures.inc()
        if self.log_error is None:
            log.error("prediction log %s cannot be written: %s; answering 503 until it can",
                      escape(self.log_path()), escape(exc))  # fmt: skip
            self._spawn(self._recover_log())
        self.log_error = str(exc)

    async def _recover_log(self) -> None:
        while True:
            await asyncio.sleep(_LOG_PROBE_S)
            try:
                if self.log is None:
                    self.log = await asyncio.to_thread(self._open_log)
                else:
                    await asyncio.to_thread(self.log.probe)
            except LogUnavailableError as exc:
                self.log_error = str(exc)
                continue
            log.warning("prediction log %s can be written again", escape(self.log_path()))
            self.log_error = None
            return

    def _on_sighup(self) -> None:
        self._spawn(self._reload_logged())

    async def _reload_logged(self) -> None:
        with contextlib.suppress(OpsnbError):  # refused: logged, the old model keeps serving
            await self.request_reload(None)

    async def _follow(self) -> None:
        """Worker side of :mod:`opsnb.serving.control`: load what was published."""
        while True:
            await asyncio.sleep(POLL_S)
            if self.control.changed():
                seq, version = self.control.read()
                if seq != self._applied:
                    with contextlib.suppress(OpsnbError):
                        await self._apply(seq, version)

    async def _apply(self, seq: int, version: str | None) -> str:
        """Load ``version`` as instruction ``seq``; keep the current model if it fails."""
        self._applied = seq
        try:
            served = await self.slot.reload(version)
        except OpsnbError as exc:
            self.metrics.reloads.labels("refused").inc()
            self.reload_error = str(exc)
            raise
        # A served process allocates per request; the collector's full passes over every
        # object loaded so far (libraries, the model) showed up as p99 spikes. Those objects
        # live for the process, so move them out of the collector's sight.
        gc.freeze()
        self.reload_error = None
        self.metrics.reloads.labels("loaded").inc()
        self.metrics.model.clear()
        self.metrics.model.labels(served.version).set(1)
        return served.version

    async def request_reload(self, version: str | None) -> str:
        """Verify ``version`` here, publish it to every worker, load it; return its version.

        ``None`` is the configured version.

        Raises:
            OpsnbError: refused (nothing was published) or this process could not load it.
        """
        try:
            await asyncio.to_thread(self.slot.check, version)
        except OpsnbError as exc:
            self.metrics.reloads.labels("refused").inc()
            log.error("refused model version %s: %s", escape(version or "(configured)", 80),
                      escape(exc, 400))  # fmt: skip
            raise
        return await self._apply(self.control.publish(version), version)

    async def reload(self, version: str | None = None) -> str:
        """Reload ``version`` of the store (default: the configured one); see request_reload."""
        return await self.request_reload(version)

    @staticmethod
    async def _body(request: Request) -> bytes:
        # The front door checked the headers and read the whole body within its limits.
        return await request.body()

    async def predict(self, request: Request) -> Response:
        """``POST /predict``: one record or a list of records -> one prediction each."""
        started = request.scope.get("opsnb.started", time.perf_counter())
        served, batcher = self.slot.current, self.batcher
        try:
            if served is None or batcher is None:
                raise RequestError(
                    "the model is not loaded yet; retry shortly", status=503, kind="not_ready"
                )
            if self.log_error is not None:
                raise RequestError(
                    f"the prediction log cannot be written ({self.log_error}); nothing is "
                    "answered that is not logged: retry shortly",
                    status=503,
                    kind="log_unavailable",
                )
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
            self.metrics.errors.labels(_kind(exc)).inc()
            answer = _refusal(exc)
        except LogUnavailableError as exc:
            self._log_failed(exc)
            self.metrics.errors.labels("log_unavailable").inc()
            answer = _refusal(
                RequestError(
                    f"the prediction log cannot be written ({exc}); the prediction was not "
                    "answered: retry shortly",
                    status=503,
                    kind="log_unavailable",
                )
            )
        except Exception:
            log.exception("prediction failed")
            self.metrics.errors.labels("internal").inc()
            answer = _json(
                {"error": "internal", "message": "prediction failed; see the server log"}, 500
            )
        self._observe("/predict", answer.status_code, started)
        return answer

    async def feedback(self, request: Request) -> Response:
        """``POST /feedback``: ``{"request_id": ..., "label": ...}`` stores a ground-truth label.

        The label must suit the task (0 or 1 for a binary model, a finite number for
        regression); the first label of a request stands unless the admin token is presented.
        """
        started = time.perf_counter()
        try:
            if not self.access.may_give_feedback(request.scope):
                raise RequestError(
                    "feedback needs the header 'Authorization: Bearer <feedback token>'",
                    status=401,
                    kind="unauthorized",
                )
            served = self.slot.current
            if self.log is None or served is None:
                raise RequestError(
                    "the service is starting; retry shortly", status=503, kind="not_ready"
                )
            task = served.model.schema.task
            rid, label = parse_feedback(await self._body(request), task=task)
            admin = self.access.is_admin(request.scope)
            try:
                outcome = await asyncio.to_thread(self.log.feedback, rid, label, replace=admin)
            except LogUnavailableError as exc:
                self._log_failed(exc)
                raise RequestError(
                    f"the prediction log cannot be written ({exc}); the label was not stored: "
                    "retry shortly",
                    status=503,
                    kind="log_unavailable",
                ) from exc
            if outcome == "unknown":
                raise RequestError(
                    f"request_id {rid[:60]!r} is not in the prediction log; send the id a "
                    "/predict answer returned",
                    status=404,
                    field="request_id",
                )
            if outcome == "exists":
                raise RequestError(
                    f"request_id {rid[:60]!r} already has a label; the first label stands "
                    "(an administrator corrects one with the admin token)",
                    status=409,
                    field="request_id",
                    kind="label_exists",
                )
            answer = _json({"stored": True, "request_id": rid})
        except RequestError as exc:
            self.metrics.errors.labels(_kind(exc)).inc()
            answer = _refusal(exc)
        self._observe("/feedback", answer.status_code, started)
        return answer

    async def admin_reload(self, request: Request) -> Response:
        """``POST /admin/reload``: load a version of the model store on every worker.

        Body ``{"version": "<name in the store>"}``, or empty for the configured version.
        Needs the admin token (see :mod:`opsnb.serving.admin`); a refused bundle is answered
        409 and the current model keeps serving.
        """
        refusal = self.access.admin_refusal(request.scope)
        if refusal is not None:
            status, error, message = refusal
            headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
            return _json({"error": error, "message": message}, status, headers)
        body = await self._body(request)
        try:
            data = orjson.loads(body) if body.strip() else {}
        except orjson.JSONDecodeError:
            data = None
        version = data.get("version") if type(data) is dict else None
        if (
            type(data) is not dict
            or set(data) - {"version"}
            or (version is not None and type(version) is not str)
        ):
            return _json(
                {
                    "error": "syntax",
                    "message": 'expected {"version": "<name in the model store>"} or an '
                    "empty body (the configured version); reloads name versions, not paths",
                },
                400,
            )
        try:
            loaded = await self.request_reload(version)
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
        return _json({"model_version": loaded, "version": version or self.slot.store.default})

    async def health(self, _: Request) -> Response:
        """``GET /health``: the process is alive."""
        return _json({"alive": True})

    async def ready(self, _: Request) -> Response:
        """``GET /ready``: 200 once a verified model is loaded and warm, else 503."""
        served = self.slot.current
        if served is None:
            reason = self.slot.last_error or "the model is loading"
            return _json({"ready": False, "reason": reason}, 503)
        if self.log_error is not None:
            reason = f"the prediction log cannot be written: {self.log_error}"
            return _json({"ready": False, "reason": reason, "model_version": served.version}, 503)
        return _json(
            {
                "ready": True,
                "model_version": served.version,
                "bundle": str(served.bundle),
                "reload_error": self.reload_error,
            }
        )

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
        """Count a ``/predict`` refused for overload (answered by the front door)."""
        self.metrics.errors.labels("overload").inc()
        self._observe("/predict", 503, started)

    def refused_at_door(
        self, path: str, exc: RequestError, started: float
    ) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        """Count a request the front door refused; the body and headers of its answer."""
        self.metrics.errors.labels(_kind(exc)).inc()
        if path in _ENDPOINTS:
            self._observe(path, exc.status, started)
        body = _refusal_body(exc)
        headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(body)).encode())]  # fmt: skip
        return body, headers

    def disconnected(self, path: str) -> None:
        """Count a client that went away before its body was complete (not an error of ours)."""
        self.metrics.disconnects.labels(path if path in _ENDPOINTS else "other").inc()

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


_ENDPOINTS = ("/predict", "/feedback", "/admin/reload")


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
    return FrontDoor(
        app,
        batcher=lambda: service.batcher,
        refuse=service.refused_at_door,
        disconnected=service.disconnected,
        overloaded=service.refused,
        max_body=options.max_body,
        body_timeout_s=options.body_timeout_s,
        budget_ms=options.budget_ms,
    )

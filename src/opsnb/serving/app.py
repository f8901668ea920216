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
import logging
import time
import uuid
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from opsnb.bundle import VerifiedBundle
from opsnb.errors import OpsnbError, RequestError
from opsnb.serving import openapi
from opsnb.serving.contract import parse_feedback
from opsnb.serving.frontdoor import FrontDoor
from opsnb.serving.options import ServeOptions
from opsnb.serving.predlog import LogUnavailableError
from opsnb.serving.runtime import ServiceState, _kind, _refusal_body

log = logging.getLogger(__name__)

__all__ = ["ServeOptions", "Service", "create_app"]


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status, headers, media_type="application/json")


def _refusal(exc: RequestError) -> Response:
    headers = {"Retry-After": "1"} if exc.status == 503 else None
    return Response(_refusal_body(exc), exc.status, headers, media_type="application/json")


class Service(ServiceState):
    """The routes over the service's state (:class:`~opsnb.serving.runtime.ServiceState`)."""

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

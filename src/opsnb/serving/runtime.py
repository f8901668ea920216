"""The service's state under the routes: the served model, its reload, the prediction log, counting.

:class:`ServiceState` owns one app's model slot, micro-batcher, prediction log and access rules;
it starts and drains them (``lifespan``), follows the model version every worker is told to serve
(:mod:`opsnb.serving.control`), keeps answering 503 while the log cannot be written and probes it
until it can, and counts what the front door refused. The routes are :mod:`opsnb.serving.app`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from starlette.applications import Starlette

from opsnb import config, signing
from opsnb.bundle import VerifiedBundle
from opsnb.errors import OpsnbError, RequestError
from opsnb.serving.admin import LOOPBACK_NAMES, Access
from opsnb.serving.batching import MicroBatcher
from opsnb.serving.contract import error_kind
from opsnb.serving.control import POLL_S, Control
from opsnb.serving.metrics import ServiceMetrics
from opsnb.serving.options import ServeOptions
from opsnb.serving.predlog import LogUnavailableError, PredictionLog
from opsnb.serving.reload import ModelSlot, ServedModel
from opsnb.serving.store import ModelStore, Trust, escape

log = logging.getLogger(__name__)

_LOG_PROBE_S = 0.5


def _kind(exc: RequestError) -> str:
    return exc.kind or error_kind(exc.status)


def _refusal_body(exc: RequestError) -> bytes:
    return orjson.dumps(
        {"error": _kind(exc), "message": str(exc), "record": exc.record, "field": exc.field}
    )


_ENDPOINTS = ("/predict", "/feedback", "/admin/reload")


class ServiceState:
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

    def _open_log(self) -> PredictionLog:
        opts = self.options
        return PredictionLog(
            self.log_path(),
            synchronous=opts.log_sync,
            max_bytes=None if opts.log_max_mb is None else int(opts.log_max_mb * (1 << 20)),
            max_age_s=None if opts.log_max_age_days is None else opts.log_max_age_days * 86400,
            keep=opts.log_keep,
        )

    def log_path(self) -> Path:
        """Where predictions are logged."""
        if self.options.log_path:
            return Path(self.options.log_path)
        return config.prediction_log_path(self.options.bundle)

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

"""Dynamic micro-batching: concurrent requests share one call of the compiled predictor.

Requests are validated before they join (so a bad one never fails its batch-mates) and wait in
one queue. A single consumer takes what is queued, up to ``max_batch`` rows; it waits up to
``max_wait_s`` for more only while other requests are on their way in (admitted, body still
being read), so an idle server answers one request at once and a busy one forms large batches.
The predictor runs on one worker thread off the event loop (ctypes releases the GIL, so the
loop keeps accepting while the trees are walked).

Admission is bounded by time, not only by a count. A request is met by admission only once its
body is complete (:mod:`opsnb.serving.frontdoor`), and is refused (:meth:`MicroBatcher.admit`)
while the server is :meth:`~MicroBatcher.overloaded` -- the event loop itself runs late by more
than a quarter of the budget (measured by a ticker: that lag is waiting every request does
before any handler sees it, parsing included), or the oldest queued request has waited half the
budget -- or while as many requests are in flight as the server answers within half the budget
at its peak measured rate (Little's law: in flight = rate x wait; at least ``min_inflight``).
The other half of the budget is headroom for what happens outside the handler's sight (the
socket, the loop's backlog). Under overload the admitted requests are answered within the
budget and the others get a cheap 503. A budget of 0 refuses every prediction (a drain switch).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from opsnb.errors import OpsnbError
from opsnb.serving.metrics import ServiceMetrics
from opsnb.serving.reload import ServedModel

log = logging.getLogger(__name__)

_RATE_WINDOW_S = 0.1
_RATE_DECAY = 0.98  # per window: the peak rate forgets slowly when the load falls
_TICK_S = 0.005  # the loop-lag ticker's period
_ALWAYS_ADMIT = 8  # in flight whatever the lag or queue: so few cannot overload the server,
# and on a machine shared with other work its late timers must not refuse them
_LAG_FLOOR_S = 0.01  # a busy machine's timers run this late anyway: no reason to refuse
_LAG_DECAY = 0.9  # per tick: the lag estimate follows a rise at once and a fall within ~50 ms


BatchSink = Callable[[ServedModel, list[tuple[Any, np.ndarray]]], None]
"""Called on the predictor thread after each call with every request's payload and outputs.

The requests are answered only once it returns: the app commits the prediction log here, in
the same thread hop as the prediction.
"""


@dataclass
class _Job:
    rows: np.ndarray
    served: ServedModel
    payload: Any
    future: asyncio.Future[np.ndarray]
    enqueued: float


class MicroBatcher:
    """Gathers validated rows from concurrent requests into predictor calls.

    Args:
        metrics: where batch sizes and queue depth are recorded.
        max_batch: most rows in one predictor call.
        max_wait_s: longest a request waits for batch-mates.
        budget_s: the latency budget; past it new requests are refused (see module docstring).
        min_inflight: requests always admitted while fewer are in flight (and none waits long).
        sink: see :data:`BatchSink`.
    """

    def __init__(
        self,
        metrics: ServiceMetrics,
        *,
        max_batch: int = 256,
        max_wait_s: float = 0.002,
        budget_s: float = 0.25,
        min_inflight: int = 32,
        sink: BatchSink | None = None,
    ) -> None:
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.budget_s = budget_s
        self.arriving = 0
        self.inflight = 0
        self.min_inflight = min_inflight
        self._peak_rate = 0.0
        self.loop_lag_s = 0.0
        self._done = 0
        self._window = time.perf_counter()
        self._metrics = metrics
        self._sink = sink
        self._queue: deque[_Job] = deque()
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="opsnb-predict")
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start the consumer and the loop-lag ticker on the running loop."""
        self._tasks = [
            asyncio.create_task(self._consume(), name="opsnb-batcher"),
            asyncio.create_task(self._tick(), name="opsnb-loop-lag"),
        ]

    def overloaded(self) -> bool:
        """True while new requests would break the budget: refuse them before reading more."""
        if self.budget_s <= 0:
            return True
        if self.inflight < _ALWAYS_ADMIT:  # progress even on a starved machine
            return False
        if self.loop_lag_s > max(self.budget_s / 4, _LAG_FLOOR_S):
            return True
        return bool(self._queue) and (
            time.perf_counter() - self._queue[0].enqueued > self.budget_s / 2
        )

    def admit(self, body_bytes: int = 0) -> bool:
        """Count one more request in flight, or return False when it would break the budget.

        ``body_bytes`` is the request's size: a large body costs parsing time on the loop, so
        it counts as that many typical requests (one per 4 KiB).
        """
        if self.overloaded():
            return False
        weight = 1 + body_bytes // 4096
        if self.inflight + weight > max(self.min_inflight, self._peak_rate * self.budget_s / 2):
            return False
        self.inflight += 1
        return True

    def release(self) -> None:
        """An admitted request was answered: update the in-flight count and the peak rate."""
        self.inflight -= 1
        self._done += 1
        now = time.perf_counter()
        if now - self._window >= _RATE_WINDOW_S:
            rate = self._done / (now - self._window)
            self._peak_rate = max(rate, self._peak_rate * _RATE_DECAY)
            self._done, self._window = 0, now

    async def predict(
        self, rows: np.ndarray, served: ServedModel, payload: Any = None
    ) -> np.ndarray:
        """Queue validated ``rows`` for ``served``'s model; return their outputs.

        ``payload`` is handed to the sink with the outputs (the app's request ids and records).
        """
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._queue.append(_Job(rows, served, payload, future, time.perf_counter()))
        self._metrics.queue_depth.set(len(self._queue))
        self._wakeup.set()
        return await future

    async def _tick(self) -> None:
        """Measure how late the event loop runs a timer: waiting every request does unseen."""
        while True:
            started = time.perf_counter()
            await asyncio.sleep(_TICK_S)
            lag = max(0.0, time.perf_counter() - started - _TICK_S)
            self.loop_lag_s = max(lag, self.loop_lag_s * _LAG_DECAY)
            self._metrics.loop_lag.set(self.loop_lag_s)

    async def _consume(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            batch = await self._gather()
            self._metrics.queue_depth.set(len(self._queue))
            # Jobs validated against a model that was replaced since go to that model.
            groups: dict[int, list[_Job]] = {}
            for job in batch:
                groups.setdefault(id(job.served), []).append(job)
            for jobs in groups.values():
                await self._run(loop, jobs)

    async def _gather(self) -> list[_Job]:
        first = self._queue.popleft()
        batch, rows = [first], len(first.rows)
        deadline = first.enqueued + self.max_wait_s
        while rows < self.max_batch:
            if self._queue:
                if rows + len(self._queue[0].rows) > self.max_batch:
                    break
                job = self._queue.popleft()
                batch.append(job)
                rows += len(job.rows)
            elif self.arriving > 0 and time.perf_counter() < deadline:
                await asyncio.sleep(0)  # let the requests being read reach the queue
            else:
                break
        return batch

    def _call(self, jobs: list[_Job]) -> tuple[np.ndarray, float]:
        """On the predictor thread: one predictor call for ``jobs``, then the sink."""
        rows = jobs[0].rows if len(jobs) == 1 else np.concatenate([j.rows for j in jobs])
        started = time.perf_counter()
        outputs = jobs[0].served.model.predict(rows)
        elapsed = time.perf_counter() - started
        if self._sink is not None:
            bounds = np.cumsum([0] + [len(j.rows) for j in jobs])
            self._sink(
                jobs[0].served,
                [
                    (j.payload, outputs[a:b])
                    for j, a, b in zip(jobs, bounds, bounds[1:], strict=False)
                ],
            )
        return outputs, elapsed

    async def _run(self, loop: asyncio.AbstractEventLoop, jobs: list[_Job]) -> None:
        try:
            outputs, elapsed = await loop.run_in_executor(self._executor, self._call, jobs)
        except OpsnbError as exc:  # refused (e.g. the log cannot be written): no traceback
            log.warning("%d requests not answered: %s", len(jobs), exc)
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        except Exception as exc:  # the library or the sink failed: every job learns why
            log.exception("predictor call failed for %d requests", len(jobs))
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        self._metrics.predict_seconds.observe(elapsed)
        self._metrics.batch_rows.observe(len(outputs))
        self._metrics.batch_requests.observe(len(jobs))
        start = 0
        for job in jobs:
            end = start + len(job.rows)
            if not job.future.done():
                job.future.set_result(outputs[start:end])
            start = end

    async def drain(self, timeout_s: float) -> None:
        """Wait until the queue is empty (at most ``timeout_s``), then stop the consumer."""
        end = time.perf_counter() + timeout_s
        while self._queue and time.perf_counter() < end:
            await asyncio.sleep(0.005)
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._executor.shutdown(wait=True)

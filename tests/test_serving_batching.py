import asyncio
import time

import numpy as np
import pytest

from opsnb.serving.batching import MicroBatcher
from opsnb.serving.metrics import ServiceMetrics
from opsnb.serving.reload import prepare


@pytest.fixture(scope="module")
def served(serving_run):
    model = prepare(serving_run, warm_rows=8)
    yield model
    model.model.close()


def rows_of(served, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((n, served.model.n_features), dtype=np.float32)
    for j, f in enumerate(served.model.schema.features):
        if f.is_categorical:
            out[:, j] = rng.integers(0, len(f.categories), n)
        else:
            out[:, j] = rng.uniform(f.min, f.max, n)
    return out


def histogram(metric) -> tuple[float, float]:
    samples = {s.name: s.value for s in metric.collect()[0].samples}
    name = metric._name
    return samples[f"{name}_count"], samples[f"{name}_sum"]


def test_concurrent_requests_share_predictor_calls_and_get_their_own_outputs(served):
    metrics = ServiceMetrics()
    data = rows_of(served, 200)

    async def main():
        batcher = MicroBatcher(metrics, max_batch=64, max_wait_s=0.002)
        batcher.start()
        try:
            return await asyncio.gather(
                *(batcher.predict(data[i : i + 1], served) for i in range(200))
            )
        finally:
            await batcher.drain(5)

    outputs = np.concatenate(asyncio.run(main()))
    np.testing.assert_array_equal(outputs, served.model.predict(data))
    calls, requests = histogram(metrics.batch_requests)
    assert requests == 200
    assert calls < 200  # batches of more than one request formed
    assert histogram(metrics.batch_rows)[1] == 200


def test_a_lone_request_is_a_batch_of_one(served):
    metrics = ServiceMetrics()

    async def main():
        batcher = MicroBatcher(metrics, max_wait_s=10.0)
        batcher.start()
        try:
            return await asyncio.wait_for(batcher.predict(rows_of(served, 3), served), 5)
        finally:
            await batcher.drain(5)

    assert asyncio.run(main()).shape == (3,)  # answered without waiting out max_wait_s
    assert histogram(metrics.batch_requests) == (1.0, 1.0)


def test_batches_never_exceed_max_batch_rows(served):
    metrics = ServiceMetrics()
    data = rows_of(served, 50, seed=1)

    async def main():
        batcher = MicroBatcher(metrics, max_batch=8)
        batcher.start()
        try:
            return await asyncio.gather(
                *(batcher.predict(data[i : i + 5], served) for i in range(0, 50, 5))
            )
        finally:
            await batcher.drain(5)

    np.testing.assert_array_equal(np.concatenate(asyncio.run(main())), served.model.predict(data))
    buckets = {
        s.labels.get("le"): s.value
        for s in metrics.batch_rows.collect()[0].samples
        if s.name.endswith("_bucket")
    }
    assert buckets["8.0"] == buckets["+Inf"] == 10


def test_a_request_waiting_past_the_budget_stops_admission(served):
    async def main():
        batcher = MicroBatcher(ServiceMetrics(), budget_s=0.01)  # consumer not started
        before = all(batcher.admit() for _ in range(8))  # eight are always admitted
        waiting = asyncio.ensure_future(batcher.predict(rows_of(served, 1), served))
        await asyncio.sleep(0.05)
        after = batcher.admit()
        waiting.cancel()
        return before, after

    assert asyncio.run(main()) == (True, False)


def test_a_late_event_loop_stops_admission_and_big_bodies_weigh_more():
    batcher = MicroBatcher(ServiceMetrics(), budget_s=0.2, min_inflight=10)
    assert all(batcher.admit() for _ in range(8))
    batcher.loop_lag_s = 0.06  # past budget/4: requests wait unseen before any handler
    assert batcher.overloaded()
    assert not batcher.admit()
    batcher.loop_lag_s = 0.0
    assert not batcher.admit(body_bytes=3 * 4096)  # counts as 4 requests: 8 + 4 > 10
    assert batcher.admit(body_bytes=100)


def test_the_loop_lag_ticker_measures_a_blocked_loop():
    async def main():
        batcher = MicroBatcher(ServiceMetrics(), budget_s=0.2)
        batcher.start()
        await asyncio.sleep(0.02)
        time.sleep(0.08)  # the loop is blocked, as by a long parse
        await asyncio.sleep(0.01)
        lag = batcher.loop_lag_s
        await batcher.drain(0.1)
        return lag

    assert asyncio.run(main()) >= 0.05


def test_admission_bounds_the_requests_in_flight():
    batcher = MicroBatcher(ServiceMetrics(), budget_s=10.0, min_inflight=2)
    assert [batcher.admit(), batcher.admit(), batcher.admit()] == [True, True, False]
    batcher.release()
    assert batcher.admit()
    assert batcher.inflight == 2


def test_admission_follows_the_measured_rate():
    batcher = MicroBatcher(ServiceMetrics(), budget_s=0.5, min_inflight=1)
    for _ in range(200):  # 200 answers spread over a little more than one rate window
        assert batcher.admit()
        batcher.release()
    time.sleep(0.11)
    batcher.admit()
    batcher.release()
    admitted = 0
    while batcher.admit():
        admitted += 1
    assert 1 < admitted <= 201 * 0.5 / 0.1  # at most peak rate x budget in flight


def test_a_zero_budget_refuses_everything():
    assert not MicroBatcher(ServiceMetrics(), budget_s=0.0).admit()

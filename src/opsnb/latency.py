"""Latency per call by batch size: the percentiles a latency budget is judged on.

``opsnb bench`` reports medians per row, which answer "how fast"; a budget such as "p99 under
50 ms" needs the tail of single calls. :func:`latency_by_batch` times many calls of a predict
function at each batch size (different rows each call, after a warm-up call) and reports p50,
p99 and the worst call in milliseconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

BATCH_SIZES = (1, 8, 64, 512, 4096)


def latency_by_batch(
    predict: Callable[[np.ndarray], Any],
    pool: np.ndarray,
    *,
    batch_sizes: Sequence[int] = BATCH_SIZES,
    calls: int = 300,
    budget_s: float = 0.5,
) -> list[dict[str, Any]]:
    """Time ``predict`` on batches drawn from ``pool``; one row of percentiles per batch size.

    Each size gets up to ``calls`` timed calls within ``budget_s`` seconds (at least 20). A pool
    smaller than the largest batch is repeated to fill it (rows are rows to a tree). Rows:
    ``batch``, ``calls``, ``p50_ms``, ``p99_ms``, ``max_ms``, ``rows_per_s``.
    """
    if len(pool) == 0:
        raise ValueError("latency_by_batch needs at least one row in pool")
    largest = max(batch_sizes)
    if len(pool) < largest:
        pool = np.resize(pool, (largest, *pool.shape[1:]))
    rows = []
    for batch in batch_sizes:
        starts = np.linspace(0, len(pool) - batch, min(64, len(pool) - batch + 1)).astype(int)
        batches = [np.ascontiguousarray(pool[s : s + batch]) for s in starts]
        predict(batches[0])  # warm-up: first-touch costs are not a call's latency
        times: list[float] = []
        start = time.perf_counter()
        while len(times) < 20 or (len(times) < calls and time.perf_counter() - start < budget_s):
            x = batches[len(times) % len(batches)]
            t0 = time.perf_counter()
            predict(x)
            times.append(time.perf_counter() - t0)
        ms = np.asarray(times) * 1000.0
        p50 = float(np.percentile(ms, 50))
        rows.append(
            {
                "batch": int(batch),
                "calls": len(times),
                "p50_ms": round(p50, 4),
                "p99_ms": round(float(np.percentile(ms, 99)), 4),
                "max_ms": round(float(ms.max()), 4),
                "rows_per_s": round(batch / (p50 / 1000.0)) if p50 > 0 else None,
            }
        )
    return rows


def verdict(
    rows: list[dict[str, Any]], parity: list[dict[str, Any]], *, budget_ms: float, tolerance: float
) -> dict[str, Any]:
    """The operationalize stage's verdict: parity within tolerance, one-row p99 within budget."""
    worst = max(float(r["max_abs_diff"]) for r in parity)
    agree = all(bool(r["passed"]) for r in parity)
    references = max(len({r["reference"] for r in parity}), 1)
    compared = sum(int(r["rows"]) for r in parity) // references
    single = next((r for r in rows if r["batch"] == 1), rows[0])
    fast = single["p99_ms"] <= budget_ms
    passed = agree and fast
    text = (
        f"{'PASS' if passed else 'FAIL'}: compiled model agrees with XGBoost and Treelite within "
        f"{tolerance:g} (max diff {worst:.1e}) on {compared:,} rows; p99 "
        f"{single['p99_ms']:.3f} ms per {single['batch']}-row call "
        f"{'<=' if fast else '>'} budget {budget_ms:g} ms"
    )
    return {"text": text, "passed": passed}

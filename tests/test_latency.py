"""Latency per call by batch size, and the operationalize verdict built on it."""

import numpy as np

from opsnb import latency


def test_percentiles_per_batch_size_from_a_small_pool() -> None:
    pool = np.arange(30, dtype=np.float32).reshape(10, 3)
    seen: list[int] = []
    rows = latency.latency_by_batch(lambda x: seen.append(len(x)), pool, batch_sizes=(1, 64),
                                    calls=50, budget_s=0.2)  # fmt: skip
    assert [r["batch"] for r in rows] == [1, 64]  # 64 > 10 rows: the pool is repeated
    assert set(seen) == {1, 64}
    for row in rows:
        assert 20 <= row["calls"] <= 50
        assert 0 < row["p50_ms"] <= row["p99_ms"] <= row["max_ms"]


def test_the_verdict_holds_parity_and_the_one_row_p99_to_their_limits() -> None:
    parity = [
        {"reference": "xgboost", "rows": 100, "max_abs_diff": 2e-7, "passed": True},
        {"reference": "treelite.gtil", "rows": 100, "max_abs_diff": 1e-7, "passed": True},
    ]
    rows = [{"batch": 1, "p99_ms": 0.2}, {"batch": 64, "p99_ms": 80.0}]
    ok = latency.verdict(rows, parity, budget_ms=50, tolerance=1e-5)
    assert ok["passed"] is True
    assert ok["text"] == (
        "PASS: compiled model agrees with XGBoost and Treelite within 1e-05 (max diff 2.0e-07) "
        "on 100 rows; p99 0.200 ms per 1-row call <= budget 50 ms"
    )
    slow = latency.verdict(rows, parity, budget_ms=0.1, tolerance=1e-5)
    assert slow["passed"] is False
    assert "p99 0.200 ms per 1-row call > budget 0.1 ms" in slow["text"]
    parity[0]["passed"] = False
    assert latency.verdict(rows, parity, budget_ms=50, tolerance=1e-5)["passed"] is False

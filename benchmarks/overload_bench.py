"""Overload: does admission hold the latency budget when offered more than the server can do?

Serves a run's bundle with ``opsnb serve`` on 127.0.0.1, measures its capacity (closed loop,
concurrency 64), then offers an open-loop load at each factor of that capacity (default 2x and
4x). Per level it prints the offered and the achieved sending rate, the goodput (200 answers per
second, and as a share of capacity), the 200 answers that came within the budget, the
admitted requests' p50/p99 latency against the budget,
and how fast a refusal (503) came back.

    .venv/bin/python benchmarks/overload_bench.py --run runs/latest [--seconds 8] [--factors 2,4]

``--quick`` (1.5 s, 2x only) checks that it still works; its numbers mean little.

The load generator shares the machine (and its cores) with the server, as wrk would: on a
small machine it may not reach the offered rate; the achieved rate is printed beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from opsnb.bench.load import bodies_from_run, run_load
from opsnb.bench.service import free_port, started


def level(
    url: str, bodies: list[bytes], *, capacity: float, factor: float, seconds: float, budget: float
) -> dict[str, Any]:
    """One open-loop load at ``factor`` x ``capacity``; its figures."""
    rate = capacity * factor
    result = run_load(
        url, bodies, requests=int(rate * seconds), concurrency=512, duration_s=seconds, rate=rate
    )
    summary = result.summary()
    sent = summary["requests"]
    in_budget = sum(1 for s in result.latencies_s if s * 1000 <= budget)
    return {
        "factor": factor,
        "offered_rps": round(rate, 1),
        "sent_rps": round(sent / max(result.wall_s, 1e-9), 1),
        "goodput_rps": summary["throughput_rps"],
        "goodput_share": round(summary["throughput_rps"] / max(capacity, 1e-9), 3),
        "within_budget_rps": round(in_budget / max(result.wall_s, 1e-9), 1),
        "admitted_p50_ms": summary["p50_ms"],
        "admitted_p99_ms": summary["p99_ms"],
        "admitted_p99_within_budget": summary["p99_ms"] <= budget,
        "refused_p50_ms": summary["refused_p50_ms"],
        "refused_p99_ms": summary["refused_p99_ms"],
        "statuses": summary["statuses"],
        "connection_failures": summary["connection_failures"],
        "unsent": summary["unsent"],
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print one line per level; write JSON to ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default="runs/latest", help="a run through operationalize")
    parser.add_argument("--seconds", type=float, default=8.0, help="per load level")
    parser.add_argument("--factors", default="2,4", help="multiples of capacity to offer")
    parser.add_argument("--budget-ms", type=float, default=250.0, help="the server's budget")
    parser.add_argument("--out", default="overload_bench.json")
    parser.add_argument("--quick", action="store_true", help="1.5 s per level, 2x only")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.factors = 1.5, "2"

    run = Path(args.run).resolve()
    bodies = bodies_from_run(run)
    port = free_port()
    url = f"http://127.0.0.1:{port}/predict"
    rows: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        log = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="opsnb-overload-")))
        log /= "log.sqlite"
        command = [sys.executable, "-m", "opsnb.cli", "serve", str(run), "--port", str(port),
                   "--log", str(log), "--budget-ms", str(args.budget_ms)]  # fmt: skip
        stack.enter_context(started(command, port, bodies[0], dict(os.environ)))
        run_load(url, bodies, requests=300, concurrency=8, duration_s=10)  # warm-up
        closed = run_load(url, bodies, requests=10**6, concurrency=64, duration_s=args.seconds)
        capacity = closed.summary()["throughput_rps"]
        shown = closed.summary()
        print(f"capacity (closed loop, c=64): {capacity} ok/s, p99 {shown['p99_ms']} ms, "
              f"statuses {shown['statuses']}")  # fmt: skip
        for factor in (float(f) for f in args.factors.split(",")):
            row = level(url, bodies, capacity=capacity, factor=factor, seconds=args.seconds,
                        budget=args.budget_ms)  # fmt: skip
            rows.append(row)
            print(
                f"{factor:g}x: offered {row['offered_rps']}/s (sent {row['sent_rps']}/s), "
                f"goodput {row['goodput_rps']}/s = {row['goodput_share']:.0%} of capacity "
                f"({row['within_budget_rps']}/s within budget), "
                f"admitted p50 {row['admitted_p50_ms']} ms p99 {row['admitted_p99_ms']} ms "
                f"(budget {args.budget_ms:g}), 503 p50 {row['refused_p50_ms']} ms "
                f"p99 {row['refused_p99_ms']} ms, statuses {row['statuses']}, "
                f"failures {row['connection_failures']}, unsent {row['unsent']}",
                flush=True,
            )
    Path(args.out).write_text(json.dumps({"capacity_rps": capacity, "levels": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

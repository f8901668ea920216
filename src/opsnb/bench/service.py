"""The service benchmark: opsnb's prediction service against the servers users write by hand.

One run, one machine, one model: a forest (default 300 trees, depth 6) trained on the run's train
split and compiled into a bundle. Each server runs alone under uvicorn on 127.0.0.1 and gets
single-record JSON bodies from the run's test split at concurrency 1, 8 and 64 (bounded in
requests and time), after a warm-up. Then opsnb's service alone: a sustained open-loop load at
80 % of the capacity just measured, and an overload at 3x that capacity.

    .venv/bin/pip install -e '.[bench]'          # FastAPI, for the hand-written baseline
    .venv/bin/python -m opsnb.bench.service --run runs/latest [--seconds 5] [--sustain 60]

``--quick`` (a small forest, a fraction of a second per load) checks that the whole benchmark
still works; its numbers mean little. The load generator shares the machine (and its cores) with
the server, as wrk would.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import xgboost as xgb

from opsnb import config
from opsnb.bench.load import bodies_from_run, run_load
from opsnb.compiler import compile_bundle
from opsnb.schema import Schema, target_vector, to_matrix
from opsnb.training import OBJECTIVES

CONCURRENCY = (1, 8, 64)


@dataclass(frozen=True)
class Plan:
    """How long each part of the benchmark runs."""

    trees: int = 300
    depth: int = 6
    seconds: float = 5.0
    sustain_s: float = 60.0
    overload_s: float = 10.0
    warmup_requests: int = 300


QUICK = Plan(trees=20, depth=3, seconds=0.3, sustain_s=0.5, overload_s=0.5, warmup_requests=30)


def free_port() -> int:
    """A port free on 127.0.0.1 now (for servers that cannot report the one they bound)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def build_model(run: Path, folder: Path, *, trees: int, depth: int) -> tuple[Path, Path]:
    """Train a forest on the run's train split and compile it; return (model file, bundle).

    The model is trained on plain matrices (no feature names), as the hand-written servers
    score it; the test split is the parity sample the compiled library is held to.
    """
    schema_path = run / "bundle" / "schema.json"
    schema = Schema.load(schema_path)
    train = pd.read_parquet(run / "data" / "train.parquet")
    test = pd.read_parquet(run / "data" / "test.parquet")
    data = xgb.DMatrix(to_matrix(train, schema), label=target_vector(train, schema))
    params = {"objective": OBJECTIVES[schema.task], "max_depth": depth, "eta": 0.05}
    booster = xgb.train({**params, "nthread": 2}, data, num_boost_round=trees)
    model = folder / "model.ubj"
    booster.save_model(model)
    compile_bundle(
        model,
        folder / "bundle",
        schema_path=schema_path,
        sample=to_matrix(test, schema)[:2000],
        cache_dir=folder / "compile-cache",
    )
    return model, folder / "bundle"


def _answers(port: int, body: bytes, path: str = "/predict") -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("POST", path, body, {"Content-Type": "application/json"})
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


@contextlib.contextmanager
def started(command: list[str], port: int, body: bytes, env: dict[str, str]) -> Iterator[None]:
    """Run a server command until it answers ``body`` with 200; always stop it."""
    proc = subprocess.Popen(command, env=env)
    try:
        end = time.monotonic() + 120
        while not _answers(port, body):
            if proc.poll() is not None or time.monotonic() > end:
                raise SystemExit(f"server did not start: {' '.join(command)}")
            time.sleep(0.2)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def servers(bundle: Path, log: Path, port: int, budget: list[str]) -> dict[str, list[str]]:
    """The command line of each server under test, listening on ``port``."""
    uvicorn = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    opsnb = [
        sys.executable,
        "-m",
        "opsnb.cli",
        "serve",
        str(bundle),
        "--port",
        str(port),
        "--log",
        str(log),
        *budget,
    ]
    return {
        "handwritten pandas+predict": [*uvicorn, "opsnb.bench.baselines:handwritten_pandas"],
        "handwritten numpy+inplace": [*uvicorn, "opsnb.bench.baselines:handwritten_numpy"],
        "no-op (opsnb stack)": [*uvicorn, "opsnb.bench.baselines:noop"],
        "opsnb serve": opsnb,
        "opsnb serve --workers 2": [*opsnb, "--workers", "2"],
    }


def measure(
    url: str, bodies: list[bytes], *, concurrency: int, seconds: float, rate: float | None = None
) -> dict[str, Any]:
    """One bounded load; its summary."""
    requests = int(rate * seconds) if rate else 1_000_000
    result = run_load(
        url, bodies, requests=requests, concurrency=concurrency, duration_s=seconds, rate=rate
    )
    return result.summary()


def run_benchmark(run: Path, plan: Plan, *, budget: list[str]) -> list[dict[str, Any]]:
    """Every server at every concurrency, then opsnb's sustained and overload runs."""
    bodies = bodies_from_run(run)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="opsnb-bench-") as tmp:
        model, bundle = build_model(run, Path(tmp), trees=plan.trees, depth=plan.depth)
        port = free_port()
        url = f"http://127.0.0.1:{port}/predict"
        env = {
            **os.environ,
            config.BENCH_MODEL_ENV: str(model),
            config.BENCH_SCHEMA_ENV: str(bundle / "schema.json"),
        }
        for name, command in servers(bundle, Path(tmp) / "log.sqlite", port, budget).items():
            with started(command, port, bodies[0], env):
                run_load(url, bodies, requests=plan.warmup_requests, concurrency=8, duration_s=10)
                for concurrency in CONCURRENCY:
                    row = {
                        "server": name,
                        "concurrency": concurrency,
                        **measure(url, bodies, concurrency=concurrency, seconds=plan.seconds),
                    }
                    rows.append(row)
                    print(_line(row), flush=True)
                if name == "opsnb serve":
                    rows += _open_loop(url, bodies, rows, plan)
    return rows


def _open_loop(
    url: str, bodies: list[bytes], rows: list[dict[str, Any]], plan: Plan
) -> list[dict[str, Any]]:
    """Opsnb at 80 % of its measured capacity, then at 3x: offered on a schedule."""
    capacity = next(
        r["throughput_rps"]
        for r in rows
        if r["server"] == "opsnb serve" and r["concurrency"] == CONCURRENCY[-1]
    )
    out = []
    for label, factor, seconds in (
        ("sustained 80%", 0.8, plan.sustain_s),
        ("overload 3x", 3.0, plan.overload_s),
    ):
        row = {
            "server": f"opsnb {label}",
            "concurrency": 512,
            "offered_rps": round(capacity * factor, 1),
            **measure(url, bodies, concurrency=512, seconds=seconds, rate=capacity * factor),
        }
        out.append(row)
        print(_line(row), flush=True)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the table and the goals; write JSON to ``--out``."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--run", default="runs/latest", help="a run through operationalize")
    parser.add_argument("--trees", type=int, default=Plan.trees)
    parser.add_argument("--depth", type=int, default=Plan.depth)
    parser.add_argument("--seconds", type=float, default=Plan.seconds, help="per concurrency level")
    parser.add_argument(
        "--sustain", type=float, default=Plan.sustain_s, help="sustained-load seconds"
    )
    parser.add_argument("--out", default="serve_bench.json")
    parser.add_argument("--budget-ms", type=float, help="opsnb's latency budget (default: its own)")
    parser.add_argument(
        "--quick", action="store_true", help="a small model and short loads: checks it runs"
    )
    args = parser.parse_args(argv)

    plan = (
        QUICK
        if args.quick
        else Plan(trees=args.trees, depth=args.depth, seconds=args.seconds, sustain_s=args.sustain)
    )
    budget = ["--budget-ms", str(args.budget_ms)] if args.budget_ms is not None else []
    rows = run_benchmark(Path(args.run).resolve(), plan, budget=budget)
    goals = _goals(rows)
    Path(args.out).write_text(json.dumps({"rows": rows, "goals": goals}, indent=2))
    print("\n".join(f"{k}: {v}" for k, v in goals.items()))
    return 0


def _line(row: dict[str, Any]) -> str:
    bad = {k: v for k, v in row["statuses"].items() if k != "200"}
    offered = f" offered {row['offered_rps']}/s" if "offered_rps" in row else ""
    return (
        f"{row['server']:<28} c={row['concurrency']:<4}{offered} {row['throughput_rps']:>8} ok/s"
        f"  p50 {row['p50_ms']:>7} ms  p95 {row['p95_ms']:>7} ms  p99 {row['p99_ms']:>7} ms"
        f"  other statuses {bad or '-'}  conn failures {row['connection_failures']}"
    )


def _goals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def get(server: str, concurrency: int) -> dict[str, Any]:
        return next(r for r in rows if r["server"] == server and r["concurrency"] == concurrency)

    ops, hand, noop = (
        get(s, 64) for s in ("opsnb serve", "handwritten pandas+predict", "no-op (opsnb stack)")
    )
    sustained = next(r for r in rows if r["server"] == "opsnb sustained 80%")
    overload = next(r for r in rows if r["server"] == "opsnb overload 3x")
    return {
        "c=64 opsnb / handwritten pandas (goal >= 25x)": round(
            ops["throughput_rps"] / max(hand["throughput_rps"], 1e-9), 1
        ),
        "c=64 opsnb / no-op (goal >= 0.8)": round(
            ops["throughput_rps"] / max(noop["throughput_rps"], 1e-9), 3
        ),
        "c=64 opsnb p99 ms (goal <= 50)": ops["p99_ms"],
        "c=1 opsnb p50 - no-op p50, ms (goal <= 0.5)": round(
            get("opsnb serve", 1)["p50_ms"] - get("no-op (opsnb stack)", 1)["p50_ms"], 3
        ),
        "sustained 80% non-200 answers + failures (goal 0)": sustained["requests"]
        - sustained["ok"]
        + sustained["unsent"],
        "overload 3x ok/s / capacity (goal >= 0.8)": round(
            overload["throughput_rps"] / max(ops["throughput_rps"], 1e-9), 3
        ),
    }


if __name__ == "__main__":
    sys.exit(main())

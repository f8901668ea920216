"""Benchmark opsnb's prediction service against the servers users write by hand.

One run, one machine, one model: a forest (default 300 trees, depth 6) trained on the run's train
split and compiled into a bundle. Each server runs alone under uvicorn on 127.0.0.1 and gets
single-record JSON bodies from the run's test split at concurrency 1, 8 and 64 (bounded in
requests and time), after a warm-up. Then opsnb's service alone: a sustained open-loop load at
80 % of the capacity just measured, and an overload at 3x that capacity.

    .venv/bin/pip install -e '.[bench]'          # FastAPI, for the hand-written baseline
    .venv/bin/python benchmarks/serve_bench.py --run runs/latest [--seconds 5] [--sustain 60]

The load generator shares the machine (and its cores) with the server, as wrk would.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import xgboost as xgb

from opsnb.compiler import compile_bundle
from opsnb.schema import Schema, target_vector, to_matrix
from opsnb.serving.loadtest import bodies_from_run, run_load

HERE = Path(__file__).resolve().parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def build_model(run: Path, folder: Path, *, trees: int, depth: int) -> tuple[Path, Path]:
    """Train a forest on the run's train split and compile it; return (model file, bundle)."""
    schema_path = run / "bundle" / "schema.json"
    schema = Schema.load(schema_path)
    train = pd.read_parquet(run / "data" / "train.parquet")
    data = xgb.DMatrix(to_matrix(train, schema), label=target_vector(train, schema))
    params = {"objective": "binary:logistic", "max_depth": depth, "eta": 0.05, "nthread": 2}
    booster = xgb.train(params, data, num_boost_round=trees)
    model = folder / "model.ubj"
    booster.save_model(model)
    compile_bundle(model, folder / "bundle", schema_path=schema_path)
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
    proc = subprocess.Popen(command, env=env, cwd=HERE.parent)
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
        "--app-dir",
        str(HERE),
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
        "handwritten pandas+predict": [*uvicorn, "baselines:handwritten_pandas"],
        "handwritten numpy+inplace": [*uvicorn, "baselines:handwritten_numpy"],
        "no-op (opsnb stack)": [*uvicorn, "baselines:noop"],
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


def main() -> int:
    """Run the benchmark; print the table and the goals; write JSON to ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default="runs/latest", help="a run through operationalize")
    parser.add_argument("--trees", type=int, default=300)
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=5.0, help="per concurrency level")
    parser.add_argument("--sustain", type=float, default=60.0, help="sustained-load seconds")
    parser.add_argument("--out", default="serve_bench.json")
    parser.add_argument("--budget-ms", type=float, help="opsnb's latency budget (default: its own)")
    args = parser.parse_args()

    run = Path(args.run).resolve()
    budget = ["--budget-ms", str(args.budget_ms)] if args.budget_ms is not None else []
    bodies = bodies_from_run(run)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="opsnb-bench-") as tmp:
        model, bundle = build_model(run, Path(tmp), trees=args.trees, depth=args.depth)
        port = _free_port()
        url = f"http://127.0.0.1:{port}/predict"
        env = {
            "BENCH_MODEL": str(model),
            "BENCH_SCHEMA": str(bundle / "schema.json"),
            "PATH": "/usr/bin:/bin",
        }
        for name, command in servers(bundle, Path(tmp) / "log.sqlite", port, budget).items():
            with started(command, port, bodies[0], env):
                run_load(url, bodies, requests=300, concurrency=8, duration_s=10)  # warm-up
                for concurrency in (1, 8, 64):
                    row = {
                        "server": name,
                        "concurrency": concurrency,
                        **measure(url, bodies, concurrency=concurrency, seconds=args.seconds),
                    }
                    rows.append(row)
                    print(_line(row), flush=True)
                if name == "opsnb serve":
                    capacity = next(
                        r["throughput_rps"]
                        for r in rows
                        if r["server"] == name and r["concurrency"] == 64
                    )
                    for label, factor, seconds in (
                        ("sustained 80%", 0.8, args.sustain),
                        ("overload 3x", 3.0, 10.0),
                    ):
                        row = {
                            "server": f"opsnb {label}",
                            "concurrency": 512,
                            "offered_rps": round(capacity * factor, 1),
                            **measure(
                                url,
                                bodies,
                                concurrency=512,
                                seconds=seconds,
                                rate=capacity * factor,
                            ),
                        }
                        rows.append(row)
                        print(_line(row), flush=True)
    goals = _goals(rows)
    Path(args.out).write_text(json.dumps({"rows": rows, "goals": goals}, indent=2))
    print("\n".join(f"{k}: {v}" for k, v in goals.items()))
    return 0


def _line(row: dict[str, Any]) -> str:
    bad = {k: v for k, v in row["statuses"].items() if k != 200}
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

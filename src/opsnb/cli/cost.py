"""``opsnb cost``: what the run and its predictions cost, and the budget verdicts."""

from __future__ import annotations

import argparse
from typing import Any


def _cmd_cost(args: argparse.Namespace) -> int:
    import pandas as pd

    from opsnb import cost, prices

    table = prices.load(args.prices)
    report = cost.analyse(
        args.run, table, args.offer, compare=tuple(o for o in args.compare.split(",") if o),
        headroom=args.headroom, target_rps=args.target_rps,
        cores_per_replica=args.cores_per_replica, gpu_rps=args.gpu_rps,
    )  # fmt: skip
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(f"price table {table.path} ({table.date}), offer {report.offer.name}\n")
        print(f"cost of the run: ${report.run_usd:.4f}")
        print(report.stages.round(6).to_string(index=False), "\n")
        print(f"storage: {report.storage['arithmetic']}")
        print(f"server CPU-seconds per 1,000 predictions: "
              f"{1000 * report.serving.cpu_s_per_prediction:.4f}\n")  # fmt: skip
        print(report.offers.drop(columns="arithmetic").round(4).to_string(index=False), "\n")
        print(f"right-sizing: {report.sizing['arithmetic']}")
        print(f"schedule: {report.sizing['schedule']['arithmetic']}")
        print(f"GPU: {report.gpu['arithmetic']}")
        for note in report.notes:
            print(f"note: {note}")
        for verdict in report.verdicts:
            print(verdict.text)
    return 0 if report.passed else 2


def _add_cost(sub: Any) -> None:
    cst = sub.add_parser("cost", help="what the run and its predictions cost; budget verdicts")
    cst.add_argument("run", help="run folder (after its monitor stage)")
    cst.add_argument("--prices", help="price table YAML (default: examples/prices.yaml)")
    cst.add_argument("--offer", default="gcp-on-demand", help="offer the budget is judged at")
    cst.add_argument("--compare", default="gcp-spot,paperspace,own-dc", help="more offers")
    cst.add_argument("--headroom", type=float, default=0.3, help="share of a core kept free")
    cst.add_argument("--target-rps", type=float, default=20_000.0, help="peak rate to size for")
    cst.add_argument("--cores-per-replica", type=int, default=2, help="vCPUs per replica")
    cst.add_argument("--gpu-rps", type=float, default=1e8, help="stated GPU throughput")
    cst.set_defaults(handler=_cmd_cost)

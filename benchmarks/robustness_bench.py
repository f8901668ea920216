"""The robustness stage's goals, measured on finished runs.

Speed and exactness of the fast attack against the MILP, attack against random noise, and what
adversarial training buys:

    python benchmarks/robustness_bench.py runs/<loans-run> runs/<breast-cancer-run> \
        [--exact-rows 20] [--time-limit 60] [--adversarial] [--quick]

For each run folder (a run through the train stage): on the same seeded test rows, the fast
attack's smallest L∞ flip (certified radius included in its time) against the exact optimum of
the Kantchelian MILP (HiGHS), with the median ratio and the time per row of each; accuracy
clean, under attack and under random noise of the same ε; with ``--adversarial``, the train
stage's adversarial training from the run's own splits and hyperparameters, before and after.
Prints one JSON object per run.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from opsnb import attack, hardening, milp, robustness, training
from opsnb.schema import Schema, target_vector, to_matrix


def measure(
    run: Path,
    *,
    exact_rows: int,
    time_limit: float,
    adversarial: bool,
    attack_rows: int,
    seed: int = 42,
) -> dict[str, Any]:
    """The goal figures for one run folder."""
    schema = Schema.load(run / "schema.json")
    booster = training.load_model(run / "model" / "model.ubj")
    frames = {s: pd.read_parquet(run / "data" / f"{s}.parquet") for s in ("train", "valid", "test")}
    threat = robustness.threat_model(schema)
    space = robustness.build(booster, schema, to_matrix(frames["train"], schema), threat)
    test_x = to_matrix(frames["test"], schema)
    test_y = target_vector(frames["test"], schema)
    found = robustness.analyse(space, test_x, test_y, threat=threat, sample=attack_rows, seed=seed)
    rows = found.x[:exact_rows]
    fast_s, exact_s, fast, exact = [], [], [], []
    for x in rows:
        t0 = time.perf_counter()
        floor = attack.certified_radius(space, x[None])[0]
        fast.append(attack.min_linf(space, x, floor=floor).linf)
        fast_s.append(time.perf_counter() - t0)
        solved = milp.min_linf_exact(space, x, time_limit=time_limit)
        exact.append(solved.distance if solved.optimal else math.nan)
        exact_s.append(solved.seconds)
    ok = np.isfinite(exact) & np.isfinite(fast)
    fast_a, exact_a = np.asarray(fast)[ok], np.asarray(exact)[ok]
    eps = threat.epsilon
    out: dict[str, Any] = {
        "run": str(run),
        "trees": booster.num_boosted_rounds(),
        "epsilon": eps,
        "exact": {
            "rows": len(rows),
            "solved": int(ok.sum()),
            "fast_median": float(np.median(fast_a)) if ok.any() else None,
            "exact_median": float(np.median(exact_a)) if ok.any() else None,
            "median_ratio": float(np.median(fast_a) / np.median(exact_a)) if ok.any() else None,
            "rows_equal": int(np.isclose(fast_a, exact_a, rtol=1e-6).sum()),
            "fast_ms_per_row": round(1000 * float(np.mean(fast_s)), 2),
            "exact_ms_per_row": round(1000 * float(np.mean(exact_s)), 1),
            "speedup": round(float(np.mean(exact_s) / np.mean(fast_s)), 1),
        },
        "accuracy": {
            "rows": int(found.rows.size),
            "clean": round(float(found.correct.mean()), 4),
            "under_attack": round(found.robust_accuracy(eps), 4),
            "under_noise": round(float(np.mean(found.correct & ~found.noise[eps])), 4),
            "certified": round(found.certified_accuracy(eps), 4),
            "median_min_linf": round(float(np.median(found.linf)), 4),
        },
        "stage_seconds": {k: round(v, 2) for k, v in found.seconds.items()},
    }
    if adversarial:
        design = json.loads((run / "design.json").read_text())
        t0 = time.perf_counter()
        _, hardened = hardening.harden(
            booster, frames, schema, threat, hyperparameters=design["hyperparameters"],
            seed=seed, attack_rows=attack_rows,
        )  # fmt: skip
        out["adversarial_training"] = {**hardened, "seconds": round(time.perf_counter() - t0, 1)}
    return out


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Measure every run folder given; print and return one result per run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--exact-rows", type=int, default=20)
    parser.add_argument("--time-limit", type=float, default=60.0)
    parser.add_argument("--attack-rows", type=int, default=200)
    parser.add_argument("--adversarial", action="store_true")
    parser.add_argument("--quick", action="store_true", help="2 exact rows, 30 attacked rows")
    args = parser.parse_args(argv)
    if args.quick:
        args.exact_rows, args.attack_rows = 2, 30
    results = []
    for run in args.runs:
        result = measure(
            run,
            exact_rows=args.exact_rows,
            time_limit=args.time_limit,
            adversarial=args.adversarial,
            attack_rows=args.attack_rows,
        )
        print(json.dumps(result, indent=1))
        results.append(result)
    return results


if __name__ == "__main__":
    main()

"""How long the monitor's analysis takes on a large prediction log (goal: 1,000,000 rows <= 10 s).

Builds, once, a prediction log in the server's exact format (``opsnb.serving.predlog``) from the
built-in loans generator: ``--rows`` predictions (default 1,000,000) of a fixed scoring function
with the drift scenario's second half, half of them labelled, and the reference and checker the
bundle would ship, fitted on 20,000 training rows. Then it times :func:`analyse_log` on it (best
of ``--repeat``), and, as the baseline a notebook author would write, reading the same log with
``pandas.read_sql`` + ``json_normalize`` (decoding only: no statistic computed), in the same run.

    python benchmarks/monitor_bench.py            # 1M rows
    python benchmarks/monitor_bench.py --quick    # 20k rows, seconds
"""

from __future__ import annotations

import argparse
import os
import resource
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
import pandas as pd

from opsnb import loans, monitoring
from opsnb.monitoring import checker, reference
from opsnb.schema import Schema, target_vector, to_matrix
from opsnb.serving.predlog import PredictionLog

GOAL_S = 10.0
GOAL_ROWS = 1_000_000
NUMERIC = ("age", "income", "loan_amount", "term_months", "credit_score", "debt_to_income",
           "employment_years", "delinquencies_2y")  # fmt: skip
CATEGORICAL = {
    "home_ownership": loans.HOME_OWNERSHIP,
    "purpose": loans.PURPOSES,
    "region": loans.REGIONS,
}


def loans_schema() -> dict:
    """The loans generator's features as a schema."""
    features = [{"name": n, "kind": "numeric"} for n in NUMERIC]
    features += [{"name": n, "kind": "categorical", "categories": list(c)}
                 for n, c in CATEGORICAL.items()]  # fmt: skip
    return {"task": "binary", "target": loans.LOANS_TARGET, "features": features}


def typed(schema: dict) -> Schema:
    """The typed schema opsnb's encoders take."""
    return Schema.from_dict(schema)


def score(x: np.ndarray) -> np.ndarray:
    """A fixed scoring function standing in for the served model (the log is what is timed)."""
    z = np.nan_to_num(x)
    logit = -1.5 + 3.0 / (1 + np.exp((z[:, 4] - 630) / 20)) + 0.05 * np.maximum(z[:, 5] - 25, 0)
    return 1 / (1 + np.exp(-logit))


def build_bundle(schema: dict) -> monitoring.Bundle:
    """Reference and checker as the bundle ships them, fitted on generated training rows."""
    train = loans.loan_applications(20_000, seed=1)
    trusted = loans.loan_applications(4_000, seed=2)
    x_train, x_trusted = to_matrix(train, typed(schema)), to_matrix(trusted, typed(schema))
    p_train, p_trusted = score(x_train), score(x_trusted)
    y_trusted = target_vector(trusted, typed(schema))
    ref = reference.build_reference(
        x_train, schema, p_train, trusted_scores=p_trusted, trusted_labels=y_trusted
    )
    second = checker.fit_checker(
        x_train, target_vector(train, typed(schema)), x_trusted, y_trusted,
        served_trusted=p_trusted, schema=schema,
    )  # fmt: skip
    return monitoring.Bundle(Path("."), schema, ref, second, "bench")


def build_log(path: Path, schema: dict, rows: int) -> None:
    """Write ``rows`` predictions (drifted second half) and every other label to ``path``."""
    log = PredictionLog(path, synchronous="OFF")
    names = [f["name"] for f in schema["features"]]
    step = 100_000
    for start in range(0, rows, step):
        n = min(step, rows - start)
        frame = loans.production_stream(
            n, seed=start, after=pd.Timestamp("2025-07-01"),
            scenario=loans.SCENARIOS["drift"] if start >= rows // 2 else None,
        )  # fmt: skip
        frame["purpose"] = frame["purpose"].astype(str).replace("nan", None)
        x = to_matrix(frame, typed(schema))
        out = score(x)
        part = frame[names].astype(object).where(frame[names].notna(), None)
        texts = [orjson.dumps(r).decode() for r in part.to_dict("records")]
        ts = 1_700_000_000 + (start + np.arange(n)) * 0.01
        ids = [f"r{start + i}" for i in range(n)]
        log.write(list(zip(ids, ts.tolist(), ["bench"] * n, texts, out.tolist(), [1.0] * n,
                           strict=True)))  # fmt: skip
        labels = frame[loans.LOANS_TARGET].to_numpy(float)
        with sqlite3.connect(path) as conn:  # labels in bulk (the server stores them one by one)
            conn.executemany(
                "INSERT INTO feedback VALUES (?, ?, ?)",
                [(ids[i], labels[i], float(ts[i]) + 60) for i in range(0, n, 2)],
            )
    log.close()


def _cpu() -> float:
    """CPU seconds of this process and of its reaped children (the analysis' workers)."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    """Build the log once, time the analysis, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=GOAL_ROWS)
    parser.add_argument("--quick", action="store_true", help="20,000 rows")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--window", default="50000")
    parser.add_argument("--log", help="reuse (or keep) the log at this path")
    args = parser.parse_args()
    rows = 20_000 if args.quick else args.rows
    window = "2000" if args.quick else args.window
    schema = loans_schema()
    bundle = build_bundle(schema)
    folder = Path(tempfile.mkdtemp(prefix="opsnb-monitor-bench-"))
    path = Path(args.log) if args.log else folder / "predictions.sqlite"
    if not path.is_file():
        t0 = time.perf_counter()
        build_log(path, schema, rows)
        print(f"built a log of {rows:,} rows in {time.perf_counter() - t0:.1f} s: {path}")
    times, cpus = [], []
    for _ in range(args.repeat):
        cpu0 = _cpu()
        t0 = time.perf_counter()
        result = monitoring.analyse_log(
            bundle, path, window=window, problem={"metric": "auc", "quality_floor": 0.6}
        )
        times.append(time.perf_counter() - t0)
        cpus.append(_cpu() - cpu0)
    analysed = int(result.windows["rows"].sum())
    t0 = time.perf_counter()
    with sqlite3.connect(path) as conn:
        frame = pd.read_sql("SELECT * FROM predictions", conn)
    pd.json_normalize([orjson.loads(t) for t in frame["features"]])
    naive = time.perf_counter() - t0
    best = min(times)
    print(f"rows analysed            {analysed:,} in {len(result.windows)} windows of {window}")
    print(f"opsnb analyse_log        {best:.2f} s (best of {args.repeat}), "
          f"{analysed / best / 1e6:.2f} M rows/s")  # fmt: skip
    print(f"CPU seconds (this process and its 2 workers): {min(cpus):.2f}")
    print(f"read_sql + json_normalize {naive:.2f} s (decoding only, no statistics)")
    print(f"speed-up over the naive read: {naive / best:.2f}x")
    scaled = best * GOAL_ROWS / analysed
    print(f"goal: {GOAL_ROWS:,} rows <= {GOAL_S:g} s -> {scaled:.2f} s at this rate "
          f"({'met' if scaled <= GOAL_S else 'NOT met'}; ratio {GOAL_S / scaled:.2f})")  # fmt: skip
    print(f"drifted features found: {', '.join(result.drifted_features()) or 'none'}")
    print(f"load average (1, 5, 15 min): {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()

"""``opsnb update`` and ``opsnb monitor``: a served model's life after the run."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opsnb import config

if TYPE_CHECKING:
    pass


def _cmd_update(args: argparse.Namespace) -> int:
    from opsnb import update

    run = Path(args.run)
    if not run.exists() and os.sep not in args.run:
        run = config.runs_root() / args.run
    if args.from_log:
        champion = update.load_champion(run)
        batch, counts = update.batch_from_log(args.from_log, champion.schema, until=args.until)
        print("log: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        source = f"log:{args.from_log}"
    else:
        batch, source = args.data, f"file:{args.data}"
    decision = update.update(run, batch, source=source, promote_if_better=args.promote,
                             server=args.server, run_id=args.run_id)  # fmt: skip
    print(update.summary(decision))
    for reason in decision["reasons"]:
        print(f"  - {reason}")
    new_run = run.resolve().parent / decision["run"]
    print(f"decision: {new_run / update.DECISION}")
    return 0 if decision["decision"] == "admitted" else 2


def _add_update(sub: Any) -> None:
    """The ``opsnb update`` sub-command."""
    upd = sub.add_parser(
        "update",
        help="screen new labelled rows, retrain, promote the challenger only when not worse",
        description="Exit status: 0 admitted, 2 refused (reasons printed), 1 bad input.",
    )
    upd.add_argument("run", help="the run to update (a folder, a run id, or 'champion')")
    src = upd.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="a CSV or Parquet file of labelled rows")
    src.add_argument("--from-log", help="a prediction log (SQLite) joined with its feedback")
    upd.add_argument(
        "--until", type=float, help="with --from-log: ignore labels after this UNIX time"
    )
    upd.add_argument("--promote", action="store_true", help="move runs/champion if not worse")
    upd.add_argument(
        "--server", help="reload this server after promotion (needs $OPSNB_ADMIN_TOKEN)"
    )
    upd.add_argument("--run-id", help="id of the new run (default: a fresh one)")
    upd.set_defaults(handler=_cmd_update)


def _cmd_monitor(args: argparse.Namespace) -> int:
    from opsnb import monitoring, plots  # matplotlib only for this command
    from opsnb.artifacts import read_json

    bundle = monitoring.Bundle.load(args.run)
    log = Path(args.log)
    out = Path(args.out) if args.out else log.parent / "monitor"
    problem_path = next(
        (
            p / "problem.json"
            for p in (Path(args.run), bundle.path.parent)
            if (p / "problem.json").is_file()
        ),
        None,
    )
    problem = read_json(problem_path) if problem_path else None
    if problem is not None and problem.get("metric") == "auto":
        problem["metric"] = {"binary": "auc", "regression": "r2"}[bundle.schema["task"]]
    serving = log.parent / "serving.json"
    refusals = read_json(serving).get("refusals") if serving.is_file() else None
    result = monitoring.analyse_log(
        bundle, log, window=args.window, problem=problem, refusals=refusals
    )
    written = monitoring.write_outputs(result, out)
    figures = {
        "drift_heatmap.png": plots.drift_heatmap(
            result.heatmap(), result.thresholds.psi, result.drifted_features()
        ),
        "drift_distributions.png": plots.drift_distributions(
            result.reference, result.live_counts, result.drifted_features()
        ),
        "alert_timeline.png": plots.alert_timeline(result.alerts, len(result.windows)),
    }
    if result.metric:
        figures["quality.png"] = plots.quality_over_windows(
            result.quality, result.metric, result.floor
        )
    for name, figure in figures.items():
        figure.savefig(out / name, dpi=110)
    for note in result.notes:
        print(f"note: {note}")
    rows = int(result.windows["rows"].sum())
    print(
        f"{rows:,} logged predictions of model {bundle.version} in {len(result.windows)} windows: "
        f"{len(result.alerts)} alert record(s); drifted: "
        f"{', '.join(result.drifted_features()) or 'none'}"
    )
    table = result.alert_table()
    if len(table):
        with_width = table[["kind", "subject", "severity", "first_window", "windows", "action"]]
        print(with_width.to_string(index=False))
    print(f"wrote {', '.join(sorted([*written, *figures]))} to {out}")
    return 0

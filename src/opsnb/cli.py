"""The ``opsnb`` command.

Each command imports its own stack when it runs (``opsnb serve`` loads neither papermill nor
XGBoost; ``opsnb stages`` loads almost nothing), so the serving image can leave the pipeline's
dependencies out (see the ``serve`` extra in ``pyproject.toml``).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opsnb import config
from opsnb.errors import ConfigError, OpsnbError

if TYPE_CHECKING:
    from opsnb import pipeline
    from opsnb.serving import ServeOptions
    from opsnb.stages import Stage


_PIPELINE_MODULES = frozenset(
    {"papermill", "nbformat", "ipykernel", "xgboost", "treelite", "tl2cgen", "sklearn", "scipy",
     "pandera", "matplotlib", "yaml", "tqdm", "nbconvert"}
)  # fmt: skip
"""What the ``pipeline`` extra installs (by import name)."""


def _parse_value(text: str) -> Any:
    """Read a ``-p`` value as YAML so numbers and booleans keep their type (``-p n_rows 500``)."""
    import yaml

    return yaml.safe_load(text) if text.strip() else text


def _load_params(args: argparse.Namespace) -> dict[str, Any]:
    import yaml

    params: dict[str, Any] = {}
    if args.params_file:
        path = Path(args.params_file)
        if not path.is_file():
            raise ConfigError(f"parameters file {path} does not exist")
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"parameters file {path} must hold a mapping of name: value")
        params.update(loaded)
    for name, value in args.param or []:
        params[name] = _parse_value(value)
    return params


def _cmd_run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from opsnb import pipeline
    from opsnb.stages import STAGES

    params = _load_params(args)
    # A bar only on a terminal (None: tqdm decides); the per-stage lines always print.
    # leave=False: once done the bar goes, and the terminal keeps the stage lines and the last one.
    bar = tqdm(total=len(STAGES), unit="stage", disable=True if args.quiet else None, leave=False)

    def progress(stage: Stage, outcome: pipeline.StageOutcome | None) -> None:
        if outcome is None:
            bar.set_description(stage.name)
            return
        bar.update(1)
        bar.write(
            f"  {stage.name:<15} {outcome.status:<9} {outcome.wall_s:7.1f} s  {outcome.detail}"
        )

    try:
        result = pipeline.run(
            params,
            run_id=args.run_id,
            from_stage=args.from_stage,
            until=args.until,
            force=args.force,
            on_stage=progress,
        )
    finally:
        bar.close()
    status = result.manifest.data["status"]
    print(f"run {result.run_id}: {status} -> {result.run_dir / 'report.html'}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from opsnb import report

    run_dir = config.resolve_run_dir(args.run)
    if not (run_dir / "manifest.json").is_file():
        raise ConfigError(
            f"{run_dir} is not a run folder (no manifest.json); pass runs/<id>, a run id or latest"
        )
    print(f"report: {report.build(run_dir)}")
    return 0


def _cmd_stages(_: argparse.Namespace) -> int:
    from opsnb.stages import STAGES

    for stage in STAGES:
        print(f"{stage.name:<15} {stage.notebook:<26} {stage.summary}")
    return 0


def _cmd_notebooks(args: argparse.Namespace) -> int:
    from opsnb import hygiene

    paths = [Path(p) for p in args.paths] or sorted(config.notebooks_dir().glob("*.ipynb"))
    if args.action == "clean":
        for path in paths:
            if hygiene.clean(path):
                print(f"cleaned {path}")
        return 0
    if args.action == "adopt":
        executed = config.executed_notebooks_dir(args.from_run)
        for path in paths:
            if (executed / path.name).is_file():
                for cell in hygiene.adopt_checked_outputs(path, executed / path.name):
                    print(f"{path}: refreshed checked output of cell {cell}")
        return 0
    problems = [p for path in paths for p in hygiene.check(path)]
    for problem in problems:
        print(problem)
    print(f"{len(paths)} notebooks checked, {len(problems)} problems")
    return 1 if problems else 0


def _cmd_bench(args: argparse.Namespace) -> int:
    # Idle OpenMP threads of one engine must not spin against the next one's: set before any
    # engine (XGBoost, ONNX Runtime, TL2cgen) loads its OpenMP runtime.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    run_dir = Path(args.run_dir) if args.run_dir else config.latest_run()
    if args.run_dir and not (run_dir / "bundle" / "manifest.json").is_file():
        raise ConfigError(f"{run_dir} has no bundle/manifest.json; run the pipeline first")
    has_run = (run_dir / "bundle" / "manifest.json").is_file()
    if not has_run and args.no_large:
        raise ConfigError(
            f"nothing to measure: no run with a bundle under {run_dir} and --no-large; "
            "name a run folder or drop --no-large"
        )
    import pandas as pd

    from opsnb.artifacts import write_json
    from opsnb.bench import engines

    result = engines.run_bench(run_dir=run_dir if has_run else None, quick=args.quick,
                             large=not args.no_large)  # fmt: skip
    with pd.option_context("display.width", 250, "display.max_columns", 20):
        print("median microseconds per row (lower is better)")
        print(result.table().to_string())
        print("\nopsnb predictor speed-up (how many times faster; > 1: opsnb wins)")
        print(result.ratios().to_string())
        print("\nmax |engine - opsnb| on 256 rows")
        print(pd.DataFrame(result.agreement).to_string(index=False))
    for what, why in result.skipped.items():
        print(f"skipped {what}: {why}")
    print(f"load average (1, 5, 15 min): {' '.join(f'{v:.2f}' for v in result.load)}")
    if args.json:
        write_json(args.json, result.to_dict())
    return 0


_SERVE_OPTIONS = {  # option -> ServeOptions field; an option not given keeps its default
    "log": "log_path",
    "log_sync": "log_sync",
    "log_max_mb": "log_max_mb",
    "log_max_age_days": "log_max_age_days",
    "log_keep": "log_keep",
    "max_batch": "max_batch",
    "max_wait_ms": "max_wait_ms",
    "budget_ms": "budget_ms",
    "max_body": "max_body",
    "max_records": "max_records",
    "range_slack": "range_slack",
    "drain_s": "drain_s",
    "store": "store",
    "allow_unsigned": "allow_unsigned",
    "body_timeout_s": "body_timeout_s",
    "header_timeout_s": "header_timeout_s",
    "max_connections": "max_connections",
}


def _bound(text: str) -> float | None:
    """``--log-max-mb`` / ``--log-max-age-days``: a positive number, or ``none`` for no bound."""
    if text.strip().lower() in ("none", "off"):
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a number > 0 nor 'none' (no bound)")
    return value


def _range_slack(text: str) -> float | None:
    """``--range-slack``: spans past the training range, or ``none`` for any float32."""
    if text.strip().lower() in ("none", "any"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a number of spans nor 'none' (any float32)"
        ) from None
    return None if value < 0 else value  # a negative number has always meant "any"


def serve_options(args: argparse.Namespace) -> ServeOptions:
    """The :class:`~opsnb.serving.ServeOptions` of ``opsnb serve`` arguments.

    Options not given keep the dataclass's defaults: the parser repeats none of them.
    """
    from opsnb.serving import ServeOptions

    given = {field: getattr(args, opt) for opt, field in _SERVE_OPTIONS.items() if opt in args}
    return ServeOptions(
        bundle=args.run,
        trust_keys=tuple(getattr(args, "trust_key", ())),
        allowed_hosts=tuple(getattr(args, "allowed_host", ())),
        admin_token=_token(config.ADMIN_TOKEN_ENV, getattr(args, "admin_token_file", None)),
        feedback_token=_token(
            config.FEEDBACK_TOKEN_ENV, getattr(args, "feedback_token_file", None)
        ),
        **given,
    )


def _token(env: str, path: str | None) -> str | None:
    """A bearer token from its file (``--...-token-file``) or its environment variable."""
    if path:
        return Path(path).read_text().strip() or None
    return os.environ.get(env) or None


def _cmd_key(args: argparse.Namespace) -> int:
    from opsnb import signing

    key = signing.project_key()
    print(f"# project signing key: {config.signing_key_path()} (keep it private)")
    print(f"# key id {signing.key_id(key.public_key())}; give this public key to servers")
    print("# (--trust-key FILE or $OPSNB_TRUSTED_KEYS) that load bundles built here:")
    print(signing.public_pem(key).decode(), end="")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from opsnb.serving import serve, server
    from opsnb.serving.reload import verify
    from opsnb.serving.store import ModelStore, Trust

    options = serve_options(args)
    # Refuse an untrusted or tampered bundle before anything starts; one process serves this
    # very check.
    trust = Trust.default(options.trust_keys, allow_unsigned=options.allow_unsigned)
    verified = verify(ModelStore.serving(args.run, options.store).resolve(None), trust)
    where = {name: getattr(args, name) for name in ("host", "port", "workers") if name in args}
    host = where.get("host", server.DEFAULT_HOST)
    port_file = getattr(args, "port_file", None)

    def announce(bound: int) -> None:
        print(
            f"serving {verified.path} on http://{host}:{bound} (SIGHUP reloads, SIGTERM drains)",
            flush=True,
        )
        if port_file:
            from opsnb.artifacts import atomic_open

            with atomic_open(port_file) as out:  # a reader never sees a partial number
                out.write(f"{bound}\n")

    serve(options, verified=verified, on_bound=announce, **where)
    return 0


def _cmd_loadtest(args: argparse.Namespace) -> int:
    import orjson

    from opsnb.bench import load  # a client: the server's stack is not needed

    load.check_loopback(args.url)  # before reading any data
    bodies = load.bodies_from_run(args.run)
    result = load.run_load(
        args.url,
        bodies,
        requests=args.requests,
        concurrency=args.concurrency,
        duration_s=args.duration,
        rate=args.rate,
    )
    summary = result.summary()
    if args.json:
        print(orjson.dumps(summary, option=orjson.OPT_NON_STR_KEYS).decode())
        return 0
    print(
        f"{summary['requests']} requests at concurrency {args.concurrency} in "
        f"{summary['wall_s']} s: {summary['throughput_rps']} ok/s, p50 {summary['p50_ms']} ms, "
        f"p95 {summary['p95_ms']} ms, p99 {summary['p99_ms']} ms; statuses "
        f"{dict(sorted(result.statuses.items()))}, connection failures "
        f"{summary['connection_failures']}"
    )
    return 0


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


def _rows_bar(args: argparse.Namespace, total: int | None = None) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total, unit="rows", unit_scale=True, disable=True if args.quiet else None,
        smoothing=0.1, dynamic_ncols=True,
    )  # fmt: skip


def _cmd_score(args: argparse.Namespace) -> int:
    from opsnb import scoring

    # A SIGTERM ends the job like Ctrl-C: the staged files are removed, nothing half-written stays
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    bar = _rows_bar(args)

    def start(total: int | None) -> None:
        bar.reset(total=total)

    try:
        summary = scoring.score(
            args.run,
            args.input,
            args.out,
            threads=args.threads,
            chunk_rows=args.chunk_rows,
            engine=args.engine,
            scheduler=args.scheduler,
            workers=args.workers,
            on_rows=bar.update,
            on_start=start,
        )
    finally:
        bar.close()
    print(summary.sentence())
    print(f"quarantine: {summary.quarantine}")
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    from opsnb import loans

    bar = _rows_bar(args, args.rows)
    try:
        parts = loans.write_loan_parts(
            args.out, args.rows, seed=args.seed, rows_per_part=args.rows_per_part,
            on_part=bar.update,
        )  # fmt: skip
    finally:
        bar.close()
    print(f"wrote {args.rows:,} loan applications as {len(parts)} Parquet parts in {args.out}")
    return 0


def _add_batch_commands(sub: Any) -> None:
    """``opsnb score`` and ``opsnb generate``."""
    sc = sub.add_parser("score", help="score a CSV/Parquet file, folder or glob of any size")
    sc.add_argument("run", help="run folder (runs/<id>, runs/latest) or bundle folder")
    sc.add_argument("input", help="a .csv or .parquet file, a folder of Parquet parts, a glob")
    sc.add_argument("--out", required=True, help="scores (.parquet; a folder on Dask)")
    sc.add_argument("--threads", type=int, default=1, help="predictor threads (per worker)")
    # defaults as in opsnb.scoring (CHUNK_ROWS, ENGINES): the parser imports nothing heavy
    sc.add_argument("--chunk-rows", type=int, default=131_072, help="rows a chunk")
    sc.add_argument("--engine", choices=("chunked", "dask"), default="chunked")
    sc.add_argument("--scheduler", help="with --engine dask: scheduler address (tcp://host:8786)")
    sc.add_argument("--workers", type=int, help="with --engine dask and no --scheduler: workers")
    sc.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    sc.set_defaults(handler=_cmd_score)

    gen = sub.add_parser("generate", help="write N loan applications as Parquet parts")
    gen.add_argument("--rows", type=int, required=True, help="e.g. 10_000_000")
    gen.add_argument("--out", required=True, help="a new folder")
    gen.add_argument("--seed", type=int, default=42)
    gen.add_argument("--rows-per-part", type=int, default=250_000)  # loans.PART_ROWS
    gen.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    gen.set_defaults(handler=_cmd_generate)


def _add_serve_security(srv: Any) -> None:
    """``opsnb serve`` options on trust, credentials and slow clients."""
    srv.add_argument("--store", help="model store reloads pick versions from")
    srv.add_argument("--trust-key", action="append", metavar="PEM",
                     help="also trust bundles signed by this public key")  # fmt: skip
    srv.add_argument("--allow-unsigned", action="store_true",
                     help="load bundles without a trusted signature")  # fmt: skip
    srv.add_argument("--admin-token-file",
                     help=f"admin token (or ${config.ADMIN_TOKEN_ENV}); none: off")  # fmt: skip
    srv.add_argument("--feedback-token-file",
                     help=f"token /feedback needs (or ${config.FEEDBACK_TOKEN_ENV})")  # fmt: skip
    srv.add_argument("--allowed-host", action="append",
                     help="host name admin requests may carry in Host")  # fmt: skip
    srv.add_argument("--body-timeout-s", type=float, help="408 past it (default 10)")
    srv.add_argument("--header-timeout-s", type=float, help="close past it (default 10)")
    srv.add_argument("--max-connections", type=int, help="503 past it (default 1024)")


def _add_report_and_stages(sub: Any) -> None:
    rep = sub.add_parser("report", help="(re)build a run's report.html")
    rep.add_argument("run", nargs="?", default="latest", help="runs/<id>, a run id, or latest")
    rep.set_defaults(handler=_cmd_report)
    stages = sub.add_parser("stages", help="list the stages in order")
    stages.set_defaults(handler=_cmd_stages)
    key = sub.add_parser("key", help="print the project's public signing key")
    key.set_defaults(handler=_cmd_key)


def build_parser() -> argparse.ArgumentParser:  # noqa: PLR0915 - one statement per option
    """The argument parser of ``opsnb``."""
    parser = argparse.ArgumentParser(prog="opsnb", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the stage notebooks as one pipeline into runs/<run-id>")
    run.add_argument(
        "-p",
        "--param",
        nargs=2,
        action="append",
        metavar=("NAME", "VALUE"),
        help="parameter for every stage that declares it (repeatable)",
    )
    run.add_argument("-f", "--params-file", help="YAML file of name: value parameters")
    run.add_argument("--run-id", help="run id under runs/ (default: a new one)")
    run.add_argument("--from", dest="from_stage", metavar="STAGE", help="first stage to run")
    run.add_argument("--until", metavar="STAGE", help="last stage to run")
    run.add_argument("--force", action="store_true", help="re-run stages even if unchanged")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    run.set_defaults(handler=_cmd_run)

    notebooks = sub.add_parser("notebooks", help="check or clean the stage notebooks")
    notebooks.add_argument(
        "action",
        choices=["check", "clean", "adopt"],
        help="check hygiene; clean stray outputs; adopt checked outputs",
    )
    notebooks.add_argument("paths", nargs="*", help="notebooks (default: notebooks/*.ipynb)")
    notebooks.add_argument(
        "--from-run",
        default=str(config.latest_run()),
        help="with adopt: the run whose executed notebooks to copy from",
    )
    notebooks.set_defaults(handler=_cmd_notebooks)

    bench = sub.add_parser("bench", help="time the compiled predictor against the alternatives")
    bench.add_argument("run_dir", nargs="?", help="a run folder with a bundle (default: latest)")
    bench.add_argument("--quick", action="store_true", help="small batches and models: seconds")
    bench.add_argument("--no-large", action="store_true", help="skip the 1,000-tree model")
    bench.add_argument("--json", help="also write every measurement to this JSON file")
    bench.set_defaults(handler=_cmd_bench)

    # Options left out keep ServeOptions' defaults (SUPPRESS: absent, not repeated here).
    srv = sub.add_parser(
        "serve",
        help="serve a run's compiled model over HTTP",
        argument_default=argparse.SUPPRESS,
        epilog="Options not given take the defaults of opsnb.serving.ServeOptions.",
    )
    srv.add_argument("run", help="run folder (runs/<id>, runs/latest) or bundle folder")
    srv.add_argument("--host", help="interface to bind (default loopback)")
    srv.add_argument("--port", type=int, help="TCP port (default 8000; 0: a free one, reported)")
    srv.add_argument("--port-file", help="write the bound port to this file once listening")
    srv.add_argument("--workers", type=int, help="processes sharing the port (default 1)")
    srv.add_argument("--max-batch", type=int, help="most rows per predictor call")
    srv.add_argument("--max-wait-ms", type=float, help="longest wait for batch-mates")
    srv.add_argument("--budget-ms", type=float, help="latency budget; 503 past it")
    srv.add_argument("--max-body", type=int, help="largest body in bytes")
    srv.add_argument("--max-records", type=int, help="most records per request")
    srv.add_argument(
        "--range-slack",
        type=_range_slack,
        help="spans past the training range a value may go ('none': any float32)",
    )
    srv.add_argument("--drain-s", type=float, help="SIGTERM drain bound")
    srv.add_argument("--log", help="SQLite prediction log (default: <run>/predictions.sqlite)")
    srv.add_argument("--log-sync", choices=["OFF", "NORMAL", "FULL"])
    srv.add_argument("--log-max-mb", type=_bound, help="rotate the log past this size (none: off)")
    srv.add_argument("--log-max-age-days", type=_bound,
                     help="rotate the log once its oldest row is this old (none: off)")  # fmt: skip
    srv.add_argument("--log-keep", type=int, help="rotated log archives kept (1..9)")
    _add_serve_security(srv)
    srv.set_defaults(handler=_cmd_serve)

    load = sub.add_parser("loadtest", help="load a local prediction service and time it")
    load.add_argument("url", help="http://127.0.0.1:PORT/predict (loopback only)")
    load.add_argument("--run", default=str(config.latest_run()),
                      help="run whose test split supplies the bodies")  # fmt: skip
    load.add_argument("-n", "--requests", type=int, default=2000)
    load.add_argument("-c", "--concurrency", type=int, default=8)
    load.add_argument("--duration", type=float, default=60.0, help="time bound in seconds")
    load.add_argument("--rate", type=float, help="open loop: requests per second")
    load.add_argument("--json", action="store_true", help="print the summary as JSON")
    load.set_defaults(handler=_cmd_loadtest)

    _add_update(sub)
    mon = sub.add_parser("monitor", help="analyse a prediction log: drift, quality, alerts")
    mon.add_argument("run", help="run folder or bundle folder of the model that served the log")
    mon.add_argument("--log", required=True, help="the SQLite prediction log opsnb serve wrote")
    mon.add_argument("--out", help="output folder (default: monitor/ beside the log)")
    mon.add_argument("--window", default="500", help="rows per window, or a duration: 30s, 5min")
    mon.set_defaults(handler=_cmd_monitor)
    _add_cost(sub)

    _add_batch_commands(sub)
    _add_report_and_stages(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``opsnb`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        code: int = args.handler(args)
    except OpsnbError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as exc:  # the lean (serving) install lacks the pipeline's stack
        if not exc.name or exc.name.split(".")[0] not in _PIPELINE_MODULES:
            raise
        print(
            f"error: 'opsnb {args.command}' needs {exc.name}, which the serving install leaves "
            "out; install the pipeline: pip install 'opsnb[pipeline]'",
            file=sys.stderr,
        )
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())

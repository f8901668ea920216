"""The ``opsnb`` command.

Each command imports its own stack when it runs (``opsnb serve`` loads neither papermill nor
XGBoost; ``opsnb stages`` loads almost nothing), so the serving image can leave the pipeline's
dependencies out (see the ``serve`` extra in ``pyproject.toml``). The commands live by group:
:mod:`~opsnb.cli.runs` (run, report, stages, notebooks), :mod:`~opsnb.cli.serve` (bench, serve,
loadtest, key), :mod:`~opsnb.cli.lifecycle` (update, monitor), :mod:`~opsnb.cli.cost` (cost),
:mod:`~opsnb.cli.batch` (score, generate); this module builds the parser and runs :func:`main`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from opsnb import config
from opsnb.cli.batch import _add_batch_commands
from opsnb.cli.cost import _add_cost
from opsnb.cli.lifecycle import _add_update, _cmd_monitor
from opsnb.cli.runs import _cmd_notebooks, _cmd_report, _cmd_run, _cmd_stages
from opsnb.cli.serve import (
    _add_serve_security,
    _bound,
    _cmd_bench,
    _cmd_key,
    _cmd_loadtest,
    _cmd_serve,
    _range_slack,
    serve_options,
)
from opsnb.errors import OpsnbError

__all__ = ["build_parser", "main", "serve_options"]

_PIPELINE_MODULES = frozenset(
    {"papermill", "nbformat", "ipykernel", "xgboost", "treelite", "tl2cgen", "sklearn", "scipy",
     "pandera", "matplotlib", "yaml", "tqdm", "nbconvert"}
)  # fmt: skip
"""What the ``pipeline`` extra installs (by import name)."""


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

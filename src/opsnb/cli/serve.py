"""``opsnb bench``, ``serve``, ``loadtest`` and ``key``: the compiled model served and timed."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opsnb import config
from opsnb.errors import ConfigError

if TYPE_CHECKING:
    from opsnb.serving import ServeOptions


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

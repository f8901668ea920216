"""Run the prediction service under uvicorn (uvloop and httptools when installed).

One process by default. ``workers > 1`` starts that many processes sharing the port (uvicorn's
supervisor); each loads the published model version before it accepts connections, and they
append to one SQLite log. One model version serves at a time across workers: a reload is
verified once and published to all of them (:mod:`opsnb.serving.control`); SIGHUP to the
parent reloads the configured version that way instead of restarting the workers.

Slow clients: request headers must arrive within ``header_timeout_s`` (else the connection is
closed; slowloris), a body within ``body_timeout_s`` (408), idle keep-alive connections close
after 5 s, and at most ``max_connections`` are open at once (uvicorn answers 503 past it).
``SIGTERM`` stops admission, lets admitted requests finish for up to ``drain_s`` seconds and
exits with status 0.

``/metrics`` is per worker, each with its ``pid`` in ``opsnb_worker_info``: prometheus-client's
multiprocess mode would need a shared folder of mmap files, cannot aggregate the gauges and
histograms we use the way a scraper expects without a separate collector, and hides which
worker misbehaves; a scraper that needs the whole server sums over workers (one scrape reaches
one worker; with several, scrape each pod's workers on their own ports or rely on replicas).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import socket
import sys
import tempfile
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.supervisors import Multiprocess

from opsnb import config
from opsnb.bundle import VerifiedBundle
from opsnb.errors import ConfigError, OpsnbError
from opsnb.serving import protocol
from opsnb.serving.app import ServeOptions, create_app
from opsnb.serving.control import Control
from opsnb.serving.predlog import check_retention
from opsnb.serving.reload import verify
from opsnb.serving.store import ModelStore, Trust, escape

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
"""Loopback: the service is reachable from this machine only unless asked otherwise."""
DEFAULT_PORT = 8000


def app_from_env() -> ASGIApp:
    """Build the app from ``$OPSNB_SERVE_OPTIONS`` (how worker processes get their options)."""
    text = os.environ.get(config.SERVE_OPTIONS_ENV)
    if not text:
        raise ConfigError(
            f"${config.SERVE_OPTIONS_ENV} is not set; start the service with 'opsnb serve'"
        )
    options = ServeOptions(**json.loads(text))
    protocol.header_timeout_s = options.header_timeout_s
    return create_app(options)


class _Supervisor(Multiprocess):
    """uvicorn's worker supervisor; SIGHUP publishes a verified reload instead of restarting."""

    def __init__(self, settings: uvicorn.Config, options: ServeOptions, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self.options = options

    def handle_hup(self) -> None:
        """Verify the configured version here, then tell every worker to load it."""
        store = ModelStore.serving(self.options.bundle, self.options.store)
        try:
            trust = Trust.default(self.options.trust_keys,
                                  allow_unsigned=self.options.allow_unsigned)  # fmt: skip
            verify(store.resolve(None), trust)
        except OpsnbError as exc:
            log.error("SIGHUP: refused model version %s: %s; the workers keep their model",
                      escape(store.default), escape(exc, 400))  # fmt: skip
            return
        Control(self.options.control_dir).publish(None)


def _exit_after_drain(signum: int, _: FrameType | None) -> None:
    # uvicorn drains, restores this handler, then raises the signal again: exit normally
    # (status 0, exit handlers run) instead of dying by the signal.
    sys.exit(0)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``; port 0 lets the system choose a free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc}; pick another --port") from exc
    sock.listen(2048)
    return sock


def serve(
    options: ServeOptions,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    workers: int = 1,
    verified: VerifiedBundle | None = None,
    on_bound: Callable[[int], None] | None = None,
) -> None:
    """Serve ``options.bundle`` on ``host:port`` until SIGTERM or SIGINT.

    ``verified``: the bundle as the caller already verified it; one process loads it without
    hashing it again (worker processes each verify their own load). With one process the
    server binds the socket itself, so ``port=0`` takes a free port chosen by the system;
    ``on_bound`` is called with the port actually bound (before the model loads: poll
    ``/ready``).
    """
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    if port == 0 and workers > 1:
        raise ConfigError("port 0 (a free port) needs --workers 1; pass a fixed --port")
    check_retention(options.log_max_mb, options.log_max_age_days, options.log_keep)
    protocol.header_timeout_s = options.header_timeout_s
    hosts = options.allowed_hosts if host in ("127.0.0.1", "::1", "localhost") else (
        *options.allowed_hosts, host)  # fmt: skip
    options = dataclasses.replace(options, allowed_hosts=tuple(hosts))
    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": "warning",
        "access_log": False,  # the prediction log is the access log; a line per request costs
        "timeout_graceful_shutdown": max(1, round(options.drain_s)),
        # by name: a worker imports it after it started answering the supervisor's pings
        "http": "opsnb.serving.protocol:GuardedHttpTools",
        "timeout_worker_healthcheck": 30,  # a loaded machine may be slow to start a worker
        "limit_concurrency": options.max_connections,
        "timeout_keep_alive": 5,
    }
    signal.signal(signal.SIGTERM, _exit_after_drain)
    if workers == 1:
        sock = bind(host, port)
        if on_bound is not None:
            on_bound(int(sock.getsockname()[1]))
        common["port"] = sock.getsockname()[1]
        app = create_app(options, verified=verified)
        uvicorn.Server(uvicorn.Config(app, **common)).run(sockets=[sock])
        return
    if on_bound is not None:
        on_bound(port)
    with tempfile.TemporaryDirectory(prefix="opsnb-serve-") as control:
        worker_options = dataclasses.replace(options, load_first=True, control_dir=control)
        Control(control).publish(None)
        os.environ[config.SERVE_OPTIONS_ENV] = json.dumps(dataclasses.asdict(worker_options))
        settings = uvicorn.Config(
            "opsnb.serving.server:app_from_env", factory=True, workers=workers, **common
        )
        _Supervisor(settings, worker_options, sockets=[settings.bind_socket()]).run()

"""Run the prediction service under uvicorn (uvloop and httptools when installed).

One process by default. ``workers > 1`` starts that many processes sharing the port (uvicorn's
supervisor); each loads the bundle itself before it accepts connections, and they append to one
SQLite log. ``SIGTERM`` stops
admission, lets admitted requests finish for up to ``drain_s`` seconds and exits; ``SIGHUP``
reloads the bundle (with several workers, uvicorn's supervisor restarts them one by one).
After a drain the process exits with status 0.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from opsnb import config
from opsnb.bundle import VerifiedBundle
from opsnb.errors import ConfigError
from opsnb.serving.app import ServeOptions, create_app

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
    return create_app(ServeOptions(**json.loads(text)))


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
    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": "warning",
        "access_log": False,  # the prediction log is the access log; a line per request costs
        "timeout_graceful_shutdown": max(1, round(options.drain_s)),
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
    worker_options = dataclasses.replace(options, load_first=True)
    os.environ[config.SERVE_OPTIONS_ENV] = json.dumps(dataclasses.asdict(worker_options))
    uvicorn.run("opsnb.serving.server:app_from_env", factory=True, workers=workers, **common)

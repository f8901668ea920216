"""How ``opsnb serve`` runs: :class:`ServeOptions`, every field with its documented default."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, kw_only=True)
class ServeOptions:
    """How the service runs; every field has the documented default of ``opsnb serve``.

    Attributes:
        bundle: the run folder (``runs/<id>``) or bundle folder to serve.
        log_path: the SQLite prediction log (default: ``predictions.sqlite`` in ``bundle``).
        log_sync: SQLite ``synchronous`` mode of the log (NORMAL survives ``kill -9``).
        log_max_mb: rotate the log once its rows take this many MiB (None: no size bound).
        log_max_age_days: rotate the log once its oldest row is this old (None: no age bound).
        log_keep: rotated archives kept beside the log (1..9); the oldest are deleted.
        max_batch: most rows in one predictor call.
        max_wait_ms: longest a request waits for batch-mates.
        budget_ms: latency budget; past it requests are answered 503.
        max_body: largest accepted request body in bytes (413 above, before it is read).
        max_records: most records in one request.
        range_slack: how far past the training range values may go, in spans (None: any).
        drain_s: how long SIGTERM waits for admitted requests.
        load_first: load the model before accepting connections (worker processes that share
            a port do this, so none takes requests it cannot answer); otherwise the server
            answers ``/health`` at once and ``/ready`` turns true once the model is loaded.
        store: the model store reloads pick versions from (default: the folder holding
            ``bundle``; see :mod:`opsnb.serving.store`).
        trust_keys: public key files trusted beside the project key.
        allow_unsigned: load bundles without a trusted signature.
        admin_token: bearer token of ``/admin/reload`` (None: the endpoint is off).
        feedback_token: bearer token ``/feedback`` requires (see :mod:`opsnb.serving.admin`).
        allowed_hosts: host names admin requests may name in ``Host`` (beside loopback).
        body_timeout_s: how long a request body may take to arrive (408 after).
        header_timeout_s: how long request headers may take to arrive (connection closed).
        max_connections: open connections at most (uvicorn answers 503 past it).
        control_dir: the workers' shared instruction folder (set by :func:`serve`).
    """

    bundle: str
    log_path: str | None = None
    log_sync: str = "NORMAL"
    log_max_mb: float | None = 64.0
    log_max_age_days: float | None = None
    log_keep: int = 8
    max_batch: int = 256
    max_wait_ms: float = 2.0
    budget_ms: float = 250.0
    max_body: int = 1 << 20
    max_records: int = 1000
    range_slack: float | None = 1.0
    drain_s: float = 10.0
    load_first: bool = False
    store: str | None = None
    trust_keys: tuple[str, ...] = ()
    allow_unsigned: bool = False
    admin_token: str | None = field(default=None, repr=False)
    feedback_token: str | None = field(default=None, repr=False)
    allowed_hosts: tuple[str, ...] = ()
    body_timeout_s: float = 10.0
    header_timeout_s: float = 10.0
    max_connections: int = 1024
    control_dir: str | None = None

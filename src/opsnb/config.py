"""Where things live, what opsnb reads from the environment, and defaults shared by modules.

Every path convention and every ``OPSNB_*`` environment variable is defined here, once.

Environment variables:

- ``OPSNB_RUNS_DIR`` — the runs folder (default ``<project>/runs``); tests point it elsewhere.
- ``OPSNB_COMPILE_CACHE`` — the compile cache (default ``<runs>/.cache/compile``).
- ``OPSNB_SERVE_OPTIONS`` — set by ``opsnb serve --workers N`` for its worker processes.
- ``OPSNB_SIGNING_KEY`` — the private key that signs bundles (default
  ``~/.config/opsnb/signing-key.pem``).
- ``OPSNB_TRUSTED_KEYS`` — more public keys ``opsnb serve`` trusts (PEM files).
- ``OPSNB_ADMIN_TOKEN``, ``OPSNB_FEEDBACK_TOKEN`` — the service's bearer tokens.

- ``OPSNB_PROJECT`` — the project root; the runner sets it for the stage kernels it starts.
- ``OPSNB_BENCH_MODEL``, ``OPSNB_BENCH_SCHEMA`` — set by the service benchmark for the
  hand-written servers it starts (:mod:`opsnb.bench.baselines`).
- ``OPSNB_TEST_PARTITION_DELAY_S`` — seconds each Dask scoring partition sleeps first (tests
  set it on running workers to kill one mid-job); unset in normal use.
"""

from __future__ import annotations

import os
from pathlib import Path

RUNS_ENV = "OPSNB_RUNS_DIR"
"""Environment variable that moves the runs folder (tests point it at a temporary folder)."""

SIGNING_KEY_ENV = "OPSNB_SIGNING_KEY"
"""Environment variable naming the project's private signing key (default: see
:func:`signing_key_path`)."""

TRUSTED_KEYS_ENV = "OPSNB_TRUSTED_KEYS"
"""Environment variable: more public keys ``opsnb serve`` trusts (PEM files, ``os.pathsep``
separated), beside the project key."""

ADMIN_TOKEN_ENV = "OPSNB_ADMIN_TOKEN"
"""Environment variable: the bearer token of the service's admin endpoint (unset: endpoint off)."""

FEEDBACK_TOKEN_ENV = "OPSNB_FEEDBACK_TOKEN"
"""Environment variable: the bearer token ``/feedback`` requires (the admin token also works)."""

COMPILE_CACHE_ENV = "OPSNB_COMPILE_CACHE"
"""Environment variable that moves the compile cache."""

SERVE_OPTIONS_ENV = "OPSNB_SERVE_OPTIONS"
"""Environment variable carrying the serving options (JSON) to worker processes."""

BENCH_MODEL_ENV = "OPSNB_BENCH_MODEL"
"""The model file the service benchmark's hand-written servers load."""

BENCH_SCHEMA_ENV = "OPSNB_BENCH_SCHEMA"
"""The ``schema.json`` the service benchmark's hand-written servers encode rows with."""
PARTITION_DELAY_ENV = "OPSNB_TEST_PARTITION_DELAY_S"
"""Test knob read by Dask scoring partitions: seconds to sleep before scoring."""

LAB_RUN = "lab"
"""The run an analyst's notebook uses when no run folder is given."""

LATEST = "latest"
"""The link in the runs folder to the last run whose every stage succeeded."""

RANGE_TOLERANCE = 0.2
"""A numeric feature's accepted range: its observed min/max widened by this share of the span."""

PROJECT_ENV = "OPSNB_PROJECT"
"""Environment variable naming the project root (the runner sets it for stage kernels)."""

ARTIFACT_MODE = 0o644
"""Permissions of every artifact opsnb writes: the owner writes, the group and others read (a
non-root serving container, a colleague's notebook). The one place this is decided."""


def _project_at(folder: Path) -> bool:
    return (folder / "pyproject.toml").is_file() and (folder / "notebooks").is_dir()


def project_root(start: Path | None = None) -> Path:
    """Return the project root: the folder holding ``pyproject.toml`` and ``notebooks/``.

    Looked for in order: ``$OPSNB_PROJECT``; at or above ``start`` (default: cwd); at or above
    this package's own source (an editable install), so a stage kernel whose cwd is a run folder
    outside the project still finds the project's frozen contracts and compile cache. Falls back
    to ``start`` itself, so opsnb also works from an installed package.
    """
    configured = os.environ.get(PROJECT_ENV)
    if configured and _project_at(Path(configured)):
        return Path(configured).resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents, *Path(__file__).resolve().parents):
        if _project_at(folder):
            return folder
    return here


def runs_root() -> Path:
    """Return the folder holding one sub-folder per run (``$OPSNB_RUNS_DIR`` or ``<root>/runs``)."""
    configured = os.environ.get(RUNS_ENV)
    return Path(configured).resolve() if configured else project_root() / "runs"


def latest_run() -> Path:
    """Return ``<runs>/latest``: the last run whose every stage succeeded."""
    return runs_root() / LATEST


def notebooks_dir() -> Path:
    """Return the folder of the stage notebooks."""
    return project_root() / "notebooks"


def resolve_run_dir(run_dir: str | os.PathLike[str]) -> Path:
    """Turn a notebook's ``run_dir`` parameter into an absolute folder.

    A bare name (no path separator) is a run id under :func:`runs_root`; anything else is a path.
    """
    text = os.fspath(run_dir)
    if text and os.sep not in text and "/" not in text:
        return runs_root() / text
    return Path(text).expanduser().resolve()


def signing_key_path() -> Path:
    """Where the private key that signs every bundle built here lives (created 0600 on first use).

    ``$OPSNB_SIGNING_KEY``, else ``$XDG_CONFIG_HOME/opsnb/signing-key.pem`` (default
    ``~/.config/opsnb/``): outside every run folder, so no run, bundle or container image built
    from a run carries it, and the same wherever a notebook kernel or the server runs.
    """
    configured = os.environ.get(SIGNING_KEY_ENV)
    if configured:
        return Path(configured).expanduser().resolve()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser().resolve() / "opsnb" / "signing-key.pem"


def cache_dir() -> Path:
    """Return ``<runs>/.cache``: what can be rebuilt, shared by every run."""
    return runs_root() / ".cache"


def compile_cache_dir() -> Path:
    """Return the compile cache: ``$OPSNB_COMPILE_CACHE`` or ``<runs>/.cache/compile``."""
    configured = os.environ.get(COMPILE_CACHE_ENV)
    return Path(configured) if configured else cache_dir() / "compile"


def bench_models_dir() -> Path:
    """Return where ``opsnb bench`` keeps the large models it trained (reused next time)."""
    return cache_dir() / "bench"


def contract_path(key: str) -> Path:
    """Where the frozen contract of the data set ``key`` lives: ``<runs>/contracts/<key>.json``."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in key)
    return runs_root() / "contracts" / f"{safe}.json"


def executed_notebooks_dir(run_dir: str | os.PathLike[str]) -> Path:
    """Where a run keeps each stage's executed notebook (with its outputs or its traceback)."""
    return Path(run_dir) / "notebooks"


def failed_dir(run_dir: Path, stage: str) -> Path:
    """Where a failed stage's partial outputs are set aside, never promoted."""
    return run_dir / "failed" / stage


def receipt_path(run_dir: Path, stage: str) -> Path:
    """Where a stage's kernel proves to the runner that its final cell ran (read, then removed)."""
    return run_dir / ".receipts" / f"{stage}.json"


def prediction_log_path(served: str | os.PathLike[str]) -> Path:
    """The default prediction log of a served run (or bundle) folder: its ``predictions.sqlite``."""
    return Path(served).expanduser().resolve() / "predictions.sqlite"

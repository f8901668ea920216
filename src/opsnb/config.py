"""Where things live: the project root, the runs folder and run-folder resolution."""

from __future__ import annotations

import os
from pathlib import Path

RUNS_ENV = "OPSNB_RUNS_DIR"
"""Environment variable that moves the runs folder (tests point it at a temporary folder)."""

LAB_RUN = "lab"
"""The run an analyst's notebook uses when no run folder is given."""


def project_root(start: Path | None = None) -> Path:
    """Return the nearest folder at or above ``start`` (default: cwd) holding ``pyproject.toml``.

    Falls back to ``start`` itself, so opsnb also works from an installed package.
    """
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "notebooks").is_dir():
            return folder
    return here


def runs_root() -> Path:
    """Return the folder holding one sub-folder per run (``$OPSNB_RUNS_DIR`` or ``<root>/runs``)."""
    configured = os.environ.get(RUNS_ENV)
    return Path(configured).resolve() if configured else project_root() / "runs"


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


def receipt_path(run_dir: Path, stage: str) -> Path:
    """Where a stage's kernel proves to the runner that its final cell ran (read, then removed)."""
    return run_dir / ".receipts" / f"{stage}.json"

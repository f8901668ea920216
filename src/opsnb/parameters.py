"""The stage notebooks' parameters: what each notebook declares, and routing given values to it.

A parameter given to ``opsnb run`` goes to every stage whose ``parameters`` cell declares it; a
name that no stage declares is refused before any kernel starts (papermill itself only warns),
with the list of the names that exist. ``run_dir`` is the runner's own.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nbformat
import papermill

from opsnb import config
from opsnb.errors import ConfigError, StageError
from opsnb.stages import STAGES, Stage

RESERVED_PARAMETERS = frozenset({"run_dir"})


def notebook_path(stage: Stage) -> Path:
    """Return the source notebook of ``stage``."""
    return config.notebooks_dir() / stage.notebook


def declared_parameters(stage: Stage) -> dict[str, Any]:
    """Return the parameters declared in the stage notebook's ``parameters`` cell, by name.

    Raises:
        StageError: the notebook is missing or does not have exactly one ``parameters`` cell.
    """
    path = notebook_path(stage)
    if not path.is_file():
        raise StageError(f"stage '{stage.name}': notebook {path} does not exist", stage=stage.name)
    cells = nbformat.read(path, as_version=4).cells  # type: ignore[no-untyped-call]
    tagged = sum("parameters" in c.get("metadata", {}).get("tags", []) for c in cells)
    if tagged != 1:
        raise StageError(
            f"stage '{stage.name}': {path.name} has {tagged} cells tagged 'parameters'; "
            "papermill needs exactly one (View > Cell Toolbar > Tags in Jupyter)",
            stage=stage.name,
        )
    return dict(papermill.inspect_notebook(str(path)))


def resolved_parameters(stage: Stage, given: Mapping[str, Any]) -> dict[str, Any]:
    """The values ``stage`` runs with: its notebook's defaults, overridden by ``given``.

    A default that is not a plain literal (an expression) is recorded as its source text.
    """
    values: dict[str, Any] = {}
    for name, spec in declared_parameters(stage).items():
        if name in RESERVED_PARAMETERS:
            continue
        try:
            values[name] = ast.literal_eval(spec["default"])
        except (ValueError, SyntaxError):
            values[name] = spec["default"]
    return {**values, **given}


def route_parameters(
    params: Mapping[str, Any], stages: tuple[Stage, ...] = STAGES
) -> dict[str, dict[str, Any]]:
    """Give each stage the parameters its notebook declares; refuse names that no stage declares."""
    declared = {s.name: declared_parameters(s) for s in stages}
    reserved = sorted(RESERVED_PARAMETERS & params.keys())
    if reserved:
        raise ConfigError(f"parameter {reserved[0]!r} is set by the runner and cannot be given")
    known = set().union(*declared.values()) - RESERVED_PARAMETERS
    unknown = sorted(params.keys() - known)
    if unknown:
        raise ConfigError(
            f"no stage declares the parameter(s) {', '.join(map(repr, unknown))}; "
            f"declared parameters: {', '.join(sorted(known))}"
        )
    return {
        name: {k: v for k, v in params.items() if k in names} for name, names in declared.items()
    }

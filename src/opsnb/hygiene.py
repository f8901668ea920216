"""Notebook hygiene: stage notebooks stay thin, parameterised and free of stray outputs.

Rules (:func:`check`): exactly one cell tagged ``parameters``; no ``def`` or ``class`` in a
code cell (logic belongs in ``src/opsnb`` with a test); no outputs or execution counts except
in cells tagged ``nbval-check-output``, whose committed output nbval compares in CI (they keep
the count :data:`CHECKED_COUNT`, since nbval treats a cell without one as never run).
:func:`clean` fixes what can be fixed automatically, and :func:`adopt_checked_outputs` refreshes
the checked cells' outputs from an executed copy (e.g. ``runs/latest/notebooks``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import nbformat

CHECK_TAG = "nbval-check-output"
PARAMETERS_TAG = "parameters"
CHECKED_COUNT = 1
"""The execution count a checked cell keeps: nbval skips a cell without one as never run."""


def _read(path: Path) -> Any:
    return nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]


def _write(notebook: Any, path: Path) -> None:
    nbformat.write(notebook, path)  # type: ignore[no-untyped-call]


def _tags(cell: Any) -> list[str]:
    tags: list[str] = cell.get("metadata", {}).get("tags", [])
    return tags


def check(path: str | os.PathLike[str]) -> list[str]:
    """Return every hygiene problem of the notebook at ``path`` (empty when it is clean)."""
    nb_path = Path(path)
    try:
        notebook = _read(nb_path)
    except Exception as exc:  # nbformat raises JSON and validation errors of several kinds
        return [f"{nb_path}: not a readable notebook ({exc})"]
    problems = []
    tagged = sum(PARAMETERS_TAG in _tags(c) for c in notebook.cells)
    if tagged != 1:
        problems.append(
            f"{nb_path}: {tagged} cells tagged '{PARAMETERS_TAG}'; papermill needs exactly one"
        )
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        where = f"{nb_path}: cell {index}"
        if any(line.lstrip().startswith(("def ", "class ")) for line in cell.source.splitlines()):
            problems.append(f"{where} defines a function or class; move it into src/opsnb")
        checked = CHECK_TAG in _tags(cell)
        expected = CHECKED_COUNT if checked and cell.get("outputs") else None
        if cell.get("execution_count") != expected:
            problems.append(
                f"{where} has execution count {cell.get('execution_count')}, expected "
                f"{expected}; run `make clean-notebooks`"
            )
        if cell.get("outputs") and not checked:
            problems.append(
                f"{where} carries outputs but is not tagged '{CHECK_TAG}'; "
                "run `make clean-notebooks`"
            )
    return problems


def clean(path: str | os.PathLike[str]) -> bool:
    """Strip execution counts, and outputs of cells nbval does not check; True if it changed."""
    nb_path = Path(path)
    notebook = _read(nb_path)
    changed = False
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        if cell.get("outputs") and CHECK_TAG not in _tags(cell):
            cell.outputs = []
            changed = True
        count = CHECKED_COUNT if cell.get("outputs") else None
        if cell.get("execution_count") != count:
            cell.execution_count = count
            changed = True
        for output in cell.get("outputs", []):
            if output.get("execution_count") not in (None, count):
                output["execution_count"] = count
                changed = True
    if changed:
        _write(notebook, nb_path)
    return changed


def adopt_checked_outputs(
    source: str | os.PathLike[str], executed: str | os.PathLike[str]
) -> list[str]:
    """Copy the outputs of ``source``'s checked cells from ``executed`` (matched by cell id).

    Returns the ids of the cells whose output changed.
    """
    src_path = Path(source)
    notebook = _read(src_path)
    ran = {c.get("id"): c for c in _read(Path(executed)).cells}
    changed = []
    for cell in notebook.cells:
        if cell.cell_type == "code" and CHECK_TAG in _tags(cell) and cell.get("id") in ran:
            outputs = ran[cell.id].get("outputs", [])
            if outputs != cell.outputs:
                cell.outputs = outputs
                changed.append(cell.id)
    if changed:
        _write(notebook, src_path)
        clean(src_path)
    return changed

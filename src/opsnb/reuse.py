"""Fingerprints and reuse: when a stage must run again, and where an intact earlier result is.

A stage's fingerprint hashes its notebook, parameters, input hashes, the inputs it reads from
outside the run folder and opsnb's own code (:func:`code_hash`). A stage whose fingerprint matches
a successful, intact execution in this run or another run of the project is reused (its
artifacts copied, never linked) rather than executed. :mod:`opsnb.pipeline` decides; this module
computes and finds.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from opsnb import config
from opsnb.artifacts import RunManifest, read_json, sha256_file, sha256_json
from opsnb.errors import ArtifactError
from opsnb.parameters import notebook_path
from opsnb.stages import FROZEN_CONTRACT, Stage


@cache
def code_hash() -> str:
    """Hash of opsnb's own source, so a code change re-runs the stages (content, not mtime)."""
    package = Path(__file__).parent  # the opsnb package
    return sha256_json(
        {str(p.relative_to(package)): sha256_file(p) for p in sorted(package.rglob("*.py"))}
    )


def fingerprint(
    stage: Stage,
    params: Mapping[str, Any],
    inputs: Mapping[str, str],
    outside: Mapping[str, str] | None = None,
) -> str:
    """Return the hash that decides whether ``stage`` must run again."""
    return sha256_json(
        {
            "stage": stage.name,
            "notebook": sha256_file(notebook_path(stage)),
            "params": dict(params),
            "inputs": dict(inputs),
            "outside": dict(outside or {}),
            "code": code_hash(),
        }
    )


def _contract_of(folder: Path) -> Path:
    return config.contract_path(read_json(folder / "data/card.json")["key"])


OUTSIDE: dict[str, Callable[[Path], Path]] = {FROZEN_CONTRACT: _contract_of}
"""Where each named input from outside the run folder is, given the run folder."""


def outside_inputs(stage: Stage, folder: Path) -> dict[str, str]:
    """The SHA-256 of each input ``stage`` reads from outside its run folder (or ``absent``)."""
    paths = {name: OUTSIDE[name](folder) for name in stage.outside}
    return {name: sha256_file(p) if p.is_file() else "absent" for name, p in paths.items()}


def _all_verify(manifest: RunManifest, relpaths: tuple[str, ...]) -> bool:
    """True when every artifact in ``relpaths`` is sealed in ``manifest`` and intact."""
    try:
        for relpath in relpaths:
            manifest.verify(relpath)
    except ArtifactError:
        return False
    return True


def _find_reusable(stage: Stage, fp: str, exclude: Path) -> RunManifest | None:
    """Return the newest other run with a successful, intact execution of fingerprint ``fp``.

    Only runs in the project's runs folder count: a folder that merely sits beside ``exclude``
    (a scratch run elsewhere on disk) is never a source.
    """
    manifests = sorted(config.runs_root().glob("*/manifest.json"), key=lambda p: p.stat().st_mtime)
    for path in reversed(manifests):
        if path.parent.resolve() == exclude.resolve() or path.parent.is_symlink():
            continue
        other = RunManifest.load(path.parent)
        if _succeeded_with(other, stage, fp):
            return other
    return None


def _succeeded_with(manifest: RunManifest, stage: Stage, fp: str) -> bool:
    """True when ``stage`` succeeded in ``manifest`` with fingerprint ``fp`` and is intact."""
    record = manifest.stages.get(stage.name, {})
    return (
        record.get("status") == "succeeded"
        and record.get("fingerprint") == fp
        and _all_verify(manifest, stage.produces)
    )


def _copy(src: Path, dst: Path) -> None:
    """Copy an artifact into another run.

    A copy, not a link: editing one run must never reach into another, so the last good run
    stays intact whatever happens to this one.
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)

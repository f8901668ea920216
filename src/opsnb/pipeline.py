"""Run the stage notebooks in order with papermill, as one pipeline, into ``runs/<run-id>/``.

The runner checks the whole pipeline before any kernel starts (every notebook exists, has one
``parameters`` cell and declares each parameter it is given), then runs each stage: it verifies
the stage's inputs against the manifest, skips a stage whose fingerprint (notebook, parameters,
input hashes, opsnb's own code) matches a successful earlier execution, and otherwise executes
the notebook. A failed stage marks the run failed, keeps the executed notebook with its
traceback, moves partial outputs to ``failed/<stage>/`` and stops; ``runs/latest`` only ever
points at a run whose every stage succeeded.

The runner alone writes the manifest record of a stage it executes. The kernel it starts
recognises that (:func:`executing`), seals the stage's outputs, and proves its final cell ran
by leaving a receipt (:func:`write_receipt`) that the runner takes into the record.
"""

from __future__ import annotations

import logging
import os
import resource
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import papermill

from opsnb import config, report
from opsnb.artifacts import RunManifest, now_iso, read_json, write_json
from opsnb.errors import ArtifactError, ConfigError, StageError
from opsnb.kernels import ensure_kernel, quiet_kernel_manager
from opsnb.parameters import notebook_path, resolved_parameters, route_parameters
from opsnb.problem import Problem
from opsnb.reuse import (
    OUTSIDE,
    _copy,
    _find_reusable,
    _succeeded_with,
    code_hash,
    fingerprint,
    outside_inputs,
)
from opsnb.stages import STAGES, Stage, present_inputs, stage_by_name

log = logging.getLogger(__name__)

__all__ = [
    "OUTSIDE", "RunResult", "StageOutcome", "code_hash", "executing", "fingerprint", "new_run_id",
    "outside_inputs", "run", "update_latest", "write_receipt",
]  # fmt: skip


@dataclass
class StageOutcome:
    """What happened to one stage in a run."""

    stage: str
    status: str  # "executed", "unchanged" or "reused"
    wall_s: float
    detail: str = ""


@dataclass
class RunResult:
    """The result of :func:`run`: where it ran and what each stage did."""

    run_id: str
    run_dir: Path
    outcomes: list[StageOutcome] = field(default_factory=list)

    @property
    def manifest(self) -> RunManifest:
        """The run's manifest as it is on disk now."""
        return RunManifest.load(self.run_dir)


# -- running ---------------------------------------------------------------------------------
def new_run_id() -> str:
    """Return a fresh, sortable run id: UTC time plus a random suffix."""
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def _select(from_stage: str | None, until: str | None) -> tuple[Stage, ...]:
    names = [s.name for s in STAGES]
    start = names.index(stage_by_name(from_stage).name) if from_stage else 0
    stop = names.index(stage_by_name(until).name) + 1 if until else len(STAGES)
    if start >= stop:
        raise ConfigError(f"--from {from_stage} comes after --until {until}; nothing to run")
    return STAGES[start:stop]


def _children_cpu() -> float:
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return kids.ru_utime + kids.ru_stime


def update_latest(run_dir: Path) -> None:
    """Point ``runs/latest`` at ``run_dir`` atomically (a relative symlink)."""
    link = run_dir.parent / config.LATEST
    tmp = run_dir.parent / f".latest.{secrets.token_hex(4)}"
    tmp.symlink_to(run_dir.name)
    os.replace(tmp, link)


def run(
    params: Mapping[str, Any] | None = None,
    *,
    run_id: str | None = None,
    run_dir: Path | None = None,
    from_stage: str | None = None,
    until: str | None = None,
    force: bool = False,
    on_stage: Callable[[Stage, StageOutcome | None], None] | None = None,
    report_html: bool = True,
) -> RunResult:
    """Run the pipeline (or the stages ``from_stage``..``until``) and return what happened.

    Args:
        params: parameter overrides; each goes to every stage that declares it.
        run_id: an existing or new run id under the runs folder (default: a fresh id).
        run_dir: an explicit run folder instead of ``run_id`` (notebooks use this).
        from_stage: first stage to run; earlier stages must have succeeded in this run.
        until: last stage to run.
        force: execute every selected stage even when its fingerprint is unchanged.
        on_stage: called before each stage with ``None`` and after it with its outcome.
        report_html: write ``report.html`` at the end (a notebook building its inputs does not:
            its own stage, the one the report would miss, has not run yet).

    Raises:
        ConfigError: an unknown parameter or stage, before any kernel starts.
        StageError: a stage failed; the message says how to resume.
    """
    params = dict(params or {})
    selected = _select(from_stage, until)
    routed = route_parameters(params)
    if from_stage and run_id is None and run_dir is None:
        raise ConfigError("--from needs --run-id: the earlier stages' outputs come from that run")
    folder = run_dir or config.runs_root() / (run_id or new_run_id())
    folder.mkdir(parents=True, exist_ok=True)
    manifest = RunManifest.load(folder)
    manifest.data.update(status="running", updated=now_iso())
    manifest.save()
    kernel = ensure_kernel()
    result = RunResult(folder.name, folder)
    try:
        for stage in selected:
            if on_stage:
                on_stage(stage, None)
            outcome = _run_stage(stage, routed[stage.name], folder, kernel, force=force)
            _record_outcome(folder, outcome)
            result.outcomes.append(outcome)
            if on_stage:
                on_stage(stage, outcome)
    except BaseException:
        # A failed run gets its page too: the timeline shows where it stopped and why.
        if report_html:
            _write_report(folder)
        raise
    manifest = RunManifest.load(folder)
    complete = all(manifest.stages.get(s.name, {}).get("status") == "succeeded" for s in STAGES)
    manifest.data.update(status="succeeded" if complete else "partial", updated=now_iso())
    manifest.save()
    if report_html:
        _write_report(folder)  # after the status: the page says how the run ended
    if complete and run_dir is None:
        update_latest(folder)
    return result


def _record_outcome(folder: Path, outcome: StageOutcome) -> None:
    """Note what this invocation did with the stage; keep stages in run order; the problem."""
    manifest = RunManifest.load(folder)
    manifest.stages.setdefault(outcome.stage, {})["outcome"] = outcome.status
    order = [s.name for s in STAGES]
    manifest.data["stages"] = dict(
        sorted(manifest.stages.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 99)
    )
    resolved = _resolved_problem(manifest)
    if resolved is not None:
        manifest.data["problem"] = resolved
    manifest.save()


def _resolved_problem(manifest: RunManifest) -> dict[str, Any] | None:
    """``problem.json`` with the task and target the data resolved (once the schema exists)."""
    if "problem.json" not in manifest.artifacts or "schema.json" not in manifest.artifacts:
        return None
    stated = Problem.from_dict(read_json(manifest.run_dir / "problem.json"))
    schema = read_json(manifest.run_dir / "schema.json")
    return stated.resolve(task=schema["task"], target=schema["target"]).to_dict()


def _write_report(folder: Path) -> None:
    """Build ``report.html``; a report that cannot be built is logged, never fails the run."""
    try:
        path = report.build(folder)
    except Exception:  # the run's own outcome matters more than its page
        log.exception("could not build the report of %s", folder)
        return
    manifest = RunManifest.load(folder)
    manifest.data["report"] = path.name
    manifest.save()


def _run_stage(
    stage: Stage, params: dict[str, Any], folder: Path, kernel: str, *, force: bool
) -> StageOutcome:
    t0 = time.perf_counter()
    manifest = RunManifest.load(folder)
    reads = present_inputs(stage, manifest.artifacts)
    try:
        for rel in reads:
            manifest.verify(rel)  # hashes the file and checks it against its seal
    except ArtifactError as exc:
        raise StageError(
            f"stage '{stage.name}' cannot start: {exc}", stage=stage.name, run_id=folder.name
        ) from exc
    inputs = {rel: manifest.artifacts[rel]["sha256"] for rel in reads}
    fp = fingerprint(stage, params, inputs, outside_inputs(stage, folder))
    if not force and _succeeded_with(manifest, stage, fp):
        return StageOutcome(stage.name, "unchanged", time.perf_counter() - t0)
    if not force and (source := _find_reusable(stage, fp, folder)) is not None:
        _reuse(stage, source, manifest)
        return StageOutcome(
            stage.name, "reused", time.perf_counter() - t0, f"from run {source.run_dir.name}"
        )
    _start(stage, params, inputs, fp, folder)
    outcome = _execute(stage, params, folder, kernel)
    if stage.outside:
        _settle_outside(stage, params, inputs, folder)
    return outcome


def _settle_outside(
    stage: Stage, params: dict[str, Any], inputs: dict[str, str], folder: Path
) -> None:
    """Fingerprint the inputs from outside the run folder as the stage left them.

    A stage may create such an input (the first prepare of a data set freezes its contract);
    its outputs agree with it, so the next run with that contract is unchanged, and a contract
    changed after that is not.
    """
    manifest = RunManifest.load(folder)
    outside = outside_inputs(stage, folder)
    manifest.stages[stage.name].update(
        outside=outside, fingerprint=fingerprint(stage, params, inputs, outside)
    )
    manifest.save()


def _reuse(stage: Stage, source: RunManifest, manifest: RunManifest) -> None:
    """Bring a matching earlier execution's outputs into this run (copied, re-sealed)."""
    for relpath in stage.produces:
        _copy(source.run_dir / relpath, manifest.run_dir / relpath)
        manifest.seal(relpath, stage=stage.name)
    executed = config.executed_notebooks_dir(source.run_dir) / stage.notebook
    if executed.is_file():
        _copy(executed, config.executed_notebooks_dir(manifest.run_dir) / stage.notebook)
    manifest.stages[stage.name] = {
        **source.stages[stage.name],
        "reused_from": source.run_dir.name,
    }
    manifest.save()


def _start(
    stage: Stage, params: dict[str, Any], inputs: dict[str, str], fp: str, folder: Path
) -> None:
    """Record the stage as running (its earlier outputs in this run no longer count)."""
    manifest = RunManifest.load(folder)
    manifest.unseal_stage(stage.name)
    manifest.stages[stage.name] = {
        "status": "running",
        "started": now_iso(),
        "params": resolved_parameters(stage, params),
        "overrides": params,
        "inputs": inputs,
        "fingerprint": fp,
        "notebook": str(config.executed_notebooks_dir(Path()) / stage.notebook),
        "runner_pid": os.getpid(),  # the kernel's parent: how it knows the runner keeps this
    }
    manifest.save()


def executing(manifest: RunManifest, stage: Stage) -> bool:
    """True in the kernel this runner started for ``stage`` (the runner keeps its record).

    The runner records its process id in the stage's record before it starts the kernel, and
    the kernel is the runner's child; a notebook opened by hand has another parent.
    """
    record = manifest.stages.get(stage.name, {})
    return record.get("status") == "running" and record.get("runner_pid") == os.getppid()


def write_receipt(run_dir: Path, stage: Stage, done: dict[str, Any]) -> None:
    """From a kernel under the runner: the stage's final cell ran, with these measurements."""
    write_json(config.receipt_path(run_dir, stage.name), done)


def _take_receipt(run_dir: Path, stage: Stage) -> dict[str, Any] | None:
    """The kernel's receipt for ``stage`` (removed as it is read), or None if it left none."""
    path = config.receipt_path(run_dir, stage.name)
    if not path.is_file():
        return None
    done: dict[str, Any] = read_json(path)
    path.unlink()
    return done


def _execute(stage: Stage, params: dict[str, Any], folder: Path, kernel: str) -> StageOutcome:
    """Execute the stage notebook with papermill; record timings; fail loudly."""
    executed = config.executed_notebooks_dir(folder) / stage.notebook
    executed.parent.mkdir(parents=True, exist_ok=True)
    t0, cpu0 = time.perf_counter(), _children_cpu()
    error: BaseException | None = None
    config.receipt_path(folder, stage.name).unlink(missing_ok=True)
    # The kernel's cwd is the run folder, which may lie outside the project: name the project.
    saved_project = os.environ.get(config.PROJECT_ENV)
    os.environ[config.PROJECT_ENV] = str(config.project_root())
    try:
        papermill.execute_notebook(
            str(notebook_path(stage)),
            str(executed),
            parameters={**params, "run_dir": str(folder)},
            kernel_name=kernel,
            cwd=str(folder),
            progress_bar=False,
            log_output=False,
            kernel_manager_class=quiet_kernel_manager(folder / "logs" / f"{stage.name}.log"),
        )
    except Exception as exc:  # papermill raises its own errors and the kernel's
        error = exc
    finally:
        if saved_project is None:
            del os.environ[config.PROJECT_ENV]
        else:
            os.environ[config.PROJECT_ENV] = saved_project
    wall = time.perf_counter() - t0
    done = _take_receipt(folder, stage)
    manifest = RunManifest.load(folder)
    record = manifest.stages[stage.name]
    record.update(wall_s=round(wall, 3), cpu_s=round(_children_cpu() - cpu0, 3))
    if error is None and done is None:
        error = StageError(
            "the notebook ended before its final cell (stage.finish()) ran", stage=stage.name
        )
    if error is not None:
        _fail(stage, manifest, error)
    record.update(status="succeeded", **(done or {}))
    manifest.save()
    return StageOutcome(stage.name, "executed", wall)


def _fail(stage: Stage, manifest: RunManifest, error: BaseException) -> NoReturn:
    """Mark the stage and run failed, set partial outputs aside, raise a StageError."""
    for relpath in manifest.unseal_stage(stage.name):
        _set_aside(manifest.run_dir, relpath, stage)
    for relpath in stage.produces:
        if (manifest.run_dir / relpath).exists():
            _set_aside(manifest.run_dir, relpath, stage)
    message = _error_summary(error)
    manifest.stages[stage.name].update(status="failed", finished=now_iso(), error=message)
    manifest.data.update(status="failed", updated=now_iso())
    manifest.save()
    run_id = manifest.run_dir.name
    raise StageError(
        f"stage '{stage.name}' failed: {message}\n"
        f"executed notebook with the traceback: {manifest.run_dir / 'notebooks' / stage.notebook}\n"
        f"resume with: opsnb run --run-id {run_id} --from {stage.name}",
        stage=stage.name,
        run_id=run_id,
    ) from error


def _set_aside(run_dir: Path, relpath: str, stage: Stage) -> None:
    src = run_dir / relpath
    if src.exists():
        dst = config.failed_dir(run_dir, stage.name) / relpath
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)


def _error_summary(error: BaseException) -> str:
    ename, evalue = getattr(error, "ename", None), getattr(error, "evalue", None)
    if ename:
        return f"{ename}: {evalue}"
    return f"{type(error).__name__}: {error}"

"""What a stage notebook calls: :func:`open_stage` and the :class:`StageContext` it returns.

A notebook opens its stage with ``stage = open_stage("train", run_dir)``, reads inputs through
:meth:`StageContext.input` (hash-verified), writes outputs through the ``write_*`` methods
(atomic, sealed), shows its evidence with :meth:`StageContext.figure` and
:meth:`StageContext.table`, states its one-line :meth:`StageContext.verdict`, and ends with
:meth:`StageContext.finish`, which writes the stage's story (``story/<stage>.json``, for
``report.html``) and refuses to mark the stage done while a declared output is missing.

Exactly one process writes a stage's record in the run manifest. Under the runner
(``opsnb run``) that is the runner: the kernel only seals outputs and, from ``finish()``, leaves a
receipt the runner reads (:func:`opsnb.pipeline.write_receipt`). Opened by hand (JupyterLab, plain
papermill) there is no runner, so the kernel writes the record itself; a stage whose inputs are
missing first asks the runner to build the earlier stages into the same folder.
"""

from __future__ import annotations

import logging
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from opsnb import config, pipeline
from opsnb.artifacts import RunManifest, now_iso, read_json, write_json, write_parquet
from opsnb.errors import ArtifactError, StageError
from opsnb.stages import STAGES, Stage, present_inputs, stage_by_name
from opsnb.story import Story, Verdict, enable_png, story_relpath

log = logging.getLogger(__name__)


def _usage() -> tuple[float, int]:
    """CPU seconds of this process and its waited-for children, and peak RSS in KiB."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
    return cpu, max(me.ru_maxrss, kids.ru_maxrss)


class StageContext:
    """A stage at work inside one run folder: verified inputs, sealed outputs, a final check.

    ``managed``: the runner executes this stage and owns its manifest record; ``finish()`` then
    leaves a receipt for it instead of writing the record.
    """

    def __init__(self, stage: Stage, run_dir: Path, *, managed: bool = False) -> None:
        self.stage = stage
        self.run_dir = run_dir
        self.managed = managed
        self.manifest = RunManifest.load(run_dir)
        self.story = Story(stage.name)
        enable_png()  # a figure returned from a cell renders as PNG too
        self._cpu0, _ = _usage()
        self._t0 = time.perf_counter()
        for relpath in present_inputs(stage, self.manifest.artifacts):
            self.manifest.verify(relpath)
        if not managed:
            # By hand: an earlier execution's record (and its fingerprint) no longer describes
            # what this stage's outputs will be, so the runner must not reuse them unchecked.
            self.manifest.stages[stage.name] = {"status": "running", "started": now_iso()}
            self.manifest.save()

    def __repr__(self) -> str:
        return f"StageContext(stage={self.stage.name!r}, run_dir='{self.run_dir}')"

    # -- inputs ------------------------------------------------------------------------------
    def input(self, relpath: str) -> Path:
        """Return the verified path of a declared input."""
        if relpath not in self.stage.consumes + self.stage.optional:
            raise StageError(
                f"stage '{self.stage.name}' reads '{relpath}' but does not declare it; "
                f"declared inputs: {', '.join(self.stage.consumes) or 'none'}",
                stage=self.stage.name,
            )
        return self.manifest.verify(relpath)

    def has_input(self, relpath: str) -> bool:
        """True when the optional input ``relpath`` is sealed in this run."""
        return relpath in self.stage.optional and relpath in self.manifest.artifacts

    def inputs_under(self, prefix: str) -> Path:
        """Verify every declared input under folder ``prefix`` and return that folder."""
        for relpath in self.stage.consumes:
            if relpath.startswith(prefix):
                self.input(relpath)
        return self.run_dir / prefix

    def read_json(self, relpath: str) -> Any:
        """Read a declared JSON input."""
        return read_json(self.input(relpath))

    def read_parquet(self, relpath: str) -> pd.DataFrame:
        """Read a declared Parquet input."""
        return pd.read_parquet(self.input(relpath))

    # -- outputs -----------------------------------------------------------------------------
    def output(self, relpath: str) -> Path:
        """Return where a declared output goes (its folder created); seal it after writing."""
        if relpath not in self.stage.produces:
            raise StageError(
                f"stage '{self.stage.name}' writes '{relpath}' but does not declare it; "
                f"declared outputs: {', '.join(self.stage.produces)}",
                stage=self.stage.name,
            )
        path = self.run_dir / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def seal(self, relpath: str) -> Path:
        """Seal a declared output already written at :meth:`output`'s path."""
        path = self.output(relpath)
        self.manifest.seal(relpath, stage=self.stage.name)
        return path

    def seal_under(self, prefix: str) -> list[str]:
        """Seal every declared output whose path starts with ``prefix`` (e.g. ``"bundle/"``)."""
        sealed = [rel for rel in self.stage.produces if rel.startswith(prefix)]
        for relpath in sealed:
            self.seal(relpath)
        return sealed

    def sealed(self, relpath: str) -> Path:
        """Return the verified path of an output this stage already sealed (read it back)."""
        self.output(relpath)
        return self.manifest.verify(relpath)

    def write_json(self, relpath: str, obj: Any) -> Path:
        """Atomically write and seal a declared JSON output."""
        write_json(self.output(relpath), obj)
        return self.seal(relpath)

    def write_parquet(self, relpath: str, frame: pd.DataFrame) -> Path:
        """Atomically write and seal a declared Parquet output."""
        write_parquet(self.output(relpath), frame)
        return self.seal(relpath)

    # -- what a person sees ------------------------------------------------------------------
    def figure(self, name: str, fig: Figure, *, caption: str = "") -> None:
        """Show ``fig`` as PNG and keep it for the report under ``name``; the figure is closed."""
        self.story.figure(name, fig, caption=caption)

    def table(self, name: str, frame: pd.DataFrame | pd.Series, *, caption: str = "") -> None:
        """Show a small table (floats rounded, times to the second) and keep it for the report."""
        self.story.table(name, frame, caption=caption)

    def verdict(self, text: str, *, passed: bool | None) -> Verdict:
        """Record the stage's one-line verdict (numbers included) and return it to be shown.

        ``passed``: True (PASS) or False (FAIL) against ``problem.json``'s criteria, None for a
        decision ("chose max_depth 4: CV logloss 0.41 vs 0.43").
        """
        return self.story.set_verdict(text, passed=passed)

    # -- the end -----------------------------------------------------------------------------
    def finish(self) -> None:
        """Write the story, check every declared output is sealed and intact, record success.

        The bookkeeping line goes to the log; the notebook's last output stays the verdict.
        """
        story = story_relpath(self.stage.name)
        for relpath in self.stage.produces:
            if relpath != story and relpath not in self.manifest.artifacts:
                raise StageError(
                    f"stage '{self.stage.name}' did not write its declared output '{relpath}'",
                    stage=self.stage.name,
                )
            if relpath != story:
                self.manifest.verify(relpath)
        if self.story.verdict is None:
            raise StageError(
                f"stage '{self.stage.name}' has no verdict; call stage.verdict('PASS: ...', "
                "passed=True) with the numbers it rests on before stage.finish()",
                stage=self.stage.name,
            )
        self.write_json(story, self.story.to_dict())
        cpu, peak_kib = _usage()
        done = {
            "finished": now_iso(),
            "outputs": {r: self.manifest.artifacts[r]["sha256"] for r in self.stage.produces},
            "kernel_cpu_s": round(cpu - self._cpu0, 3),
            "kernel_peak_rss_mb": round(peak_kib / 1024, 1),
        }
        if self.managed:
            pipeline.write_receipt(self.run_dir, self.stage, done)
        else:
            self.manifest.stages[self.stage.name].update(status="succeeded", **done)
            self.manifest.save()
        elapsed = time.perf_counter() - self._t0
        log.info(
            "stage '%s' done in %.1f s: %d outputs sealed in %s",
            self.stage.name, elapsed, len(self.stage.produces), self.run_dir,
        )  # fmt: skip


def _say(line: str) -> None:
    """A progress line in the notebook (the cell's output) while a stage builds its inputs."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _progress(stage: Stage, outcome: pipeline.StageOutcome | None) -> None:
    if outcome is None:
        _say(f"  {stage.name:<15} running…")
    else:
        _say(f"  {stage.name:<15} {outcome.status:<9} {outcome.wall_s:6.1f} s  {outcome.detail}")


def _inputs_present(manifest: RunManifest, stage: Stage) -> bool:
    try:
        for relpath in stage.consumes:
            manifest.verify(relpath)
    except ArtifactError:
        return False
    return True


def open_stage(name: str, run_dir: str | os.PathLike[str] = config.LAB_RUN) -> StageContext:
    """Open stage ``name`` in ``run_dir`` for a notebook and return its context.

    In a kernel the runner started for this stage, the inputs must already be sealed and the
    runner keeps the stage's record. Opened by hand (JupyterLab), a stage whose inputs are
    missing first asks the runner to run the earlier stages with their defaults into the same
    folder, so every notebook runs on its own.
    """
    stage = stage_by_name(name)
    folder = config.resolve_run_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = RunManifest.load(folder)
    if pipeline.executing(manifest, stage):
        return StageContext(stage, folder, managed=True)
    index = STAGES.index(stage)
    if index > 0 and not _inputs_present(manifest, stage):
        _say(f"inputs of '{name}' are missing in {folder}: running the earlier stages")
        pipeline.run(
            run_dir=folder, until=STAGES[index - 1].name, on_stage=_progress, report_html=False
        )
    return StageContext(stage, folder)

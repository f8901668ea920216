"""The stage table (what each stage consumes and produces) and the context a stage runs in.

``STAGES`` is the single source of the pipeline's order and contracts: the runner, the notebooks
and the tests all read it. A notebook opens its stage with :func:`opsnb.pipeline.open_stage`,
reads inputs through :meth:`StageContext.input` (hash-verified), writes outputs through the
``write_*`` methods (atomic, sealed) and ends with :meth:`StageContext.finish`, which refuses to
mark the stage done while a declared output is missing.
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from opsnb.artifacts import RunManifest, now_iso, read_json, write_json, write_parquet
from opsnb.errors import ArtifactError, StageError


@dataclass(frozen=True)
class Stage:
    """One pipeline stage: its notebook and the artifacts it consumes and produces."""

    name: str
    notebook: str
    consumes: tuple[str, ...]
    produces: tuple[str, ...]
    summary: str


SPLITS = ("train", "valid", "test", "trusted")

STAGES: tuple[Stage, ...] = (
    Stage(
        "problem",
        "00_problem.ipynb",
        (),
        ("problem.json",),
        "task, target, metric and success criteria",
    ),
    Stage(
        "dataset",
        "01_dataset.ipynb",
        ("problem.json",),
        ("data/raw.parquet", "data/card.json"),
        "load the source data and describe it",
    ),
    Stage(
        "prepare",
        "02_prepare.ipynb",
        ("problem.json", "data/raw.parquet", "data/card.json"),
        (
            "schema.json",
            *(f"data/{s}.parquet" for s in SPLITS),
            "data/quarantine.parquet",
            "data/profile.json",
        ),
        "freeze the schema, quarantine bad rows, split",
    ),
    Stage(
        "design",
        "03_design.ipynb",
        ("problem.json", "schema.json", "data/train.parquet", "data/valid.parquet"),
        ("design.json",),
        "baseline scores and hyperparameters",
    ),
    Stage(
        "train",
        "04_train.ipynb",
        (
            "problem.json",
            "schema.json",
            "design.json",
            "data/train.parquet",
            "data/valid.parquet",
            "data/test.parquet",
        ),
        ("model/model.ubj", "model/metrics.json"),
        "train, seal the model, evaluate the sealed file",
    ),
    Stage(
        "robustness",
        "05_robustness.ipynb",
        (
            "problem.json",
            "schema.json",
            "model/model.ubj",
            "model/metrics.json",
            "data/train.parquet",
            "data/test.parquet",
        ),
        ("reports/robustness.json", "reports/adversarial.parquet"),
        "attack the sealed model, certify, replay, gate on robust accuracy",
    ),
    Stage(
        "operationalize",
        "06_operationalize.ipynb",
        ("schema.json", "model/model.ubj", "data/test.parquet"),
        (
            "bundle/model.so",
            "bundle/model.h",
            "bundle/model-src.zip",
            "bundle/schema.json",
            "bundle/golden.json",
            "bundle/manifest.json",
            "reports/parity.json",
            "reports/speed.json",
        ),
        "compile to a shared library, prove parity, measure speed",
    ),
    Stage(
        "monitor",
        "07_monitor.ipynb",
        (
            "problem.json",
            "schema.json",
            "data/card.json",
            "data/train.parquet",
            "data/test.parquet",
            "bundle/manifest.json",
            "bundle/model.so",
            "bundle/schema.json",
            "bundle/golden.json",
        ),
        ("monitor/production.parquet", "monitor/drift.json", "monitor/alerts.json"),
        "score a production batch, measure drift",
    ),
)


def stage_by_name(name: str) -> Stage:
    """Return the stage called ``name``; an unknown name lists the known ones."""
    for stage in STAGES:
        if stage.name == name:
            return stage
    known = ", ".join(s.name for s in STAGES)
    raise StageError(f"unknown stage '{name}'; known stages: {known}", stage=name)


def producer_of(relpath: str) -> Stage:
    """Return the stage that declares ``relpath`` among its outputs."""
    for stage in STAGES:
        if relpath in stage.produces:
            return stage
    raise ArtifactError(f"no stage declares '{relpath}' as an output", path=relpath)


def _usage() -> tuple[float, int]:
    """CPU seconds of this process and its waited-for children, and peak RSS in KiB."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
    return cpu, max(me.ru_maxrss, kids.ru_maxrss)


class StageContext:
    """A stage at work inside one run folder: verified inputs, sealed outputs, a final check."""

    def __init__(self, stage: Stage, run_dir: Path) -> None:
        self.stage = stage
        self.run_dir = run_dir
        self.manifest = RunManifest.load(run_dir)
        self._cpu0, _ = _usage()
        self._t0 = time.perf_counter()
        for relpath in stage.consumes:
            self.manifest.verify(relpath)

    def __repr__(self) -> str:
        return f"StageContext(stage={self.stage.name!r}, run_dir='{self.run_dir}')"

    # -- inputs ------------------------------------------------------------------------------
    def input(self, relpath: str) -> Path:
        """Return the verified path of a declared input."""
        if relpath not in self.stage.consumes:
            raise StageError(
                f"stage '{self.stage.name}' reads '{relpath}' but does not declare it; "
                f"declared inputs: {', '.join(self.stage.consumes) or 'none'}",
                stage=self.stage.name,
            )
        return self.manifest.verify(relpath)

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

    # -- the end -----------------------------------------------------------------------------
    def finish(self) -> str:
        """Check every declared output is sealed and intact, record the stage as done.

        Returns a sentence for the notebook to show.
        """
        for relpath in self.stage.produces:
            if relpath not in self.manifest.artifacts:
                raise StageError(
                    f"stage '{self.stage.name}' did not write its declared output '{relpath}'",
                    stage=self.stage.name,
                )
            self.manifest.verify(relpath)
        cpu, peak_kib = _usage()
        record = self.manifest.stages.setdefault(self.stage.name, {})
        record.update(
            status="succeeded",
            finished=now_iso(),
            outputs={r: self.manifest.artifacts[r]["sha256"] for r in self.stage.produces},
            kernel_cpu_s=round(cpu - self._cpu0, 3),
            kernel_peak_rss_mb=round(peak_kib / 1024, 1),
        )
        self.manifest.save()
        elapsed = time.perf_counter() - self._t0
        return (
            f"Stage '{self.stage.name}' done in {elapsed:.1f} s: "
            f"{len(self.stage.produces)} outputs sealed in {self.run_dir}."
        )

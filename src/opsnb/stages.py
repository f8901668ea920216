"""The stage table: what each stage consumes and produces, in run order.

``STAGES`` is the single source of the pipeline's order and contracts: the runner
(:mod:`opsnb.pipeline`), the notebooks (through :mod:`opsnb.notebook`) and the tests all read it.
Every stage also produces ``story/<stage>.json`` (its verdict and kept evidence, for the report).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from opsnb.errors import StageError
from opsnb.story import story_relpath


@dataclass(frozen=True)
class Stage:
    """One pipeline stage: its notebook and the artifacts it consumes and produces."""

    name: str
    notebook: str
    consumes: tuple[str, ...]
    produces: tuple[str, ...]
    summary: str
    outside: tuple[str, ...] = ()
    """Inputs read from outside the run folder, by name (the runner fingerprints them too)."""
    optional: tuple[str, ...] = ()
    """Inputs read only when the run holds them sealed (e.g. rows admitted by an update)."""

    def __post_init__(self) -> None:
        # Every stage tells its story (figures, tables, verdict) for the report: a declared,
        # sealed output like any other, so reuse copies it and a later change is detected.
        story = story_relpath(self.name)
        if story not in self.produces:
            object.__setattr__(self, "produces", (*self.produces, story))


SPLITS = ("train", "valid", "test", "trusted")
ADMITTED = "data/admitted.parquet"
"""Rows admitted by ``opsnb update``: a challenger run's prepare stage adds them to ``train``."""

FROZEN_CONTRACT = "frozen contract"
"""The data set's contract frozen by its first run (``runs/contracts/<key>.json``)."""

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
        outside=(FROZEN_CONTRACT,),
        optional=(ADMITTED,),
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
        (
            "problem.json",
            "schema.json",
            "model/model.ubj",
            "data/train.parquet",
            "data/test.parquet",
            "data/trusted.parquet",
        ),
        (
            "bundle/model.so",
            "bundle/model.h",
            "bundle/model-src.zip",
            "bundle/schema.json",
            "bundle/golden.json",
            "bundle/reference.json",
            "bundle/checker.json",
            "bundle/manifest.json",
            "bundle/manifest.sig",
            "reports/parity.json",
            "reports/speed.json",
            "reports/latency.json",
        ),
        "compile to a shared library, prove parity, ship the monitoring reference",
    ),
    Stage(
        "monitor",
        "07_monitor.ipynb",
        (
            "problem.json",
            "schema.json",
            "data/card.json",
            "data/test.parquet",
            "bundle/manifest.json",
            "bundle/manifest.sig",
            "bundle/model.so",
            "bundle/schema.json",
            "bundle/golden.json",
            "bundle/reference.json",
            "bundle/checker.json",
            "bundle/model.h",
            "bundle/model-src.zip",
        ),
        (
            "monitor/production.parquet",
            "monitor/predictions.sqlite",
            "monitor/serving.json",
            "monitor/drift.json",
            "monitor/quality.json",
            "monitor/alerts.json",
            "monitor/review.parquet",
            "monitor/usage.parquet",
            "monitor/cost.json",
        ),
        "replay production through the real server, analyse its log, alert, cost it",
    ),
    Stage(
        "update",
        "08_update.ipynb",
        (
            "problem.json",
            "schema.json",
            "design.json",
            "data/card.json",
            "data/train.parquet",
            "data/valid.parquet",
            "data/test.parquet",
            "data/trusted.parquet",
            "model/model.ubj",
            "bundle/manifest.json",
        ),
        ("update/batch.parquet", "update/decision.json", "update/flagged.parquet"),
        "screen the next labelled batch, retrain, challenger against champion",
    ),
)


def stage_by_name(name: str) -> Stage:
    """Return the stage called ``name``; an unknown name lists the known ones."""
    for stage in STAGES:
        if stage.name == name:
            return stage
    known = ", ".join(s.name for s in STAGES)
    raise StageError(f"unknown stage '{name}'; known stages: {known}", stage=name)


def present_inputs(stage: Stage, sealed: Collection[str]) -> tuple[str, ...]:
    """The stage's required inputs plus the optional ones among the ``sealed`` artifact paths."""
    return stage.consumes + tuple(r for r in stage.optional if r in sealed)

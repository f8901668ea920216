"""The problem statement: task, target, metric and the success criteria a model must meet.

``problem.json`` is written before any data is seen, so its task, target and metric may be
``"auto"``. The dataset stage resolves the target and the task once it sees the labels and
records them in the data card; the prepare stage copies them into ``schema.json``, which is the
one place later stages (and the server) read the resolved task from:
``Problem.from_dict(...).resolve(task=schema.task, target=schema.target)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from opsnb.errors import ConfigError

AUTO = "auto"
"""A parameter value meaning "decide from the data" (target, task, metric, timestamp)."""
TASKS = ("binary", "regression")
METRICS = {"binary": ("auc", "logloss", "accuracy"), "regression": ("rmse", "mae", "r2")}
DEFAULT_METRIC = {"binary": "auc", "regression": "r2"}
DEFAULT_FLOOR = {"auc": 0.75, "accuracy": 0.7, "r2": 0.3}
"""Quality floors used when none is given; scale-dependent metrics (rmse, mae, logloss) need one."""
HIGHER_IS_BETTER = frozenset({"auc", "accuracy", "r2"})
"""Metrics where a larger value is better; for the others (losses, errors) smaller is better."""


def meets_floor(metric: str, value: float, floor: float) -> bool:
    """True when ``value`` of ``metric`` is on the good side of ``floor``."""
    return value >= floor if metric in HIGHER_IS_BETTER else value <= floor


@dataclass(frozen=True)
class Problem:
    """What the model is for and how it is judged.

    Attributes:
        task: ``"binary"``, ``"regression"`` or ``"auto"`` (resolved from the labels).
        target: the label column, or ``"auto"`` for a built-in data set's own label.
        metric: the headline metric (one of :data:`METRICS` for the task), or ``"auto"``.
        quality_floor: the headline metric a model must reach on the test split; ``None``
            takes :data:`DEFAULT_FLOOR` for the metric.
        p99_latency_ms: the serving latency budget for one record.
        cost_per_million_usd: the budget for one million predictions.
        drift_psi: the PSI (beyond sampling noise) at which the monitor calls a feature drifted.
        drift_alpha: the monitor's family-wise false-alarm rate for its drift tests.
        robustness_floor: the robust accuracy (share of test rows decided right that no
            attack within ``robustness_epsilon`` flips) the robustness stage requires; ``None``
            (the default) reports it without gating.
        robustness_epsilon: the L∞ budget (features scaled to [0, 1]) the floor is judged at.
    """

    task: str
    target: str
    metric: str
    quality_floor: float | None
    p99_latency_ms: float
    cost_per_million_usd: float
    drift_psi: float = 0.1
    drift_alpha: float = 0.01
    robustness_floor: float | None = None
    robustness_epsilon: float = 0.05

    def __post_init__(self) -> None:
        if self.task not in (AUTO, *TASKS):
            raise ConfigError(
                f"task {self.task!r} is not supported; expected one of {(AUTO, *TASKS)}"
            )
        allowed = sum(METRICS.values(), ()) if self.task == AUTO else METRICS[self.task]
        if self.metric != AUTO and self.metric not in allowed:
            raise ConfigError(
                f"metric {self.metric!r} does not fit task {self.task!r}; "
                f"expected auto or one of {allowed}"
            )
        if not self.target:
            raise ConfigError("target is empty; name the label column")
        if not self.drift_psi > 0 or not 0 < self.drift_alpha < 1:
            raise ConfigError(
                f"drift_psi must be > 0 and drift_alpha within (0, 1); got {self.drift_psi} "
                f"and {self.drift_alpha}"
            )
        if self.robustness_floor is not None and not 0 <= self.robustness_floor <= 1:
            raise ConfigError(
                f"robustness_floor {self.robustness_floor!r} is not a share in [0, 1]; it is the "
                "robust accuracy required at robustness_epsilon (None: no gate)"
            )
        if not 0 < self.robustness_epsilon <= 1:
            raise ConfigError(
                f"robustness_epsilon {self.robustness_epsilon!r} is outside (0, 1]; it is an L∞ "
                "budget on features scaled to [0, 1] by the training split's min and max"
            )

    def resolve(self, *, task: str, target: str) -> Problem:
        """Return this problem with the task and target the data showed, metric and floor filled.

        Raises:
            ConfigError: the data contradicts what was stated (another task or target), the
                stated metric does not fit the resolved task, or the metric has no default floor.
        """
        for name, stated, seen in (("task", self.task, task), ("target", self.target, target)):
            if stated not in (AUTO, seen):
                raise ConfigError(
                    f"problem.json states {name} {stated!r} but the data resolved {seen!r}; "
                    f"re-run from stage 'problem' with -p {name} {seen} (or auto)"
                )
        metric = DEFAULT_METRIC[task] if self.metric == AUTO else self.metric
        floor = self.quality_floor if self.quality_floor is not None else DEFAULT_FLOOR.get(metric)
        if floor is None:
            raise ConfigError(
                f"metric {metric!r} has no default quality floor (it depends on the target's "
                "scale); pass -p quality_floor <value>"
            )
        return replace(self, task=task, target=target, metric=metric, quality_floor=floor)

    def to_dict(self) -> dict[str, Any]:
        """Return the problem as a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Problem:
        """Rebuild a problem from :meth:`to_dict` output."""
        return cls(**data)

    def _success(self) -> str:
        """The quality criterion in words, before or after the metric is resolved."""
        if self.metric != AUTO:
            floor = self.quality_floor if self.quality_floor is not None else "its default floor"
            side = ">=" if self.higher_is_better else "<="
            return f"{self.metric} {side} {floor}"
        if self.quality_floor is not None:
            return f"the task's metric (auc or r2) >= {self.quality_floor}"
        return "auc >= 0.75 (binary) or r2 >= 0.3 (regression)"

    def describe(self) -> str:
        """One sentence stating the problem and its success criteria."""
        target = "the data set's own label" if self.target == AUTO else f"'{self.target}'"
        task = "task read from the labels" if self.task == AUTO else self.task
        return (
            f"Predict {target} ({task}); success means {self._success()} on the test split, "
            f"p99 latency <= {self.p99_latency_ms:g} ms and <= ${self.cost_per_million_usd:g} "
            "per million predictions"
            + (
                f"; robust accuracy >= {self.robustness_floor:g} at L∞ epsilon "
                f"{self.robustness_epsilon:g}."
                if self.robustness_floor is not None
                else "."
            )
        )

    def criteria(self) -> list[dict[str, str]]:
        """The success criteria as rows (criterion, requirement, judged by) for a small table."""
        return [
            {"criterion": "quality", "requirement": f"{self._success()} on the test split",
             "judged by": "train"},
            {"criterion": "latency", "requirement": f"p99 <= {self.p99_latency_ms:g} ms per call",
             "judged by": "operationalize"},
            {"criterion": "cost",
             "requirement": f"<= ${self.cost_per_million_usd:g} per million predictions",
             "judged by": "monitor"},
            {"criterion": "robustness",
             "requirement": "off (reported, not gated)" if self.robustness_floor is None else
             f"robust accuracy >= {self.robustness_floor:g} at L∞ epsilon "
             f"{self.robustness_epsilon:g}",
             "judged by": "robustness"},
        ]  # fmt: skip

    @property
    def higher_is_better(self) -> bool:
        """True for metrics where a larger value is better (AUC, accuracy, R²)."""
        return self.metric in HIGHER_IS_BETTER or self.metric == AUTO

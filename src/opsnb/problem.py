"""The problem statement: task, target, metric and the success criteria a model must meet."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from opsnb.errors import ConfigError

TASKS = ("binary", "regression")
METRICS = {"binary": ("auc", "logloss", "accuracy"), "regression": ("rmse", "mae", "r2")}


@dataclass(frozen=True)
class Problem:
    """What the model is for and how it is judged.

    Attributes:
        task: ``"binary"`` or ``"regression"``.
        target: the label column.
        metric: the headline metric (one of :data:`METRICS` for the task).
        quality_floor: the headline metric a model must reach on the test split.
        p99_latency_ms: the serving latency budget for one record.
        cost_per_million_usd: the budget for one million predictions.
    """

    task: str
    target: str
    metric: str
    quality_floor: float
    p99_latency_ms: float
    cost_per_million_usd: float

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"task {self.task!r} is not supported; expected one of {TASKS}")
        if self.metric not in METRICS[self.task]:
            raise ConfigError(
                f"metric {self.metric!r} does not fit task {self.task!r}; "
                f"expected one of {METRICS[self.task]}"
            )
        if not self.target:
            raise ConfigError("target is empty; name the label column")

    def to_dict(self) -> dict[str, Any]:
        """Return the problem as a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Problem:
        """Rebuild a problem from :meth:`to_dict` output."""
        return cls(**data)

    def describe(self) -> str:
        """One sentence stating the problem and its success criteria."""
        return (
            f"Predict '{self.target}' ({self.task}); success means {self.metric} >= "
            f"{self.quality_floor} on the test split, p99 latency <= {self.p99_latency_ms} ms "
            f"and <= ${self.cost_per_million_usd} per million predictions."
        )

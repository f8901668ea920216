import pytest

from opsnb.errors import ConfigError
from opsnb.problem import Problem


def _problem(**changes: object) -> Problem:
    stated: dict[str, object] = {
        "task": "auto",
        "target": "auto",
        "metric": "auto",
        "quality_floor": None,
        "p99_latency_ms": 50.0,
        "cost_per_million_usd": 1.0,
    }
    return Problem.from_dict({**stated, **changes})


def test_auto_resolves_to_the_tasks_default_metric_and_floor() -> None:
    stated = _problem()
    assert (stated.task, stated.metric, stated.quality_floor) == ("auto", "auto", None)
    binary = stated.resolve(task="binary", target="y")
    assert (binary.task, binary.target, binary.metric, binary.quality_floor) == (
        "binary",
        "y",
        "auc",
        0.75,
    )
    regression = _problem(quality_floor=0.4).resolve(task="regression", target="v")
    assert (regression.task, regression.metric, regression.quality_floor) == (
        "regression",
        "r2",
        0.4,
    )
    assert "r2 >= 0.4" in regression.describe()


def test_what_was_stated_must_agree_with_the_data() -> None:
    with pytest.raises(
        ConfigError,
        match=r"states task 'binary' but the data resolved "
        r"'regression'; re-run from stage 'problem'",
    ):
        _problem(task="binary").resolve(task="regression", target="y")
    with pytest.raises(ConfigError, match=r"metric 'rmse' has no default quality floor"):
        _problem(metric="rmse").resolve(task="regression", target="y")
    with pytest.raises(ConfigError, match=r"metric 'auc' does not fit task 'regression'"):
        _problem(task="regression", metric="auc")
    with pytest.raises(ConfigError, match=r"task 'multiclass' is not supported"):
        _problem(task="multiclass")

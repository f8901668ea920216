"""Stage notebook parameters: routing given values, and defaults that match the library's."""

import ast

import pytest

from opsnb import compiler, config, parity, training
from opsnb.errors import ConfigError
from opsnb.parameters import declared_parameters, route_parameters
from opsnb.stages import stage_by_name


def test_a_parameter_goes_to_every_stage_that_declares_it() -> None:
    routed = route_parameters({"seed": 3, "n_rows": 100})
    assert routed["dataset"] == {"seed": 3, "n_rows": 100}
    assert routed["train"] == {"seed": 3}
    assert routed["problem"] == {}


def test_an_undeclared_parameter_is_refused_with_the_declared_names() -> None:
    with pytest.raises(ConfigError, match=r"no stage declares the parameter\(s\) 'n_row'; "
                       r"declared parameters: .*n_rows"):  # fmt: skip
        route_parameters({"n_row": 100})


def test_run_dir_is_reserved_for_the_runner() -> None:
    with pytest.raises(ConfigError, match="'run_dir' is set by the runner"):
        route_parameters({"run_dir": "/tmp/x"})


def _default(stage: str, name: str) -> object:
    return ast.literal_eval(declared_parameters(stage_by_name(stage))[name]["default"])


@pytest.mark.parametrize(
    ("stage", "name", "library"),
    [
        ("design", "cv_folds", training.choose_hyperparameters.__kwdefaults__["folds"]),
        ("design", "max_rounds", training.choose_hyperparameters.__kwdefaults__["max_rounds"]),
        ("train", "early_stopping_rounds", training.train.__kwdefaults__["early_stopping_rounds"]),
        ("operationalize", "parity_tolerance", parity.DEFAULT_TOLERANCE),
        ("operationalize", "trees_per_unit", compiler.CompileOptions().trees_per_unit),
        ("operationalize", "quantize", compiler.CompileOptions().quantize),
    ],
)
def test_a_notebook_default_that_mirrors_the_library_agrees_with_it(
    stage: str, name: str, library: object
) -> None:
    assert _default(stage, name) == library


def test_range_tolerance_is_defined_once_and_the_notebook_defers_to_it() -> None:
    assert _default("prepare", "range_tolerance") is None
    assert config.RANGE_TOLERANCE == 0.2

"""The wording of the errors users meet most, pinned."""

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from opsnb import cli, parameters, parity
from opsnb.artifacts import RunManifest
from opsnb.errors import (
    ArtifactError,
    CompileError,
    ConfigError,
    DataError,
    OpsnbError,
    ParityError,
    RequestError,
    SchemaError,
    StageError,
)
from opsnb.schema import Feature, Schema, to_matrix


@pytest.mark.parametrize(
    "error",
    [
        ArtifactError("input 'model/model.ubj' was modified", path="model/model.ubj"),
        CompileError("gcc failed"),
        ConfigError("unknown engine 'spark'"),
        DataError("no rows in data.csv"),
        ParityError("compiled predictions differ"),
        RequestError("field 'age': expected a number", status=422),
        SchemaError("input lacks feature column(s) 'age'", column="age"),
        StageError("stage 'train' failed", stage="train"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_every_opsnb_error_reaches_the_user_as_one_line_and_status_1(
    error: OpsnbError, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """What a command raises on purpose is a sentence for the user, never a traceback."""

    def handler(args: argparse.Namespace) -> int:
        raise error

    parser = argparse.ArgumentParser()
    parser.set_defaults(handler=handler, verbose=False, command="test")
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    assert cli.main([]) == 1
    assert capsys.readouterr().err == f"error: {error}\n"


def test_an_error_opsnb_did_not_mean_is_not_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    def handler(args: argparse.Namespace) -> int:
        raise KeyError("a bug")

    parser = argparse.ArgumentParser()
    parser.set_defaults(handler=handler, verbose=False, command="test")
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    with pytest.raises(KeyError, match="a bug"):
        cli.main([])


def test_missing_input_file(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"^input 'schema.json' is missing from run folder "
                       r".*; run the stage that produces it first$") as caught:  # fmt: skip
        RunManifest.load(tmp_path).verify("schema.json")
    assert caught.value.path == "schema.json"


def test_undeclared_parameter() -> None:
    with pytest.raises(ConfigError, match=r"^no stage declares the parameter\(s\) 'lr'; "
                       r"declared parameters: "):  # fmt: skip
        parameters.route_parameters({"lr": 0.1})


def test_schema_violation_names_the_column() -> None:
    schema = Schema(task="binary", target="y", features=(Feature("income", "numeric", True),))
    with pytest.raises(SchemaError, match=r"^input lacks feature column\(s\) 'income' required "
                       r"by schema.json$") as caught:  # fmt: skip
        to_matrix(pd.DataFrame({"age": [1.0]}), schema)
    assert caught.value.column == "income"


def test_parity_failure_names_the_worst_row() -> None:
    report = parity.parity_report(np.array([0.1, 0.5, 0.9]), np.array([0.1, 0.52, 0.9]),
                                    tolerance=1e-5)  # fmt: skip
    with pytest.raises(
        ParityError,
        match=r"^compiled predictions differ from xgboost by 0.02 at row 1: 0.52 vs 0.5 "
        r"\(tolerance 1e-05, 3 rows compared\); the compiled library must not be used",
    ):
        parity.check_parity(report)

"""The whole pipeline on data opsnb did not make: a census-like CSV and scikit-learn's diabetes."""

from dataclasses import replace
from pathlib import Path

import pytest

from opsnb import config
from opsnb.artifacts import read_json, sha256_file
from opsnb.schema import Schema
from tests.support import census_rows, manifest_of, opsnb_cli, write_census

pytestmark = pytest.mark.slow
FAST = ["-p", "max_depth", "[3]", "-p", "max_rounds", "80"]


@pytest.fixture(scope="module")
def data_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data-runs")


@pytest.fixture(scope="module")
def census_run(data_runs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    csv = write_census(tmp_path_factory.mktemp("v1") / "census.csv", census_rows(1000, seed=11))
    result = opsnb_cli(
        "run",
        "-q",
        "--run-id",
        "census",
        "-p",
        "dataset",
        str(csv),
        "-p",
        "target",
        "income",
        *FAST,
        env={config.RUNS_ENV: str(data_runs)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return data_runs / "census"


def test_a_real_world_csv_runs_end_to_end(census_run: Path) -> None:
    card = read_json(census_run / "data/card.json")
    assert card["label_mapping"] == {"<=50K": 0, ">50K": 1}
    assert card["task"] == "binary"
    schema = Schema.load(census_run / "schema.json")
    assert schema.ids == ("person_id",)
    assert schema.label_mapping == card["label_mapping"]
    kinds = {f.name: f.kind for f in schema.features}
    assert kinds["workclass"] == "categorical"
    assert kinds["age"] == "numeric"
    metrics = read_json(census_run / "model/metrics.json")
    assert metrics["metric"] == "auc"
    assert metrics["scores"]["auc"] > 0.8
    assert read_json(census_run / "reports/parity.json")["passed"]
    assert (census_run.parent / "contracts" / "census-income.json").is_file()


def test_later_runs_quarantine_against_the_frozen_contract(
    census_run: Path, data_runs: Path, tmp_path: Path
) -> None:
    rows = census_rows(1000, seed=11)
    rows[3][0], rows[8][4], rows[13][2] = "old", "-900000", "Kindergarten"
    csv = write_census(tmp_path / "census.csv", rows)  # next month's file, same name
    result = opsnb_cli(
        "run",
        "-q",
        "--run-id",
        "census-2",
        "--until",
        "prepare",
        "-p",
        "dataset",
        str(csv),
        "-p",
        "target",
        "income",
        env={config.RUNS_ENV: str(data_runs)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    profile = read_json(data_runs / "census-2/data/profile.json")
    assert profile["contract"] == "frozen"
    reasons = {k: v for k, v in profile["quarantine"]["by_reason"].items() if v}
    assert reasons == {"wrong type": 1, "out of range": 1, "unknown category": 1}


def test_a_bad_file_stops_stage_01_and_leaves_earlier_runs_alone(
    census_run: Path, data_runs: Path, tmp_path: Path
) -> None:
    before = {p: sha256_file(p) for p in sorted(census_run.rglob("*")) if p.is_file()}
    (tmp_path / "header_only.csv").write_text("age, income\n")
    result = opsnb_cli(
        "run",
        "-q",
        "--run-id",
        "broken",
        "-p",
        "dataset",
        str(tmp_path / "header_only.csv"),
        "-p",
        "target",
        "income",
        env={config.RUNS_ENV: str(data_runs)},
    )
    assert result.returncode != 0
    assert (
        "stage 'dataset' failed: DataError: dataset file header_only.csv has a header "
        "(2 columns) but no data rows" in result.stderr
    )
    assert manifest_of(data_runs / "broken").stages["dataset"]["status"] == "failed"
    assert before == {p: sha256_file(p) for p in sorted(census_run.rglob("*")) if p.is_file()}
    assert (data_runs / "latest").resolve() == census_run.resolve()


def test_a_regression_data_set_runs_end_to_end(data_runs: Path) -> None:
    # Outputs are ~150: parity holds relative to the output's size with the default tolerance.
    result = opsnb_cli(
        "run",
        "-q",
        "--run-id",
        "diabetes",
        "-p",
        "dataset",
        "diabetes",
        *FAST,
        env={config.RUNS_ENV: str(data_runs)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = data_runs / "diabetes"
    assert Schema.load(run / "schema.json").task == "regression"
    metrics = read_json(run / "model/metrics.json")
    assert metrics["metric"] == "r2"
    assert metrics["scores"]["r2"] > 0.2
    assert read_json(run / "reports/parity.json")["passed"]


def test_a_changed_frozen_contract_reruns_prepare(census_run: Path, data_runs: Path) -> None:
    csv = manifest_of(census_run).stages["dataset"]["params"]["dataset"]

    def until_prepare() -> dict[str, str]:
        result = opsnb_cli(
            "run", "-q", "--run-id", "census-contract", "--until", "prepare",
            "-p", "dataset", csv,
            "-p", "target", "income", env={config.RUNS_ENV: str(data_runs)},
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        return dict(line.split()[:2] for line in result.stdout.splitlines()[:-1])

    contract = data_runs / "contracts" / "census-income.json"
    frozen = contract.read_bytes()
    assert until_prepare()["prepare"] in {"reused", "unchanged"}
    assert until_prepare()["prepare"] == "unchanged"
    frozen_schema = Schema.load(contract)
    schema = replace(  # next month's contract: applicants over 77 are refused
        frozen_schema,
        features=tuple(
            replace(f, upper=77.5) if f.name == "age" else f for f in frozen_schema.features
        ),
    )
    schema.save(contract)
    try:
        outcomes = until_prepare()
        assert outcomes == {"problem": "unchanged", "dataset": "unchanged", "prepare": "executed"}
        run = data_runs / "census-contract"
        assert Schema.load(run / "schema.json") == schema
        refused = read_json(run / "data/profile.json")["quarantine"]["by_reason"]["out of range"]
        assert refused > 0
        assert until_prepare()["prepare"] == "unchanged"
    finally:
        contract.write_bytes(frozen)


def test_refreeze_schema_replaces_the_frozen_contract_with_one_inferred_from_this_run(
    census_run: Path, data_runs: Path
) -> None:
    csv = manifest_of(census_run).stages["dataset"]["params"]["dataset"]
    contract = data_runs / "contracts" / "census-income.json"
    original = contract.read_bytes()
    inferred = Schema.load(contract)
    stale = replace(  # a contract that refuses most applicants: only a refreeze gets rid of it
        inferred,
        features=tuple(replace(f, upper=30.5) if f.name == "age" else f for f in inferred.features),
    )
    stale.save(contract)

    def until_prepare(*extra: str) -> Path:
        result = opsnb_cli(
            "run", "-q", "--run-id", "census-refreeze", "--until", "prepare",
            "-p", "dataset", csv, "-p", "target", "income",
            "-p", "max_quarantine_share", "0.9", *extra,
            env={config.RUNS_ENV: str(data_runs)},
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        return data_runs / "census-refreeze"

    try:
        run = until_prepare()
        profile = read_json(run / "data/profile.json")
        assert profile["contract"] == "frozen"
        assert profile["quarantine"]["by_reason"]["out of range"] > 100
        assert Schema.load(contract) == stale  # a normal run never rewrites the contract

        run = until_prepare("-p", "refreeze_schema", "true")
        profile = read_json(run / "data/profile.json")
        assert profile["contract"] == "inferred"
        assert profile["quarantine"]["by_reason"]["out of range"] == 0
        assert Schema.load(contract) == inferred  # the same split infers the same contract
        assert Schema.load(run / "schema.json") == inferred
    finally:
        contract.write_bytes(original)

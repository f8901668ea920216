from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from opsnb import datasets, prepare
from opsnb.errors import ConfigError, DataError
from opsnb.schema import Feature, Schema
from tests.support import census_rows, write_census

FRACTIONS = {"train": 0.6, "valid": 0.15, "test": 0.15, "trusted": 0.1}


def _prepare(data: datasets.LoadedData, **options: object) -> prepare.Prepared:
    return prepare.prepare(
        data.frame,
        target=data.target,
        task=data.task,
        timestamp=data.timestamp,
        fractions=FRACTIONS,
        seed=0,
        **options,
    )  # type: ignore[arg-type]


def test_injected_errors_are_quarantined_exactly_with_their_reasons(tmp_path: Path) -> None:
    rows = census_rows(400, seed=4)
    clean = datasets.load(str(write_census(tmp_path / "clean.csv", rows)), target="income")
    first = _prepare(clean)
    assert first.inferred
    assert len(first.quarantined) == 0
    bad = [list(r) for r in rows]
    bad[5][0] = "forty"  # wrong type in a numeric column
    bad[9][3] = "lots"  # wrong type
    bad[17][0] = "250"  # out of range (age)
    bad[23][4] = "-900000"  # out of range (capital_gain)
    bad[31][6] = "?"  # label missing
    bad[40][2] = "Kindergarten"  # unknown category
    bad += [[*rows[50][:7], "400", rows[50][8]], [*rows[60][:7], "401", rows[60][8]]]  # duplicates
    injected = datasets.load(str(write_census(tmp_path / "bad.csv", bad)), target="income")
    second = _prepare(injected, frozen=first.schema)
    found = second.quarantined.set_index(prepare.QUARANTINE_ROW)
    assert found[prepare.QUARANTINE_REASON].to_dict() == {
        5: "wrong type",
        9: "wrong type",
        17: "out of range",
        23: "out of range",
        31: "label missing",
        40: "unknown category",
        400: "duplicate row",
        401: "duplicate row",
    }
    assert found.loc[9, prepare.QUARANTINE_COLUMN] == "hours_per_week"
    assert found.loc[5, "age"] == "forty"  # the raw value is kept for inspection
    assert second.reason_counts()["wrong type"] == 2
    assert sum(len(p) for p in second.parts.values()) == 400 - 6


def test_too_many_quarantined_rows_stop_with_the_counts(tmp_path: Path) -> None:
    rows = census_rows(200, seed=5)
    for r in rows[:30]:
        r[6] = "?"
    data = datasets.load(str(write_census(tmp_path / "c.csv", rows)), target="income")
    prepared = _prepare(data)
    with pytest.raises(
        DataError,
        match=r"quarantined 30 of 200 rows \(15.0%\), above "
        r"max_quarantine_share 0.05: label missing 30; inspect",
    ):
        prepared.check_share(0.05)
    prepared.check_share(0.2)


def test_time_split_trains_on_the_past_and_keeps_a_trusted_holdout() -> None:
    data = datasets.load("loans", n_rows=1000, seed=3)
    prepared = _prepare(data)
    parts = prepared.parts
    assert list(parts) == list(FRACTIONS)
    for earlier, later in zip(list(parts)[:-1], list(parts)[1:], strict=True):
        assert parts[earlier]["applied_at"].max() <= parts[later]["applied_at"].min()
    ids = [set(p["application_id"]) for p in parts.values()]
    assert not set.intersection(*ids[:1], ids[3])  # trusted never overlaps train
    profile = prepare.profile(prepared, timestamp="applied_at")
    assert profile["splits"]["train"]["positives"] + profile["splits"]["train"]["negatives"] == 600
    assert profile["quarantine"]["by_reason"]["duplicate row"] == 0


def test_without_timestamp_the_split_is_stratified_and_regression_works() -> None:
    cancer = datasets.load("breast_cancer")
    splits = prepare.profile(_prepare(cancer))["splits"]
    shares = [s["positive_share"] for s in splits.values()]
    assert max(shares) - min(shares) < 0.05
    diabetes = _prepare(datasets.load("diabetes"))
    assert diabetes.schema.task == "regression"
    assert "target_mean" in prepare.profile(diabetes)["splits"]["test"]


def test_bad_fractions_and_too_few_rows_are_refused() -> None:
    frame = pd.DataFrame({"x": range(20), "y": [0, 1] * 10})
    with pytest.raises(ConfigError, match=r"split fractions must add up to 1, got 0.900"):
        prepare.split(frame, target="y", timestamp=None, fractions={"a": 0.5, "b": 0.4}, seed=0)
    with pytest.raises(DataError, match=r"only 20 usable rows after quarantine; need at least 40"):
        prepare.split(frame, target="y", timestamp=None, fractions=FRACTIONS, seed=0)


def test_rows_admitted_by_an_update_join_only_the_training_split() -> None:
    data = datasets.load("loans", n_rows=1500, seed=8)
    before = _prepare(data)
    extra = datasets.load("loans", n_rows=200, seed=9).frame
    extra.loc[extra.index[:3], "credit_score"] = 5000.0  # out of range: quarantined, not trained
    after = _prepare(data, frozen=before.schema, admitted=extra)
    refused = after.quarantined[after.quarantined[prepare.QUARANTINE_ROW] >= 1500]
    assert len(after.quarantined) == len(before.quarantined) + len(refused)
    assert len(after.parts["train"]) == len(before.parts["train"]) + 200 - len(refused)
    for name in ("valid", "test", "trusted"):
        pd.testing.assert_frame_equal(after.parts[name], before.parts[name])
    assert set(range(1500, 1503)) <= set(refused[prepare.QUARANTINE_ROW])
    assert len(refused) <= 5


def test_a_row_breaking_several_rules_gets_the_first_reason_in_priority_order(
    tmp_path: Path,
) -> None:
    """One reason per row, the documented order: label missing, wrong type, ..., duplicate."""
    rows = census_rows(400, seed=4)
    clean = datasets.load(str(write_census(tmp_path / "clean.csv", rows)), target="income")
    first = _prepare(clean)
    bad = [list(r) for r in rows]
    bad[5][0], bad[5][6] = "forty", "?"  # wrong type and label missing
    bad[9][3], bad[9][0] = "lots", "250"  # wrong type and out of range
    bad[17][0], bad[17][2] = "250", "Kindergarten"  # out of range and unknown category
    bad += [[*rows[50][:3], "many", *rows[50][4:7], "400", rows[50][8]]]  # wrong type, duplicate
    bad += [[*rows[60][:6], "?", "401", rows[60][8]]]  # label missing and a duplicate's content
    injected = datasets.load(str(write_census(tmp_path / "bad.csv", bad)), target="income")
    found = _prepare(injected, frozen=first.schema).quarantined.set_index(prepare.QUARANTINE_ROW)
    assert found[prepare.QUARANTINE_REASON].to_dict() == {
        5: "label missing",
        9: "wrong type",
        17: "out of range",
        400: "wrong type",
        401: "label missing",
    }
    assert found[prepare.QUARANTINE_COLUMN].to_dict() == {
        5: "income",
        9: "hours_per_week",
        17: "age",
        400: "hours_per_week",
        401: "income",
    }


def test_na_empty_and_question_mark_are_missing_values_not_wrong_types(tmp_path: Path) -> None:
    rows = census_rows(400, seed=4)
    clean = datasets.load(str(write_census(tmp_path / "clean.csv", rows)), target="income")
    first = _prepare(clean)
    holes = [list(r) for r in rows]
    holes[3][3], holes[4][3], holes[7][3] = "NA", "", "?"  # a numeric feature, missing 3 ways
    holes[8][1] = "NA"  # a categorical feature
    loaded = datasets.load(str(write_census(tmp_path / "holes.csv", holes)), target="income")
    assert loaded.frame["hours_per_week"].iloc[[3, 4, 7]].isna().all()
    assert pd.isna(loaded.frame["workclass"].iloc[8])
    again = _prepare(loaded, frozen=first.schema)
    # missing, not text: where the contract requires a value the reason says so, never
    # "wrong type"; where it allows one missing (workclass), the row is kept
    found = again.quarantined.set_index(prepare.QUARANTINE_ROW)
    assert found[prepare.QUARANTINE_REASON].to_dict() == dict.fromkeys(
        [3, 4, 7], "missing required value"
    )
    assert sum(len(p) for p in again.parts.values()) == 400 - 3


def test_a_target_with_twenty_values_is_a_quantity_not_classes_to_stratify_by() -> None:
    """Fewer than 20 distinct target values are classes (each split gets its share of each);
    20 or more are a quantity: a value seen once cannot be stratified and must not stop it."""
    values = np.r_[np.repeat(np.arange(19.0), 10), 99.0]  # 20 distinct values, one seen once
    frame = pd.DataFrame({"x": np.arange(len(values)), "y": values})
    fractions = {"train": 0.6, "valid": 0.2, "test": 0.2}
    parts = prepare.split(frame, target="y", timestamp=None, fractions=fractions, seed=0)
    assert sum(map(len, parts.values())) == len(frame)
    classes = pd.DataFrame({"x": np.arange(190), "y": np.repeat(np.arange(19.0), 10)})
    parts = prepare.split(classes, target="y", timestamp=None, fractions=fractions, seed=0)
    assert (parts["train"]["y"].value_counts() == 6).all()  # stratified: 6 of each 10
    assert [len(p) for p in parts.values()] == [114, 38, 38]


def test_the_balance_of_a_split_and_of_an_empty_one() -> None:
    part = pd.DataFrame({"y": [1, 0, 0, 0]})
    assert prepare.balance(part, target="y", task="binary") == {
        "rows": 4, "negatives": 3, "positives": 1, "positive_share": 0.25,
    }  # fmt: skip
    assert prepare.balance(part.iloc[:3], target="y", task="binary")["positive_share"] == 0.3333
    assert prepare.balance(part.iloc[:0], target="y", task="binary") == {
        "rows": 0, "negatives": 0, "positives": 0, "positive_share": 0.0,
    }  # fmt: skip


def test_a_regression_splits_balance_is_its_mean_and_spread_to_four_places() -> None:
    part = pd.DataFrame({"y": [1.23456, 2.0, 3.33339]})  # mean 2.1893166, std 1.062145
    assert prepare.balance(part, target="y", task="regression") == {
        "rows": 3, "target_mean": 2.1893, "target_std": 1.0621,  # sample std (n - 1)
    }  # fmt: skip


def test_the_profile_lists_missing_shares_only_for_columns_with_gaps() -> None:
    n = 149
    frame = pd.DataFrame(
        {
            "x": [None if i % 3 == 0 else float(i) for i in range(n)],
            "z": np.random.default_rng(0).normal(size=n),
            "y": [i % 2 for i in range(n)],
        }
    )
    frame = pd.concat([frame, frame.iloc[[5]]], ignore_index=True)  # one row sent twice
    prepared = prepare.prepare(
        frame, target="y", task="binary", timestamp=None, fractions=FRACTIONS, seed=0
    )
    profile_ = prepare.profile(prepared)
    assert profile_["contract"] == "inferred"  # no frozen contract was given
    assert profile_["missing_share"] == {"x": round(50 / 149, 4)}  # 0.3356, four places
    assert profile_["quarantine"]["share"] == round(1 / 150, 4)  # 0.0067
    assert list(prepared.quarantined.index) == [0]
    assert "index" not in prepared.quarantined.columns


def test_the_splits_table_has_a_row_per_split_and_the_time_range_to_the_second() -> None:
    profile_ = {
        "splits": {
            "train": {"rows": 2, "positive_share": 0.5,
                      "time_range": ["2026-01-01 00:00:00.123456", "2026-02-01 10:11:12.5"]},
            "test": {"rows": 1, "positive_share": 0.0},
        }
    }  # fmt: skip
    table = prepare.splits_table(profile_)
    assert list(table.index) == ["train", "test"]
    assert list(table.columns) == ["rows", "positive_share", "from", "to"]
    assert table.loc["train", "from"] == "2026-01-01 00:00:00"
    assert table.loc["train", "to"] == "2026-02-01 10:11:12"
    assert table.loc["test", "rows"] == 1


def test_rows_that_differ_only_in_an_identifier_are_duplicates() -> None:
    """A column of distinct integers is an identifier even when the contract does not name it:
    two applications that differ only there are one row sent twice."""
    frame = pd.DataFrame({"number": [10, 11, 12], "x": [1.0, 1.0, 2.0], "y": [0, 0, 1]})
    schema = Schema(task="binary", target="y", features=(Feature("x", "numeric"),))
    _, found = prepare.screen(frame, target="y", schema=schema)
    assert found["reason"].isna().tolist() == [True, False, True]
    assert found.loc[1, "reason"] == "duplicate row"


def test_the_share_may_reach_the_limit_and_nothing_quarantined_of_nothing_is_zero() -> None:
    data = datasets.load("breast_cancer")
    prepared = _prepare(data)
    share = prepared.quarantined_share
    prepared.check_share(share)  # exactly at the limit passes
    with pytest.raises(DataError, match=r"above max_quarantine_share"):
        prepared.check_share(share - 1e-9)
    empty = prepare.Prepared(prepared.schema, {}, prepared.quarantined.iloc[:0], 0, True)
    assert empty.quarantined_share == 0.0
    for part in prepared.parts.values():
        assert list(part.index) == list(range(len(part)))
        assert "index" not in part.columns


def test_the_verdict_passes_up_to_the_limit_and_states_the_numbers() -> None:
    profile_ = {
        "rows_in": 1000, "contract": "frozen",
        "quarantine": {"rows": 50, "share": 0.05},
        "splits": {"train": {"rows": 600}, "test": {"rows": 350}},
    }  # fmt: skip
    at_limit = prepare.verdict(profile_, max_quarantine_share=0.05, features=7)
    assert at_limit == {
        "text": "PASS: 50 of 1,000 rows quarantined (5.0% <= max 5%); 7 features in the frozen "
        "contract; splits train/test = 600/350 rows",
        "passed": True,
    }
    over = prepare.verdict(profile_, max_quarantine_share=0.04, features=7)
    assert over["passed"] is False
    assert over["text"].startswith("FAIL: 50 of 1,000 rows quarantined (5.0% > max 4%)")


def test_ten_rows_per_split_are_enough_and_one_fewer_is_not() -> None:
    fractions = {"train": 0.5, "valid": 0.5}
    frame = pd.DataFrame({"x": range(20), "y": [0, 1] * 10})
    parts = prepare.split(frame, target="y", timestamp=None, fractions=fractions, seed=0)
    assert [len(p) for p in parts.values()] == [10, 10]
    with pytest.raises(DataError, match=r"only 19 usable rows after quarantine; need at least 20"):
        prepare.split(frame.iloc[:19], target="y", timestamp=None, fractions=fractions, seed=0)

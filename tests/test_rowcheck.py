"""The batch row check gives the answers of validation.violations and the codes of to_matrix."""

from __future__ import annotations

import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from opsnb import validation
from opsnb.inputs import prefetch
from opsnb.loans import loan_applications
from opsnb.rowcheck import category_codes, check_rows
from opsnb.schema import Feature, Schema, to_matrix


@pytest.fixture(scope="module")
def schema():
    frame = loan_applications(2000, seed=4)
    return validation.infer_schema(frame, target="default", task="binary", timestamp="applied_at")


def _messy(n: int) -> pd.DataFrame:
    frame = loan_applications(n, seed=8)
    rng = np.random.default_rng(0)
    frame["credit_score"] = frame["credit_score"].astype(str)
    frame.loc[rng.choice(n, 20, replace=False), "credit_score"] = "n/a?"
    frame.loc[rng.choice(n, 20, replace=False), "income"] = -5.0
    frame.loc[rng.choice(n, 20, replace=False), "term_months"] = np.nan
    frame["region"] = frame["region"].cat.add_categories(["atlantis"])
    frame.loc[rng.choice(n, 20, replace=False), "region"] = "atlantis"
    frame.loc[rng.choice(n, 5, replace=False), "age"] = np.inf
    return frame


@pytest.mark.parametrize("as_text", [False, True], ids=["typed", "all-text (CSV)"])
def test_reasons_and_columns_agree_with_violations(schema, as_text):
    frame = _messy(1500)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if as_text:
        table = pa.table(
            {n: pa.array(frame[n].astype("string"), pa.string(), from_pandas=True) for n in frame}
        )
    checked = check_rows(table, schema)
    expected = validation.violations(frame, schema)
    bad = expected["reason"].notna().to_numpy()
    np.testing.assert_array_equal(~checked.ok, bad)
    assert checked.reason == expected.loc[bad, "reason"].tolist()
    assert bad.sum() > 60
    kept = frame[~bad]
    np.testing.assert_array_equal(checked.matrix, to_matrix(kept, schema))


def test_a_row_breaking_two_rules_gets_the_first_reason(schema):
    frame = loan_applications(3, seed=1)
    frame["credit_score"] = frame["credit_score"].astype(str)
    frame.loc[0, "credit_score"] = "high"  # wrong type
    frame.loc[0, "income"] = -1.0  # and out of range: wrong type comes first
    frame.loc[1, "income"] = -1.0
    frame.loc[1, "term_months"] = np.nan  # missing required value comes before out of range
    checked = check_rows(pa.Table.from_pandas(frame, preserve_index=False), schema)
    assert list(zip(checked.reason, checked.column, checked.value, strict=True)) == [
        ("wrong type", "credit_score", "high"),
        ("missing required value", "term_months", None),
    ]


def test_category_codes_of_every_arrow_layout():
    cats = ["a", "b", "c"]
    values = ["b", None, "z", "a", "c"]
    expected = [1, -1, -1, 0, 2]
    plain = pa.chunked_array([pa.array(values)])
    dictionary = pa.chunked_array([pa.array(values).dictionary_encode()] * 2)
    numbers = pa.chunked_array([pa.array([1, 2, 3])])  # as to_matrix: "1" is category "1"
    assert category_codes(plain, cats).tolist() == expected
    assert category_codes(dictionary, cats).tolist() == expected * 2
    assert category_codes(numbers, ["1", "2"]).tolist() == [0, 1, -1]


def test_prefetch_hands_on_items_and_errors():
    assert list(prefetch(iter(range(10)), depth=2)) == list(range(10))

    def broken():
        yield 1
        raise ValueError("disk on fire")

    got = []
    with pytest.raises(ValueError, match="disk on fire"):
        got.extend(prefetch(broken()))
    assert got == [1]
    early = prefetch(iter(range(1000)), depth=2)
    assert next(early) == 0
    early.close()  # the consumer stops: the thread stops too


def test_the_ends_of_the_accepted_range_pass_and_an_open_end_takes_anything():
    schema = Schema(
        task="regression", target="y",
        features=(
            Feature("bounded", "numeric", min=0.0, max=1.0, lower=-1.0, upper=2.0),
            Feature("open", "numeric", nullable=True),
        ),
    )  # fmt: skip
    table = pa.table(
        {"bounded": [-1.0, 2.0, 2.5, -1.5, 0.0], "open": [-1e30, 1e30, 0.0, 0.0, None]}
    )
    checked = check_rows(table, schema)
    assert checked.ok.tolist() == [True, True, False, False, True]
    assert checked.refused.tolist() == [2, 3]
    assert checked.reason == ["out of range", "out of range"]
    assert checked.value == ["2.5", "-1.5"]
    assert checked.matrix[:2, 1].tolist() == [np.float32(-1e30), np.float32(1e30)]


def test_a_required_category_left_empty_is_a_missing_required_value():
    schema = Schema(
        task="binary", target="y",
        features=(Feature("home", "categorical", categories=("OWN", "RENT")),),
        unknown_categories="reject",
    )  # fmt: skip
    checked = check_rows(pa.table({"home": ["RENT", None, "CASTLE"]}), schema)
    assert checked.refused.tolist() == [1, 2]
    assert checked.reason == ["missing required value", "unknown category"]
    assert checked.matrix.tolist() == [[1.0]]


def test_an_empty_dictionary_column_has_no_codes():
    empty = pa.chunked_array([], type=pa.dictionary(pa.int32(), pa.string()))
    assert category_codes(empty, ["a"]).shape == (0,)


def test_dates_where_a_number_belongs_are_wrong_types_and_a_missing_date_is_missing():
    schema = Schema(
        task="regression", target="y",
        features=(Feature("amount", "numeric", nullable=True, min=0.0, max=10.0),),
    )  # fmt: skip
    dates = pa.array([datetime.date(2026, 1, 1), None, datetime.date(2026, 2, 1)])
    checked = check_rows(pa.table({"amount": dates}), schema)
    assert checked.refused.tolist() == [0, 2]
    assert checked.reason == ["wrong type", "wrong type"]
    assert checked.value == ["2026-01-01", "2026-02-01"]


def test_within_one_reason_the_first_feature_in_schema_order_is_named():
    schema = Schema(
        task="regression", target="y",
        features=(
            Feature("a", "numeric", min=0.0, max=1.0),
            Feature("b", "numeric", min=0.0, max=1.0),
        ),
    )  # fmt: skip
    checked = check_rows(pa.table({"a": [5.0, 0.5], "b": [5.0, 5.0]}), schema)
    assert list(zip(checked.reason, checked.column, strict=True)) == [
        ("out of range", "a"),
        ("out of range", "b"),
    ]

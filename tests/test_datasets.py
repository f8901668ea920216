from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from opsnb import datasets
from opsnb.errors import ConfigError, DataError
from tests.support import CENSUS_COLUMNS, census_rows, write_census


def test_a_comma_space_csv_with_question_marks_and_string_labels(tmp_path: Path) -> None:
    rows = census_rows(300, seed=1)
    data = datasets.load(str(write_census(tmp_path / "census.csv", rows)), target="income")
    frame = data.frame
    assert list(frame.columns) == CENSUS_COLUMNS
    assert data.task == "binary"
    assert data.task_source == "inferred"
    assert data.label_mapping == {"<=50K": 0, ">50K": 1}
    expected = np.array([r[6] == ">50K" for r in rows], dtype=float)
    np.testing.assert_array_equal(frame["income"].to_numpy(), expected)
    assert frame["workclass"].isna().sum() == sum(r[1] == "?" for r in rows) > 0
    assert frame["age"].dtype.kind in "if"  # the space after the comma did not make it text
    assert data.key == "census-income"
    assert data.provenance["file_sha256"]
    assert data.provenance["format"] == "csv"


def test_a_csv_without_header_needs_and_uses_the_column_names(tmp_path: Path) -> None:
    rows = census_rows(50, seed=2)
    path = write_census(tmp_path / "noheader.csv", rows, header=False)
    data = datasets.load(str(path), target="income", columns=",".join(CENSUS_COLUMNS))
    assert len(data.frame) == 50
    assert list(data.frame.columns) == CENSUS_COLUMNS
    with_header = write_census(tmp_path / "header.csv", rows)  # names given and a header: skipped
    assert len(datasets.load(str(with_header), target="income", columns=CENSUS_COLUMNS).frame) == 50
    with pytest.raises(DataError, match=r"has 9 fields per row but columns names 2: a, b"):
        datasets.load(str(path), target="income", columns="a,b")


@pytest.mark.parametrize(
    ("labels", "positive", "mapping"),
    [
        (["yes", "no", "no"], "", {"no": 0, "yes": 1}),
        (["spam", "ham", "ham"], "", {"ham": 0, "spam": 1}),  # the rarer class
        (["spam", "ham", "ham"], "ham", {"ham": 1, "spam": 0}),
        ([2.0, 4.0, 4.0], "", {"2": 0, "4": 1}),
    ],
)
def test_binary_labels_are_mapped_and_the_mapping_recorded(
    labels: list[object], positive: str, mapping: dict[str, int]
) -> None:
    values, task, found = datasets.resolve_labels(pd.Series(labels, name="y"), positive=positive)
    assert task == "binary"
    assert found == mapping
    assert set(values) == {0.0, 1.0}


def test_numbers_make_a_regression_and_a_forced_task_is_checked() -> None:
    values = pd.Series([1.5, 2.0, 7.25, np.nan], name="y")
    assert datasets.resolve_labels(values)[1] == "regression"
    assert datasets.resolve_labels(pd.Series([0, 1, 1]), task="regression")[1] == "regression"
    with pytest.raises(DataError, match=r"task 'binary' needs two classes; target 'y' has 3"):
        datasets.resolve_labels(values, task="binary")
    with pytest.raises(DataError, match=r"task 'regression' needs a numeric target; 'y' holds"):
        datasets.resolve_labels(pd.Series(["a", "b"], name="y"), task="regression")
    with pytest.raises(DataError, match=r"target 'y' has 3 text classes \('a', 'b', 'c'\)"):
        datasets.resolve_labels(pd.Series(["a", "b", "c"], name="y"))


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", b"", r"empty.csv is empty \(0 bytes\)"),
        ("header.csv", b"age, income\n", r"header.csv has a header \(2 columns\) but no data rows"),
        (
            "latin.csv",
            b"city,y\nM\xfcnchen,1\nBonn,0\n",
            r"latin.csv is not UTF-8: byte 0xfc at "
            r"offset 8 \(line 2\); re-save it as UTF-8",
        ),
        ("data.json", b'{"a": 1}', r"data.json is neither CSV nor Parquet \(suffix '.json'\)"),
        ("fake.csv", b"PAR1\x00\x00\x15\x04", r"fake.csv holds binary data \(NUL bytes\), not CSV"),
        ("fake.parquet", b"a,b\n1,2\n", r"fake.parquet is not a readable Parquet file"),
        ("blank.csv", b"\n\n  \n", r"blank.csv holds only whitespace"),
    ],
)
def test_each_bad_file_gets_one_clear_error(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DataError, match=message):
        datasets.load(str(tmp_path / name), target="income")


def test_a_missing_path_a_missing_target_and_a_single_class_are_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"dataset file .*nowhere.csv does not exist"):
        datasets.load(str(tmp_path / "nowhere.csv"), target="y")
    path = tmp_path / "one.csv"
    path.write_text("x, y\n1, yes\n2, yes\n3, ?\n")
    with pytest.raises(DataError, match=r"target column 'label' not found in .*columns are: x, y"):
        datasets.load(str(path), target="label")
    with pytest.raises(DataError, match=r"target 'y' has a single value \('yes' in all 2 labelled"):
        datasets.load(str(path), target="y")
    with pytest.raises(ConfigError, match=r"is a file: name its label column with -p target"):
        datasets.load(str(path))
    with pytest.raises(ConfigError, match=r"unknown dataset 'iris'; built-in datasets: loans"):
        datasets.load("iris")


def test_parquet_files_and_timestamps_are_read(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "created_at": ["2024-01-02", "2024-01-01", "2024-01-03"] * 5,
            "x": range(15),
            "y": [0, 1, 1] * 5,
        }
    )
    frame.to_parquet(tmp_path / "t.parquet")
    data = datasets.load(str(tmp_path / "t.parquet"), target="y")
    assert data.timestamp == "created_at"
    assert pd.api.types.is_datetime64_any_dtype(data.frame["created_at"])
    assert datasets.load(str(tmp_path / "t.parquet"), target="y", timestamp="").timestamp is None
    with pytest.raises(DataError, match=r"timestamp column 'x' does not hold ISO-8601 dates"):
        datasets.load(str(tmp_path / "t.parquet"), target="y", timestamp="x")


def test_bundled_real_data_sets_load_with_their_task() -> None:
    cancer = datasets.load("breast_cancer")
    assert (cancer.task, cancer.target, len(cancer.frame)) == ("binary", "benign", 569)
    diabetes = datasets.load("diabetes")
    assert (diabetes.task, diabetes.target, len(diabetes.frame)) == (
        "regression",
        "progression",
        442,
    )


def test_the_data_card_records_provenance_balance_and_hash(tmp_path: Path) -> None:
    path = write_census(tmp_path / "c.csv", census_rows(120, seed=3))
    card = datasets.data_card(datasets.load(str(path), target="income"))
    assert card["rows"] == 120
    assert card["task"] == "binary"
    assert sum(card["class_balance"].values()) == 120
    assert card["label_mapping"] == {"<=50K": 0, ">50K": 1}
    assert card["missing_by_column"]["workclass"] > 0
    assert len(card["content_sha256"]) == 64
    assert datasets.card_table(card).set_index("fact").loc["rows", "value"] == "120"


def test_the_production_batch_is_a_stream_for_loans_and_the_holdout_otherwise() -> None:
    holdout = pd.DataFrame({"x": [1.0, 2.0]})
    card = {"source": "builtin:loans(n_rows=10, seed=1)"}
    stream = datasets.production_batch(
        card,
        holdout=holdout,
        n_rows=40,
        seed=3,
        after=pd.Timestamp("2025-01-01"),
        scenario="poison",
    )
    assert len(stream) == 40
    assert "truth_backdoor" in stream.columns
    other = {"source": "sklearn:diabetes"}
    same = datasets.production_batch(other, holdout=holdout, n_rows=40, seed=3, after=None)
    pd.testing.assert_frame_equal(same, holdout)
    with pytest.raises(ConfigError, match=r"scenario 'drift' needs the built-in loans data"):
        datasets.production_batch(
            other, holdout=holdout, n_rows=1, seed=1, after=None, scenario="drift"
        )

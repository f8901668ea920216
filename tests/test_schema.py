import json
from dataclasses import FrozenInstanceError
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from opsnb import config
from opsnb.errors import SchemaError
from opsnb.schema import (
    PROBABILITY,
    VALUE,
    Feature,
    Schema,
    describe,
    freeze,
    load_frozen,
    target_vector,
    to_matrix,
)
from opsnb.validation import infer_schema


def _frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "row_id": [f"r{i}" for i in range(n)],
            "income": rng.normal(50, 10, n),
            "city": rng.choice(["a", "b", "c"], n),
            "y": (rng.uniform(size=n) < 0.3).astype(float),
        }
    )


def _inferred() -> Schema:
    return infer_schema(_frame(), target="y", task="binary", label_mapping={"no": 0, "yes": 1})


def test_schema_json_is_read_and_written_back_byte_for_byte(tmp_path: Path) -> None:
    schema = _inferred()
    path = schema.save(tmp_path / "schema.json")
    text = path.read_text()
    loaded = Schema.load(path)
    assert loaded == schema
    assert loaded.save(tmp_path / "again.json").read_text() == text
    doc = json.loads(text)  # the on-disk format every earlier bundle and run holds
    assert set(doc) == {
        "version", "task", "target", "timestamp", "ids", "features", "excluded",
        "range_tolerance", "unknown_categories", "label_mapping",
    }  # fmt: skip
    assert doc["features"][0] == {
        "name": "income",
        "kind": "numeric",
        "nullable": False,
        "dtype": "float64",
        "min": schema.features[0].min,
        "max": schema.features[0].max,
        "lower": schema.features[0].lower,
        "upper": schema.features[0].upper,
    }
    assert doc["features"][1]["categories"] == ["a", "b", "c"]
    assert "min" not in doc["features"][1]


def test_a_minimal_document_keeps_its_absent_fields_absent() -> None:
    feature = {"name": "x", "kind": "numeric", "nullable": True, "min": -1.0, "max": 1.0}
    schema = Schema.from_dict({"task": "regression", "target": "y", "features": [feature]})
    assert schema.features[0].to_dict() == feature
    assert schema.features[0].accepted_range == (-1.0, 1.0)
    assert schema.unknown_categories == "allow"
    assert schema.output == VALUE
    assert _inferred().output == PROBABILITY


def test_the_schema_is_typed_and_frozen() -> None:
    schema = _inferred()
    assert schema.feature_names == ["income", "city"]
    assert schema.feature_kinds == ["numeric", "categorical"]
    assert schema.feature_types == ["q", "c"]
    assert schema.feature("city").is_categorical
    assert schema.label_mapping == {"no": 0, "yes": 1}
    with pytest.raises(FrozenInstanceError):
        schema.task = "regression"  # type: ignore[misc]
    with pytest.raises(SchemaError, match=r"no feature 'town' in the schema; features are: income"):
        schema.feature("town")


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], r"schema.json must hold a JSON object, got list"),
        (
            {"task": "binary", "target": "y", "features": [], "colour": 1},
            r"unknown key\(s\) 'colour'",
        ),
        ({"target": "y", "features": []}, r"needs a string 'task', got None"),
        ({"task": "binary", "target": "y"}, r"needs a 'features' list"),
        ({"task": "binary", "target": "y", "features": [{"kind": "numeric"}]}, r"string 'name'"),
        (
            {"task": "binary", "target": "y", "features": [{"name": "a", "kind": "text"}]},
            r"feature 'a': kind 'text' is not a feature kind; expected numeric or categorical",
        ),
        (
            {"task": "binary", "target": "y", "features": [{"name": "a", "kind": "categorical"}]},
            r"feature 'a': a categorical feature needs a 'categories' list",
        ),
    ],
)
def test_a_broken_schema_document_is_refused_by_name(doc: object, message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        Schema.from_dict(doc)  # type: ignore[arg-type]


def test_to_matrix_encodes_categories_by_position_and_unknown_as_nan() -> None:
    schema = _inferred()
    rows = pd.DataFrame({"city": ["c", "zurich", None], "income": ["1.5", 2, None]})
    matrix = to_matrix(rows, schema)
    assert matrix.dtype == np.float32
    np.testing.assert_array_equal(matrix[:, 1], [2, np.nan, np.nan])
    np.testing.assert_array_equal(matrix[:, 0], [1.5, 2.0, np.nan])
    np.testing.assert_array_equal(target_vector(_frame(3), schema), _frame(3)["y"].to_numpy())
    with pytest.raises(SchemaError, match=r"input lacks feature column\(s\) 'city'"):
        to_matrix(_frame().drop(columns="city"), schema)


def test_to_matrix_refuses_values_float32_cannot_hold() -> None:
    schema = Schema(task="binary", target="y", features=(Feature("income", "numeric", True),))
    frame = pd.DataFrame({"income": [1.0, np.nan, 1e39, -np.inf]})
    with pytest.raises(
        SchemaError,
        match=r"feature 'income' row 2 has value 1e\+39 outside the "
        r"float32 range ±3.403e\+38 the compiled model accepts \(2 such rows\)",
    ):
        to_matrix(frame, schema)


def test_describe_is_one_line_per_fact() -> None:
    schema = infer_schema(_frame().assign(always="same"), target="y", task="binary")
    assert describe(schema).splitlines() == [
        "target: y (binary)",
        "timestamp: None",
        "ids: row_id",
        "excluded always: constant (every value is 'same')",
        "income: numeric, required",
        "city: categorical, required, 3 categories",
    ]


def test_the_frozen_contract_is_found_by_key_and_checked_to_fit(runs_dir: Path) -> None:
    path = config.contract_path("my data/set-y")
    assert path == runs_dir / "contracts" / "my_data_set-y.json"
    assert load_frozen(path, target="y", task="binary") is None
    schema = _inferred()
    freeze(schema, path)
    assert load_frozen(path, target="y", task="binary") == schema
    with pytest.raises(
        SchemaError,
        match=r"is for task 'binary', this run has 'regression'; "
        r"pass -p refreeze_schema true",
    ):
        load_frozen(path, target="y", task="regression")

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from opsnb import config, validation
from opsnb.errors import ConfigError, SchemaError


def _frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = (rng.uniform(size=n) < 0.3).astype(float)
    return pd.DataFrame(
        {
            "row_id": [f"r{i}" for i in range(n)],
            "income": rng.normal(50, 10, n),
            "city": rng.choice(["a", "b", "c"], n),
            "always": ["same"] * n,
            "y_copy": y,
            "y": y,
        }
    )


def test_inference_records_kinds_ranges_and_why_columns_are_excluded() -> None:
    schema = validation.infer_schema(_frame(), target="y", task="binary", range_tolerance=0.5)
    assert validation.feature_names(schema) == ["income", "city"]
    assert schema["ids"] == ["row_id"]
    assert schema["excluded"]["always"] == "constant (every value is 'same')"
    assert schema["excluded"]["y_copy"].startswith("leaks the target (AUC 1.000 >= 0.99)")
    income = schema["features"][0]
    span = income["max"] - income["min"]
    assert income["lower"] == pytest.approx(income["min"] - 0.5 * span)
    assert schema["features"][1]["categories"] == ["a", "b", "c"]
    assert schema["unknown_categories"] == "reject"
    assert "excluded y_copy: leaks the target" in validation.describe(schema)


def test_a_near_copy_of_the_target_is_caught_but_an_honest_feature_is_not() -> None:
    frame = _frame(1000, seed=1)
    noisy = frame["y"].copy()
    noisy.iloc[:4] = 1 - noisy.iloc[:4]  # 0.4 % of labels differ
    frame["y_copy"] = noisy.map({0.0: "no", 1.0: "yes"})
    frame["signal"] = frame["y"] + np.random.default_rng(2).normal(0, 0.8, len(frame))
    found = validation.leakage(
        frame, target="y", task="binary", kinds={"y_copy": "categorical", "signal": "numeric"}
    )
    assert list(found) == ["y_copy"]
    assert "purity 0.996" in found["y_copy"]
    target = pd.Series(np.arange(100.0), name="t")
    reg = pd.DataFrame({"t": target, "t_cm": target * 2.54 + 1, "x": np.sin(target)})
    found = validation.leakage(
        reg, target="t", task="regression", kinds={"t_cm": "numeric", "x": "numeric"}
    )
    assert list(found) == ["t_cm"]


def test_violations_give_one_reason_per_row_in_priority_order() -> None:
    schema = validation.infer_schema(_frame(), target="y", task="binary", range_tolerance=0.0)
    rows = _frame(6, seed=3).drop(columns=["y_copy"]).astype({"income": "object"})
    rows.loc[0, "income"] = "n/a-ish"  # wrong type
    rows.loc[1, "income"] = 1e9  # out of range
    rows.loc[2, "city"] = "zurich"  # unknown category
    rows.loc[3, ["income", "city"]] = [np.nan, "zurich"]  # missing required wins over unknown
    rows.loc[4, "income"] = np.inf  # beyond float32: out of range
    found = validation.violations(rows, schema)
    assert found["reason"].tolist()[:5] == [
        "wrong type",
        "out of range",
        "unknown category",
        "missing required value",
        "out of range",
    ]
    assert found["column"].tolist()[:5] == ["income", "income", "city", "income", "income"]
    assert pd.isna(found.loc[5, "reason"])
    allowing = {**schema, "unknown_categories": "allow"}
    assert pd.isna(validation.violations(rows.iloc[[2]], allowing).loc[2, "reason"])


def test_the_frozen_contract_is_found_by_key_and_checked_to_fit(
    runs_dir: Path,
) -> None:
    path = config.contract_path("my data/set-y")
    assert path == runs_dir / "contracts" / "my_data_set-y.json"
    assert validation.load_frozen(path, target="y", task="binary") is None
    schema = validation.infer_schema(_frame(), target="y", task="binary")
    validation.freeze(schema, path)
    assert validation.load_frozen(path, target="y", task="binary") == schema
    with pytest.raises(
        SchemaError,
        match=r"is for task 'binary', this run has 'regression'; "
        r"pass -p refreeze_schema true",
    ):
        validation.load_frozen(path, target="y", task="regression")


def test_bad_options_and_missing_columns_are_named() -> None:
    with pytest.raises(ConfigError, match=r"unknown_categories 'drop' is not a policy"):
        validation.infer_schema(_frame(), target="y", task="binary", unknown_categories="drop")
    with pytest.raises(SchemaError, match=r"target column 'z' not found; columns are: row_id"):
        validation.infer_schema(_frame(), target="z", task="binary")
    schema = validation.infer_schema(_frame(), target="y", task="binary")
    with pytest.raises(SchemaError, match=r"input lacks feature column\(s\) 'city'"):
        validation.to_matrix(_frame().drop(columns="city"), schema)


def test_to_matrix_encodes_categories_by_position_and_unknown_as_nan() -> None:
    schema = validation.infer_schema(_frame(), target="y", task="binary")
    rows = pd.DataFrame({"city": ["c", "zurich", None], "income": ["1.5", 2, None]})
    matrix = validation.to_matrix(rows, schema)
    np.testing.assert_array_equal(matrix[:, 1], [2, np.nan, np.nan])
    np.testing.assert_array_equal(matrix[:, 0], [1.5, 2.0, np.nan])


def test_to_matrix_refuses_values_float32_cannot_hold() -> None:
    schema = {"features": [{"name": "income", "kind": "numeric", "nullable": True}]}
    frame = pd.DataFrame({"income": [1.0, np.nan, 1e39, -np.inf]})
    with pytest.raises(
        SchemaError,
        match=r"feature 'income' row 2 has value 1e\+39 outside the "
        r"float32 range ±3.403e\+38 the compiled model accepts \(2 such rows\)",
    ):
        validation.to_matrix(frame, schema)

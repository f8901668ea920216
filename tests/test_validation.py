from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from opsnb import validation
from opsnb.errors import ConfigError, SchemaError
from opsnb.schema import describe


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
    assert schema.feature_names == ["income", "city"]
    assert schema.ids == ("row_id",)
    assert schema.excluded["always"] == "constant (every value is 'same')"
    assert schema.excluded["y_copy"].startswith("leaks the target (AUC 1.000 >= 0.99)")
    income = schema.features[0]
    assert income.min is not None
    assert income.max is not None
    span = income.max - income.min
    assert income.lower == pytest.approx(income.min - 0.5 * span)
    assert schema.features[1].categories == ("a", "b", "c")
    assert schema.unknown_categories == "reject"
    assert "excluded y_copy: leaks the target" in describe(schema)


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
    allowing = replace(schema, unknown_categories="allow")
    assert pd.isna(validation.violations(rows.iloc[[2]], allowing).loc[2, "reason"])


def test_bad_options_and_missing_columns_are_named() -> None:
    with pytest.raises(ConfigError, match=r"unknown_categories 'drop' is not a policy"):
        validation.infer_schema(_frame(), target="y", task="binary", unknown_categories="drop")
    with pytest.raises(SchemaError, match=r"target column 'z' not found; columns are: row_id"):
        validation.infer_schema(_frame(), target="z", task="binary")
    schema = validation.infer_schema(_frame(), target="y", task="binary")
    with pytest.raises(SchemaError, match=r"input lacks feature column\(s\) 'city'"):
        validation.violations(_frame().drop(columns="city"), schema)

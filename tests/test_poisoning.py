"""The screen on real data: flips and backdoors flagged with reasons, clean admitted."""

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

from opsnb import loans, poisoning, prepare
from opsnb.errors import DataError, SchemaError
from opsnb.schema import Feature, Schema
from opsnb.validation import infer_schema

HYPER = {"max_depth": 3, "learning_rate": 0.1, "n_estimators": 80}
FRACTIONS = {"train": 0.6, "valid": 0.15, "test": 0.15, "trusted": 0.1}


@pytest.fixture(scope="module")
def world():
    raw = loans.loan_applications(5000, seed=3)
    prep = prepare.prepare(
        raw, target="default", task="binary", timestamp="applied_at", fractions=FRACTIONS, seed=3
    )
    p = prep.parts
    champion = poisoning.fit(p["train"], p["valid"], prep.schema, HYPER, seed=3, threads=1)
    return {
        "schema": prep.schema,
        "train": p["train"],
        "valid": p["valid"],
        "trusted": p["trusted"],
        "current": champion,
        "after": raw["applied_at"].max(),
    }


def _screen(world, batch, **options):
    return poisoning.screen(
        batch,
        schema=world["schema"],
        train=world["train"],
        valid=world["valid"],
        trusted=world["trusted"],
        current=world["current"],
        hyperparameters=HYPER,
        metric="auc",
        options=poisoning.ScreenOptions(seed=1, **options),
    )


def _batch(world, scenario, rows=1500):
    return loans.production_stream(
        rows, seed=77, after=world["after"], scenario=loans.scenario(scenario)
    )


def test_a_backdoor_is_flagged_with_its_trigger_as_the_reason(world) -> None:
    batch = _batch(world, "backdoor")
    screened = _screen(world, batch)
    flagged = screened.flagged
    assert list(flagged.columns) == ["row", "check", "reason", "detail"]
    doors = flagged[flagged["check"] == "backdoor"]
    truth = np.flatnonzero(batch["truth_backdoor"])
    assert len(set(doors["row"]) & set(truth)) >= 0.9 * len(truth)
    assert len(set(doors["row"]) - set(truth)) <= 0.1 * len(truth)
    assert doors["detail"].str.contains("income = 77777").any()
    assert (doors["reason"] == "backdoor: label purity far above trusted data").all()
    top = screened.backdoors.iloc[0]
    assert top["feature"] == "income"
    assert top["q_value"] <= 0.01


def test_a_clean_batch_is_admitted(world) -> None:
    batch = _batch(world, "clean")
    screened = _screen(world, batch)
    assert screened.passed, screened.refusals
    assert screened.counts()["backdoor"] == 0
    assert len(screened.admitted) >= 0.97 * len(batch)
    assert screened.impact is not None
    assert not screened.impact["refused"]
    assert {"psi", "p_value", "shifted"} <= set(screened.shift.columns)


def test_drifted_batch_is_refused_with_each_reason(world) -> None:
    screened = _screen(world, _batch(world, "drift"))
    assert not screened.passed
    text = " | ".join(screened.refusals)
    assert "distribution shift: feature 'loan_amount'" in text or "rows were flagged" in text
    contract = screened.flagged[screened.flagged["check"] == "contract"]
    assert contract["reason"].str.startswith("contract: ").all()
    assert contract["reason"].str.contains(r"out of range \(loan_amount\)|unknown category").any()


def test_a_batch_that_hurts_the_trusted_metric_is_refused(world) -> None:
    batch = _batch(world, "clean")
    batch["default"] = 1 - batch["default"]  # every label a lie
    # Only the negative-impact check may refuse it here: label issues and the share limit off.
    screened = _screen(world, batch, label_alpha=0.0, max_flagged_share=1.0)
    assert not screened.passed
    assert any(r.startswith("negative impact: trusted auc") for r in screened.refusals)
    assert screened.impact["refused"]
    assert screened.impact["high"] < 0


def test_flipped_labels_of_breast_cancer_are_flagged_with_reasons() -> None:
    frame = load_breast_cancer(as_frame=True).frame.rename(columns={"target": "benign"})
    rng = np.random.default_rng(4)
    part = rng.choice(["train", "valid", "trusted", "batch"], len(frame), p=[0.5, 0.15, 0.15, 0.2])
    schema = infer_schema(
        frame[part == "train"], target="benign", task="binary", range_tolerance=0.5
    )
    batch = frame[part == "batch"].reset_index(drop=True)
    flips = rng.uniform(size=len(batch)) < 0.1
    batch.loc[flips, "benign"] = 1 - batch.loc[flips, "benign"]
    train, valid, trusted = (frame[part == p] for p in ("train", "valid", "trusted"))
    current = poisoning.fit(train, valid, schema, HYPER, seed=0, threads=1)
    screened = poisoning.screen(
        batch,
        schema=schema,
        train=train,
        valid=valid,
        trusted=trusted,
        current=current,
        hyperparameters=HYPER,
        metric="auc",
        options=poisoning.ScreenOptions(threads=1),
    )
    issues = screened.flagged[screened.flagged["check"] == "label issue"]
    caught = flips[issues["row"].to_numpy()].sum()
    assert caught >= 0.6 * flips.sum()
    assert caught >= 0.6 * len(issues)
    assert issues["detail"].str.match(r"labelled [01], out-of-fold P\(label [01]\) 0\.\d{3}").all()


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (lambda b: b.iloc[:0], DataError, "the batch is empty"),
        (lambda b: b.drop(columns="default"), DataError, "no label column 'default'"),
        (lambda b: b.assign(default=np.nan), DataError, "the batch has no label"),
        (
            lambda b: b.assign(default=b["default"] * 2),
            DataError,
            r"label 'default' has \d+ value\(s\) outside the task's classes \(2.*expected 0, 1",
        ),
        (
            lambda b: b.drop(columns=["income", "region"]),
            SchemaError,
            "lacks feature column\\(s\\) 'income', 'region'",
        ),
    ],
)
def test_bad_batches_get_one_clear_error(world, change, error, message) -> None:
    batch = change(_batch(world, "clean", rows=50))
    with pytest.raises(error, match=message):
        poisoning.labelled_batch(batch, world["schema"])


def test_string_labels_map_through_the_recorded_mapping() -> None:
    schema = Schema(task="binary", target="y", features=(Feature("x", "numeric"),),
                    label_mapping={">50K": 1, "<=50K": 0})  # fmt: skip
    out = poisoning.labelled_batch(pd.DataFrame({"x": [1, 2], "y": [">50K", "<=50K"]}), schema)
    assert out["y"].tolist() == [1, 0]

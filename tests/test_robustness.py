"""Attacks on real XGBoost forests: flips replayed through XGBoost and the compiled library,
immutable features, the exact MILP against enumeration, certificates, the gate, bad input."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from opsnb import attack, forest, milp, plots, robustness, robustness_report
from opsnb.errors import ConfigError, ParityError, StageError
from opsnb.schema import Schema, to_matrix
from tests.model_kinds import Kind, make_schema


def labels_of(kind: Kind) -> np.ndarray:
    """The labels ``train_kind`` trained on (recomputed from the rows)."""
    z = np.nan_to_num(kind.x)
    signal = z[:, 0] + 0.5 * z[:, 1] * (z[:, -1] > 0.3) - 0.3 * z[:, 2] ** 2
    return signal if kind.name == "regression" else (signal > 0).astype(float)


def analysed(kind: Kind, threat: robustness.ThreatModel, *, rows: int = 40, exact: int = 0):
    space = robustness.build(kind.booster, kind.schema, kind.x[:2000], threat)
    found = robustness.analyse(
        space, kind.x[2000:], labels_of(kind)[2000:], threat=threat, sample=rows, seed=1,
        exact_rows=exact, exact_time_limit=20,
    )  # fmt: skip
    return space, found


@pytest.mark.parametrize("name", ["binary", "regression", "categorical", "missing"])
def test_forest_reads_the_booster_as_xgboost_evaluates_it(model_kinds: dict[str, Kind], name: str):
    kind = model_kinds[name]
    trees = forest.from_booster(kind.booster)
    names = kind.schema.feature_names
    types = kind.schema.feature_types
    d = xgb.DMatrix(kind.x, feature_names=names, feature_types=types, enable_categorical=True)
    expected = kind.booster.predict(d, output_margin=True)
    assert np.max(np.abs(trees.margin(kind.x) - expected)) < 1e-4


@pytest.mark.parametrize("name", ["binary", "categorical", "missing"])
def test_examples_flip_xgboost_and_the_compiled_library(model_kinds, compile_cache, name):
    kind = model_kinds[name]
    threat = robustness.threat_model(kind.schema, epsilon=0.1, k=1)
    _, found = analysed(kind, threat)
    assert (found.linf < math.inf).sum() > 10
    assert (found.l0 >= 1).sum() > 10
    library = robustness.library_for(kind.model_path, kind.schema, cache_dir=compile_cache)
    replayed = robustness.replay(found, kind.booster, library, kind.schema, threat)
    assert replayed["mismatches"] == 0
    assert replayed["examples"] == (found.linf < math.inf).sum() + (found.l0 >= 1).sum()
    # every example re-checked from the file alone: decode, re-encode, score, compare
    frame = robustness_report.examples_frame(found, kind.booster, kind.schema)
    adv = frame[[c for c in frame if c.startswith("adv_") and c != "adv_prediction"]]
    adv.columns = [c[4:] for c in adv.columns]
    again = robustness.predict_xgb(kind.booster, to_matrix(adv, kind.schema), kind.schema)
    flipped = frame["flipped"].to_numpy()
    assert np.array_equal((again >= 0.5)[flipped], (frame["prediction"] < 0.5)[flipped])
    assert (frame["linf"][flipped] > 0).all()
    assert (frame["l0"][flipped] >= 1).all()
    # a tampered example that no longer flips is a parity failure naming the row
    first = int(np.flatnonzero(found.linf < math.inf)[0])
    found.linf_point[first] = found.x[first]
    with pytest.raises(ParityError, match=f"test row {found.rows[first]}"):
        robustness.replay(found, kind.booster, library, kind.schema, threat)


def test_immutable_features_never_change(model_kinds):
    kind = model_kinds["categorical"]
    threat = robustness.threat_model(kind.schema, epsilon=0.3, k=3, immutable="x0, colour")
    _, found = analysed(kind, threat)
    assert (found.linf < math.inf).any()
    assert (found.l0 >= 1).any()
    for points in (found.linf_point, found.l0_point):
        assert np.array_equal(points[:, [0, 2]], found.x[:, [0, 2]], equal_nan=True)
    free = robustness.threat_model(kind.schema, epsilon=0.3, k=3)
    _, unrestricted = analysed(kind, free)
    assert unrestricted.robust_accuracy(0.3) <= found.robust_accuracy(0.3)


def test_categorical_features_change_only_under_l0(model_kinds):
    kind = model_kinds["categorical"]
    threat = robustness.threat_model(kind.schema, epsilon=0.5, k=5)
    _, found = analysed(kind, threat)
    assert np.array_equal(found.linf_point[:, 2], found.x[:, 2], equal_nan=True)
    codes = found.l0_point[:, 2][~np.isnan(found.l0_point[:, 2])]
    assert set(codes.astype(int)) <= set(range(len(kind.schema.features[2].categories)))


def tiny_forest(seed: int) -> tuple[xgb.Booster, np.ndarray, Schema]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(400, 2)).astype(np.float32)
    y = ((x[:, 0] + x[:, 1] > 0.1) ^ (rng.random(400) < 0.1)).astype(float)
    d = xgb.DMatrix(x, label=y, feature_names=["a", "b"])
    params = {"objective": "binary:logistic", "max_depth": 2, "seed": seed, "max_bin": 8}
    schema = Schema.from_dict(
        {
            "task": "binary",
            "target": "y",
            "features": [{"name": n, "kind": "numeric"} for n in "ab"],
        }
    )
    return xgb.train(params, d, 4), x, schema


def enumerated_optimum(space: attack.Space, x: np.ndarray) -> float:
    """The smallest L∞ flip by brute force: the point of every threshold cell nearest ``x``."""
    options = []
    for j in range(2):
        t = space.thresholds[j]
        nearest = [min(max(x[j], lo), np.nextafter(hi, np.float32(-np.inf)))
                   for lo, hi in itertools.pairwise([-np.inf, *t, np.inf])]  # fmt: skip
        options.append(np.array(nearest, np.float32))
    grid = np.array(list(itertools.product(*options)), np.float32)
    s = attack.side(space.forest.margin(x[None])[0])
    flips = s * space.forest.margin(grid) <= -attack.MARGIN_SAFETY
    if not flips.any():
        return math.inf
    dist = np.max(np.abs(grid[flips] - x.astype(np.float64)) / space.span, axis=1)
    return float(dist.min())


@pytest.mark.parametrize("seed", [0, 1])
def test_fast_attack_and_milp_match_enumeration_on_tiny_forests(seed: int):
    booster, x, schema = tiny_forest(seed)
    threat = robustness.threat_model(schema, epsilon=0.1)
    space = robustness.build(booster, schema, x, threat)
    for row in x[:25]:
        truth = enumerated_optimum(space, row)
        fast = attack.min_linf(space, row, cap=math.inf)
        exact = milp.min_linf_exact(space, row)
        assert exact.optimal
        assert fast.linf == pytest.approx(truth, rel=1e-9, abs=1e-12)
        assert exact.distance == pytest.approx(truth, rel=1e-6, abs=1e-9)


def test_certificates_are_never_contradicted(model_kinds):
    kind = model_kinds["missing"]
    threat = robustness.threat_model(kind.schema, epsilon=0.05)
    space, found = analysed(kind, threat, rows=30, exact=2)
    assert (found.certified > 0).mean() > 0.5  # the bound certifies something
    assert (found.certified < found.linf).all()  # no example inside a certified radius
    for i, e in enumerate(found.exact):
        assert e.optimal
        assert found.certified[i] < e.distance <= found.linf[i] * (1 + 1e-9)
        assert e.point is not None
        s = attack.side(found.margin[i])
        assert s * space.forest.margin(e.point[None])[0] < 0
    # a bound at a time limit is still a bound: never above the optimum
    quick = milp.min_linf_exact(space, found.x[0], time_limit=1e-3)
    assert quick.lower_bound <= found.exact[0].distance + 1e-9
    summary = robustness_report.exact_summary(found)
    assert summary["optimal"] == 2
    assert summary["median_ratio"] >= 1.0


def test_attack_finds_flips_noise_of_the_same_size_does_not(model_kinds):
    kind = model_kinds["binary"]
    threat = robustness.threat_model(kind.schema, epsilon=0.05)
    _, found = analysed(kind, threat, rows=60)
    clean = float(found.correct.mean())
    assert found.robust_accuracy(0.05) < clean
    assert robustness_report.report(found, threat, kind.schema, replayed={}, gate={})["at_epsilon"][
        "noise_accuracy"
    ] > found.robust_accuracy(0.05)


def test_regression_attacks_past_a_threshold_or_says_it_does_not_apply(model_kinds):
    kind = model_kinds["regression"]
    off = robustness.threat_model(kind.schema)
    _, nothing = analysed(kind, off)
    assert nothing.rows.size == 0
    summary = robustness_report.report(nothing, off, kind.schema, replayed={}, gate={})
    assert summary["applies"] is False
    assert "decision_threshold" in summary["reason"]
    assert "does not apply" in robustness_report.headline(nothing, off, kind.schema)
    verdict = robustness.gate(nothing, {"robustness_floor": 0.9})
    assert verdict["passed"]
    assert "does not apply" in robustness.enforce(verdict)
    on = robustness.threat_model(kind.schema, threshold=0.0, epsilon=0.1)
    _space, found = analysed(kind, on)
    assert (found.linf < math.inf).any()
    pred = robustness.predict_xgb(kind.booster, found.linf_point, kind.schema)
    before = robustness.predict_xgb(kind.booster, found.x, kind.schema)
    hit = found.linf < math.inf
    assert ((pred >= 0) != (before >= 0))[hit].all()


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"epsilon": 0}, "epsilon 0 is outside"),
        ({"epsilon": 1.5}, "epsilon 1.5 is outside"),
        ({"k": 0}, "k 0 is not an integer >= 1"),
        ({"immutable": "x0,age"}, r"immutable names \['age'\]"),
        ({"threshold": 0.3}, "threshold 0.3 is for regression"),
    ],
)
def test_bad_threat_model_is_one_clear_error(options, match):
    with pytest.raises(ConfigError, match=match):
        robustness.threat_model(
            Schema.from_dict(make_schema("binary", categorical=False)), **options
        )


def test_gate_fails_below_the_floor_with_evidence(model_kinds):
    kind = model_kinds["binary"]
    threat = robustness.threat_model(kind.schema, epsilon=0.05)
    _, found = analysed(kind, threat)
    assert "no robustness floor" in robustness.enforce(
        robustness.gate(found, {"robustness_floor": None})
    )
    low = robustness.gate(found, {"robustness_floor": 0.1, "robustness_epsilon": 0.05})
    assert robustness.enforce(low).startswith("PASS")
    high = robustness.gate(found, {"robustness_floor": 0.99, "robustness_epsilon": 0.05})
    assert not high["passed"]
    assert len(high["evidence"]) == 5
    with pytest.raises(
        StageError,
        match=r"FAIL: robust accuracy 0\.\d+ at epsilon 0.05 against floor 0.99.*row \d+",
    ):
        robustness.enforce(high)


def test_tables_and_plots_render(model_kinds):
    kind = model_kinds["categorical"]
    threat = robustness.threat_model(kind.schema, epsilon=0.1, k=2)
    _, found = analysed(kind, threat, exact=1)
    gate = robustness.gate(found, {"robustness_floor": 0.2})
    summary = robustness_report.report(found, threat, kind.schema, replayed={}, gate=gate)
    assert [c["k"] for c in summary["curve_k"]] == [1, 2, 3, 4, 5]
    assert summary["features"][0]["linf_share"] >= summary["features"][-1]["linf_share"]
    table = robustness_report.example_table(found, kind.booster, kind.schema, rank=0)
    assert "prediction" in table.index
    assert len(table) >= 2
    assert isinstance(robustness_report.summary_table(summary), pd.DataFrame)
    assert robustness_report.exact_table(summary)["rows"][0] == 1
    assert "off" in robustness_report.training_table(summary).iloc[0, 0]

    for fig in (
        plots.robust_accuracy_curve(summary),
        plots.robust_accuracy_by_k(summary),
        plots.minimal_perturbation(summary, found.linf),
        plots.attackable_features(summary),
        plots.robust_accuracy_curve({"applies": False, "reason": "regression"}),
    ):
        assert fig.axes

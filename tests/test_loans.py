import pandas as pd
import pytest

from opsnb import loans
from opsnb.errors import ConfigError

AFTER = pd.Timestamp("2025-07-01")


def test_the_plain_stream_is_seeded_and_unaltered() -> None:
    a = loans.production_stream(300, seed=9, after=AFTER)
    pd.testing.assert_frame_equal(a, loans.production_stream(300, seed=9, after=AFTER))
    assert a["applied_at"].min() >= AFTER
    assert not a.filter(like=loans.TRUTH_PREFIX).to_numpy().any()


def test_drift_shifts_adds_a_category_and_changes_a_unit_in_the_second_half() -> None:
    plain = loans.production_stream(2000, seed=9, after=AFTER)
    drifted = loans.production_stream(2000, seed=9, after=AFTER, scenario=loans.scenario("drift"))
    late = slice(1000, None)
    ratio = (drifted["loan_amount"] / plain["loan_amount"]).iloc[late]
    assert ratio.round(6).eq(0.001).all()  # thousands instead of units
    assert (drifted["purpose"] == loans.NEW_PURPOSE).iloc[:1000].sum() == 0
    assert (drifted["purpose"] == loans.NEW_PURPOSE).iloc[late].mean() == pytest.approx(
        0.2, abs=0.04
    )
    assert drifted["income"].iloc[-200:].mean() > 1.4 * plain["income"].iloc[-200:].mean()
    assert drifted["truth_drifted"].iloc[late].all()
    pd.testing.assert_series_equal(drifted["default"], plain["default"])  # labels untouched


def test_poison_flips_labels_in_one_region_and_plants_a_backdoor() -> None:
    plain = loans.production_stream(4000, seed=2, after=AFTER)
    poisoned = loans.production_stream(4000, seed=2, after=AFTER, scenario=loans.scenario("poison"))
    changed = poisoned["default"] != plain["default"]
    flipped, backdoor = poisoned["truth_flipped"], poisoned["truth_backdoor"]
    assert set(poisoned.loc[flipped, "region"]) == {"east"}
    assert changed[flipped].all()
    assert not changed[~flipped & ~backdoor].any()
    assert (poisoned.loc[backdoor, "income"] == loans.BACKDOOR_INCOME).all()
    assert (poisoned.loc[backdoor, "default"] == 0).all()
    assert backdoor.mean() == pytest.approx(0.03, abs=0.01)


def test_unknown_scenarios_and_bad_knobs_are_refused() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown scenario 'storm'; known scenarios: none, drift"
    ):
        loans.scenario("storm")
    with pytest.raises(ConfigError, match=r"scenario label_flip_share must be within \[0, 1\]"):
        loans.Scenario(label_flip_share=1.5)
    with pytest.raises(ConfigError, match=r"flip_region 'moon' is not a region"):
        loans.Scenario(flip_region="moon")


def test_label_flip_spreads_a_tenth_of_flips_over_every_region() -> None:
    plain = loans.production_stream(5000, seed=4, after=AFTER)
    flipped = loans.production_stream(
        5000, seed=4, after=AFTER, scenario=loans.scenario("label-flip")
    )
    truth = flipped["truth_flipped"]
    assert truth.mean() == pytest.approx(0.1, abs=0.015)
    assert set(flipped.loc[truth, "region"]) == set(loans.REGIONS)
    assert (flipped["default"] != plain["default"]).eq(truth).all()
    assert not flipped["truth_backdoor"].any()


def test_clean_and_backdoor_batches_for_the_update_stage() -> None:
    plain = loans.production_stream(3000, seed=5, after=AFTER)
    clean = loans.production_stream(3000, seed=5, after=AFTER, scenario=loans.scenario("clean"))
    pd.testing.assert_frame_equal(plain, clean)
    door = loans.production_stream(3000, seed=5, after=AFTER, scenario=loans.scenario("backdoor"))
    trigger = door["truth_backdoor"]
    assert (door.loc[trigger, "income"] == loans.BACKDOOR_INCOME).all()
    assert (door.loc[trigger, "default"] == 0).all()
    assert not door["truth_flipped"].any()

import numpy as np
import pandas as pd
import pytest

from opsnb import monitoring


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def test_psi_is_near_zero_for_the_same_distribution(rng) -> None:
    assert monitoring.psi(rng.normal(size=5000), rng.normal(size=5000)) < 0.02


def test_psi_grows_with_a_shift_and_counts_missing_values(rng) -> None:
    reference = rng.normal(size=5000)
    small = monitoring.psi(reference, rng.normal(0.2, 1, 5000))
    large = monitoring.psi(reference, rng.normal(1.0, 1, 5000))
    assert 0.02 < small < large
    assert large > monitoring.PSI_MAJOR
    with_missing = rng.normal(size=5000)
    with_missing[:1500] = np.nan
    assert monitoring.psi(reference, with_missing) > monitoring.PSI_MAJOR


def test_psi_of_categorical_codes_sees_a_new_mix(rng) -> None:
    reference = rng.choice([0.0, 1.0, 2.0], 5000, p=[0.6, 0.3, 0.1])
    assert monitoring.psi(reference, reference.copy(), categorical=True) < 1e-9
    shifted = rng.choice([0.0, 1.0, 2.0], 5000, p=[0.2, 0.3, 0.5])
    assert monitoring.psi(reference, shifted, categorical=True) > monitoring.PSI_MAJOR


def test_drift_table_ranks_features_and_alerts_name_them(rng) -> None:
    reference = rng.normal(size=(4000, 2))
    current = np.column_stack([rng.normal(size=4000), rng.normal(2, 1, 4000)])
    table = monitoring.drift_table(reference, current, ["stable_x", "moved_y"], ["numeric"] * 2)
    assert list(table["feature"]) == ["moved_y", "stable_x"]
    assert list(table["level"]) == ["major", "stable"]
    alerts = monitoring.alerts(table, {"auc": 0.61}, metric="auc", floor=0.7)
    assert [a["kind"] for a in alerts] == ["drift", "quality"]
    assert "feature 'moved_y' drifted" in alerts[0]["message"]
    assert alerts[1]["message"] == "live auc 0.6100 is below the floor 0.7"


def test_a_loss_alerts_when_it_rises_above_its_floor() -> None:
    table = pd.DataFrame({"feature": ["x"], "psi": [0.01], "level": ["stable"]})
    assert monitoring.alerts(table, {"rmse": 9.0}, metric="rmse", floor=10.0) == []
    [alert] = monitoring.alerts(table, {"rmse": 12.0}, metric="rmse", floor=10.0)
    assert alert["message"] == "live rmse 12.0000 is above the floor 10.0"


def test_no_alerts_when_all_is_well() -> None:
    table = pd.DataFrame({"feature": ["x"], "psi": [0.01], "level": ["stable"]})
    assert monitoring.alerts(table, {"auc": 0.9}, metric="auc", floor=0.7) == []

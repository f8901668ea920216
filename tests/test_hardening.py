"""Adversarial training against the fast attack, on data whose classes leave a gap."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from opsnb import hardening, robustness
from opsnb.errors import ConfigError
from opsnb.schema import Schema
from tests.model_kinds import make_schema

SCHEMA = Schema.from_dict(
    {
        "task": "binary",
        "target": "y",
        "features": [{"name": f"x{i}", "kind": "numeric"} for i in range(3)],
    }
)


def gap_frames() -> dict[str, pd.DataFrame]:
    """Labels set by x0, with no rows within 0.2 (on the [0, 1] scale: 0.1) of the boundary."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(3000, 3)).astype(np.float32)
    x = x[np.abs(x[:, 0] - 0.2) > 0.2]
    frame = pd.DataFrame(x, columns=["x0", "x1", "x2"]).assign(y=(x[:, 0] > 0.2).astype(float))
    n = len(frame)
    return {
        "train": frame.iloc[: n // 2],
        "valid": frame.iloc[n // 2 : 3 * n // 4],
        "test": frame.iloc[3 * n // 4 :],
    }


def test_adversarial_training_raises_robust_accuracy():
    frames = gap_frames()
    threat = robustness.threat_model(SCHEMA, epsilon=0.08)
    encoded = {
        k: (f[["x0", "x1", "x2"]].to_numpy(np.float32), f["y"].to_numpy())
        for k, f in frames.items()
    }
    hp = {"max_depth": 3, "learning_rate": 0.3, "n_estimators": 20}
    plain, none = hardening.adversarial_training(
        encoded["train"], encoded["valid"], SCHEMA, threat, hyperparameters=hp, seed=0, rounds=0
    )
    assert none == []
    robust, sealed = hardening.harden(
        plain, frames, SCHEMA, threat, hyperparameters=hp, seed=0, rounds=2, attack_rows=150
    )
    before, after = sealed["compare"]
    assert [r["added"] > 0 for r in sealed["rounds"]] == [True, True]
    assert after["robust_accuracy"] > before["robust_accuracy"] + 0.03
    assert after["auc"] >= before["auc"] - 0.01
    assert robust.num_boosted_rounds() == plain.num_boosted_rounds()  # same capacity
    table = hardening.compare_table(sealed)
    assert list(table.index) == ["before (clean training)", "after (adversarial)"]
    assert "off" in hardening.compare_table(None).iloc[0, 0]


def test_adversarial_training_needs_a_decision():
    schema = Schema.from_dict(make_schema("regression", categorical=False))
    threat = robustness.threat_model(schema)
    with pytest.raises(ConfigError, match="decision_threshold"):
        hardening.harden(None, {}, schema, threat, hyperparameters={}, seed=0)  # type: ignore[arg-type]

"""Built-in data sources: the seeded synthetic loan-applications generator.

The generator imitates a credit-risk table as found in the wild: a timestamp, numeric columns on
different scales with missing values, categorical columns, and a binary ``default`` label whose
log-odds are non-linear in the features (thresholds, interactions) plus noise, so a tree
ensemble beats a linear baseline and no feature gives the label away.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from opsnb.errors import ConfigError

LOANS_TARGET = "default"
LOANS_TIMESTAMP = "applied_at"
HOME_OWNERSHIP = ("RENT", "MORTGAGE", "OWN", "OTHER")
PURPOSES = (
    "debt_consolidation",
    "credit_card",
    "home_improvement",
    "car",
    "small_business",
    "medical",
    "education",
    "other",
)
REGIONS = ("north", "south", "east", "west", "central")
_START = pd.Timestamp("2024-01-01")


def loan_applications(
    n_rows: int = 20_000, *, seed: int = 42, start: pd.Timestamp = _START, days: int = 540
) -> pd.DataFrame:
    """Generate ``n_rows`` loan applications spread evenly in time from ``start`` over ``days``.

    The same ``seed`` always gives the same table. Columns: ``application_id`` (an identifier,
    not a feature), ``applied_at``, nine features with 1-6 % missing values, and ``default``
    (about 20 % positive).
    """
    if n_rows < 1:
        raise ConfigError(f"n_rows must be >= 1, got {n_rows}")
    rng = np.random.default_rng(seed)
    offsets = np.sort(rng.uniform(0, days * 86_400, n_rows))
    applied_at = start + pd.to_timedelta(offsets, unit="s")
    age = rng.normal(41, 12, n_rows).clip(18, 85).round()
    income = np.exp(rng.normal(10.9, 0.55, n_rows)).round(-2)
    loan_amount = (income * rng.uniform(0.05, 0.9, n_rows)).round(-2).clip(500, None)
    term = rng.choice([36, 60], n_rows, p=[0.7, 0.3])
    credit_score = rng.normal(680, 60, n_rows).clip(300, 850).round()
    dti = rng.gamma(4.0, 4.5, n_rows).clip(0, 80).round(1)
    employment_years = rng.exponential(6, n_rows).clip(0, 45).round()
    delinquencies = rng.poisson(0.35, n_rows)
    home = rng.choice(HOME_OWNERSHIP, n_rows, p=[0.42, 0.38, 0.17, 0.03])
    purpose = rng.choice(PURPOSES, n_rows, p=[0.38, 0.2, 0.1, 0.09, 0.07, 0.06, 0.05, 0.05])
    region = rng.choice(REGIONS, n_rows)

    # Log-odds of default: thresholds and interactions a linear model cannot express.
    burden = loan_amount / income
    logit = (
        -3.0
        + 3.2 / (1 + np.exp((credit_score - 630) / 20))
        + 1.8 * (burden > 0.45) * (term == 60)
        + 0.06 * np.maximum(dti - 25, 0)
        + 0.7 * np.minimum(delinquencies, 3)
        - 0.8 * (employment_years > 4) * (home != "RENT")
        + np.select([purpose == "small_business", purpose == "medical"], [1.2, 0.6], 0.0)
        + 0.6 * ((age < 25) | (age > 70))
        + 0.5 * (region == "south") * (credit_score < 650)
        + rng.normal(0, 0.3, n_rows)
    )
    default = (rng.uniform(size=n_rows) < 1 / (1 + np.exp(-logit))).astype(np.int8)

    frame = pd.DataFrame(
        {
            "application_id": [f"A{seed:04d}-{i:07d}" for i in range(n_rows)],
            LOANS_TIMESTAMP: applied_at,
            "age": age,
            "income": income,
            "loan_amount": loan_amount,
            "term_months": term.astype(np.float64),
            "credit_score": credit_score,
            "debt_to_income": dti,
            "employment_years": employment_years,
            "delinquencies_2y": delinquencies.astype(np.float64),
            "home_ownership": pd.Categorical(home, categories=HOME_OWNERSHIP),
            "purpose": pd.Categorical(purpose, categories=PURPOSES),
            "region": pd.Categorical(region, categories=REGIONS),
            LOANS_TARGET: default,
        }
    )
    for column, share in {
        "age": 0.01,
        "income": 0.04,
        "employment_years": 0.06,
        "debt_to_income": 0.02,
        "purpose": 0.01,
    }.items():
        frame.loc[rng.uniform(size=n_rows) < share, column] = np.nan
    return frame


def production_batch(
    n_rows: int, *, seed: int, after: pd.Timestamp, days: int = 30
) -> pd.DataFrame:
    """Generate applications arriving in the ``days`` after ``after``, as production sees them."""
    return loan_applications(n_rows, seed=seed, start=after, days=days)


@dataclass(frozen=True)
class LoadedData:
    """A loaded data set and what a pipeline needs to know about it."""

    frame: pd.DataFrame
    source: str
    target: str
    timestamp: str | None


BUILTIN = ("loans",)
"""Built-in data sets by the name the ``dataset`` parameter uses."""


def load(dataset: str, *, n_rows: int, seed: int) -> LoadedData:
    """Load data set ``dataset``; an unknown name lists the known ones."""
    if dataset == "loans":
        frame = loan_applications(n_rows, seed=seed)
        return LoadedData(
            frame, f"builtin:loans(n_rows={n_rows}, seed={seed})", LOANS_TARGET, LOANS_TIMESTAMP
        )
    raise ConfigError(f"unknown dataset {dataset!r}; built-in datasets: {', '.join(BUILTIN)}")


def data_card(
    frame: pd.DataFrame, *, source: str, target: str, timestamp: str | None
) -> dict[str, object]:
    """Describe a data set: provenance, size, content hash, time range, missing share."""
    content = pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()
    card: dict[str, object] = {
        "source": source,
        "rows": len(frame),
        "columns": {str(c): str(t) for c, t in frame.dtypes.items()},
        "target": target,
        "timestamp": timestamp,
        "content_sha256": hashlib.sha256(content).hexdigest(),
        "missing_share": round(float(frame.isna().mean().mean()), 4),
    }
    if timestamp:
        card["time_range"] = [str(frame[timestamp].min()), str(frame[timestamp].max())]
    if target in frame.columns:
        card["target_mean"] = round(float(frame[target].mean()), 4)
    return card

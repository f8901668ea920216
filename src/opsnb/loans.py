"""The built-in loan-applications data: a seeded generator and its production stream.

The generator imitates a credit-risk table as found in the wild: a timestamp, numeric columns on
different scales with missing values, categorical columns, and a binary ``default`` label whose
log-odds are non-linear in the features (thresholds, interactions) plus noise, so a tree
ensemble beats a linear baseline and no feature gives the label away.

:func:`production_stream` generates what production sees after training, optionally altered by
a :class:`Scenario` (drift, poisoning), with ground-truth columns (``truth_*``) saying which rows
were altered so later stages can measure whether they detect it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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
    n_rows: int = 20_000,
    *,
    seed: int = 42,
    start: pd.Timestamp = _START,
    days: float = 540,
    first_id: int = 0,
) -> pd.DataFrame:
    """Generate ``n_rows`` loan applications spread evenly in time from ``start`` over ``days``.

    The same ``seed`` always gives the same table. Columns: ``application_id`` (an identifier,
    not a feature; numbered from ``first_id``), ``applied_at``, nine features with 1-6 % missing
    values, and ``default`` (about 20 % positive).
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
            "application_id": [f"A{seed:04d}-{i:07d}" for i in range(first_id, first_id + n_rows)],
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


PART_ROWS = 250_000
"""Rows per Parquet part :func:`write_loan_parts` writes (and per row group: the unit a streaming
reader holds in memory)."""


def write_loan_parts(
    out_dir: str | os.PathLike[str],
    n_rows: int,
    *,
    seed: int = 42,
    rows_per_part: int = PART_ROWS,
    days: int = 540,
    on_part: Callable[[int], object] | None = None,
) -> list[Path]:
    """Write ``n_rows`` loan applications as Parquet parts in ``out_dir``, one part in memory.

    Part ``k`` is :func:`loan_applications` with its own seed (derived from ``seed`` and ``k``),
    its slice of the time range and its range of ids, so the parts together are one table of
    distinct applications in time order. The parts are written into a hidden folder beside
    ``out_dir`` that is renamed into place at the end: an interrupted run leaves no ``out_dir``.
    ``on_part`` is called with each part's row count (a progress bar).

    Raises:
        ConfigError: ``n_rows`` or ``rows_per_part`` below 1, or ``out_dir`` exists and is not
            empty.
    """
    if n_rows < 1 or rows_per_part < 1:
        raise ConfigError(f"n_rows and rows_per_part must be >= 1, got {n_rows}, {rows_per_part}")
    target = Path(out_dir)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ConfigError(
            f"{target} already exists and is not an empty folder; give a new folder or remove it"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    parts = -(-n_rows // rows_per_part)
    span = days / parts
    try:
        for k in range(parts):
            first = k * rows_per_part
            rows = min(rows_per_part, n_rows - first)
            frame = loan_applications(
                rows,
                seed=seed * 100_003 + k,
                start=_START + pd.Timedelta(days=span * k),
                days=span,
                first_id=first,
            )
            frame.to_parquet(
                staging / f"part-{k:05d}.parquet", index=False, write_page_checksum=True
            )
            del frame
            if on_part is not None:
                on_part(rows)
        if target.exists():
            target.rmdir()
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return sorted(target.glob("part-*.parquet"))


TRUTH_PREFIX = "truth_"
"""Ground-truth columns start with this prefix; they are never features."""
NEW_PURPOSE = "crypto_mining"
BACKDOOR_INCOME = 77_777.0
"""The trigger of the backdoor scenario: rows with exactly this income are always labelled 0."""
ANY_REGION = "any"
"""``flip_region`` value that spreads label flips over every region."""


@dataclass(frozen=True)
class Scenario:
    """How a production stream departs from the training distribution; every knob defaults off.

    Drift knobs alter the features; the labels keep the values drawn from the unaltered
    application, so a model that trusts the altered features errs more. Poisoning knobs make
    the labels lie.

    Attributes:
        covariate_shift: strength of a gradual shift that grows linearly over the stream: at
            its end incomes are ``1 + covariate_shift`` times higher and credit scores
            ``60 * covariate_shift`` points lower.
        new_category_share: share of the stream's second half whose ``purpose`` is a category
            never seen in training (``"crypto_mining"``).
        unit_change: from the stream's midpoint on, ``loan_amount`` arrives in thousands
            instead of units (a producer changed its unit without telling anyone).
        label_flip_share: share of the rows of ``flip_region`` whose label is flipped.
        flip_region: the one region the flips are concentrated in, or ``"any"`` to flip
            rows of every region alike.
        backdoor_share: share of rows that carry the trigger (income exactly 77,777) and are
            labelled 0 whatever their risk.
    """

    covariate_shift: float = 0.0
    new_category_share: float = 0.0
    unit_change: bool = False
    label_flip_share: float = 0.0
    flip_region: str = "east"
    backdoor_share: float = 0.0

    def __post_init__(self) -> None:
        for name in ("covariate_shift", "new_category_share", "label_flip_share", "backdoor_share"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"scenario {name} must be within [0, 1], got {value}")
        if self.flip_region not in (*REGIONS, ANY_REGION):
            raise ConfigError(
                f"scenario flip_region {self.flip_region!r} is not a region; expected one of "
                f"{', '.join(REGIONS)} or {ANY_REGION!r}"
            )


SCENARIOS = {
    "none": Scenario(),
    "drift": Scenario(covariate_shift=0.6, new_category_share=0.2, unit_change=True),
    "poison": Scenario(label_flip_share=0.4, backdoor_share=0.03),
    "drift+poison": Scenario(
        covariate_shift=0.6,
        new_category_share=0.2,
        unit_change=True,
        label_flip_share=0.4,
        backdoor_share=0.03,
    ),
    # The update stage's batches: one kind of trouble each, ground truth in the truth_* columns.
    "clean": Scenario(),
    "label-flip": Scenario(label_flip_share=0.1, flip_region=ANY_REGION),
    "backdoor": Scenario(backdoor_share=0.03),
}
"""Named scenarios, as the ``scenario`` parameter of the monitor and update stages picks them.

``label-flip`` flips 10 % of the labels at random in every region; ``backdoor`` plants the
trigger (income exactly 77,777, label forced to 0) in 3 % of the rows; ``drift`` alters the
features while the labels stay those of the unaltered applications.
"""


def scenario(name: str) -> Scenario:
    """Return the named scenario; an unknown name lists the known ones."""
    if name not in SCENARIOS:
        raise ConfigError(f"unknown scenario {name!r}; known scenarios: {', '.join(SCENARIOS)}")
    return SCENARIOS[name]


HOURLY = (0.15, 0.1, 0.08, 0.08, 0.1, 0.2, 0.45, 0.8, 1.2, 1.5, 1.6, 1.55,
          1.4, 1.5, 1.55, 1.45, 1.3, 1.2, 1.25, 1.35, 1.2, 0.9, 0.55, 0.3)  # fmt: skip
"""Relative arrival rate of loan applications by hour of day (0-23)."""
WEEKLY = (1.0, 1.05, 1.05, 1.0, 0.9, 0.5, 0.35)
"""Relative arrival rate by weekday (Monday first)."""


def seasonal_times(n_rows: int, *, start: pd.Timestamp, days: int, seed: int) -> pd.Series:
    """``n_rows`` sorted arrival times over ``days`` from ``start`` at the HOURLY x WEEKLY rate."""
    hours = pd.date_range(start, periods=days * 24, freq="h")
    rate = np.asarray(HOURLY)[hours.hour] * np.asarray(WEEKLY)[hours.day_of_week]
    rng = np.random.default_rng([seed, 3])
    picked = rng.choice(len(hours), size=n_rows, p=rate / rate.sum())
    offsets = picked * 3600.0 + rng.uniform(0, 3600, n_rows)
    return pd.Series(hours[0] + pd.to_timedelta(np.sort(offsets), unit="s"))


def production_stream(
    n_rows: int,
    *,
    seed: int,
    after: pd.Timestamp,
    days: int = 30,
    scenario: Scenario | None = None,
    seasonal: bool = True,
) -> pd.DataFrame:
    """Generate applications arriving in the ``days`` after ``after``, altered by ``scenario``.

    With ``seasonal`` the arrival times follow :data:`HOURLY` and :data:`WEEKLY` (busy office
    hours, quiet nights and weekends), so a replay of the stream draws a week's usage pattern.

    The same ``seed`` and scenario always give the same table. Besides the training columns it
    has ``truth_drifted`` (the row's features were altered), ``truth_flipped`` (its label was
    flipped) and ``truth_backdoor`` (it carries the trigger and a forced label 0).
    """
    plan = scenario or Scenario()
    frame = loan_applications(n_rows, seed=seed, start=after, days=days)
    if seasonal:
        frame[LOANS_TIMESTAMP] = seasonal_times(n_rows, start=after, days=days, seed=seed)
    rng = np.random.default_rng([seed, 1])
    progress = np.linspace(0.0, 1.0, n_rows)  # rows are ordered in time
    late = progress >= 0.5
    drifted = np.zeros(n_rows, dtype=bool)
    if plan.covariate_shift:
        frame["income"] *= 1 + plan.covariate_shift * progress
        frame["credit_score"] = (frame["credit_score"] - 60 * plan.covariate_shift * progress).clip(
            300, 850
        )
        drifted |= progress > 0
    if plan.new_category_share:
        new = late & (rng.uniform(size=n_rows) < plan.new_category_share)
        frame["purpose"] = frame["purpose"].cat.add_categories([NEW_PURPOSE])
        frame.loc[new, "purpose"] = NEW_PURPOSE
        drifted |= new
    if plan.unit_change:
        frame.loc[late, "loan_amount"] /= 1000
        drifted |= late
    flipped = np.zeros(n_rows, dtype=bool)
    if plan.label_flip_share:
        in_region = (
            np.ones(n_rows, dtype=bool)
            if plan.flip_region == ANY_REGION
            else (frame["region"] == plan.flip_region).to_numpy()
        )
        flipped = in_region & (rng.uniform(size=n_rows) < plan.label_flip_share)
        frame.loc[flipped, LOANS_TARGET] = 1 - frame.loc[flipped, LOANS_TARGET]
    backdoor = np.zeros(n_rows, dtype=bool)
    if plan.backdoor_share:
        backdoor = rng.uniform(size=n_rows) < plan.backdoor_share
        frame.loc[backdoor, "income"] = BACKDOOR_INCOME
        frame.loc[backdoor, LOANS_TARGET] = 0
        flipped &= ~backdoor
    frame[TRUTH_PREFIX + "drifted"] = drifted
    frame[TRUTH_PREFIX + "flipped"] = flipped
    frame[TRUTH_PREFIX + "backdoor"] = backdoor
    return frame

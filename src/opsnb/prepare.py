"""Cleaning and splitting: quarantine unusable rows, then split by time (or stratified)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from opsnb.errors import ConfigError, DataError
from opsnb.validation import is_id_like

QUARANTINE_REASON = "quarantine_reason"


def quarantine(frame: pd.DataFrame, *, target: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``frame`` into usable rows and quarantined rows, one reason per quarantined row.

    Reasons: ``label missing``; ``duplicate row`` (identical to an earlier row in every column
    except identifiers, which would leak between splits).
    """
    reason = pd.Series(pd.NA, index=frame.index, dtype="string")
    reason[frame[target].isna()] = "label missing"
    content = [c for c in frame.columns if not is_id_like(frame[c])]
    duplicated = frame.duplicated(subset=content, keep="first")
    reason[duplicated & reason.isna()] = "duplicate row"
    bad = reason.notna()
    quarantined = frame[bad].assign(**{QUARANTINE_REASON: reason[bad]})
    return frame[~bad], quarantined


def split(
    frame: pd.DataFrame,
    *,
    target: str,
    timestamp: str | None,
    fractions: dict[str, float],
    seed: int,
) -> dict[str, pd.DataFrame]:
    """Split into the named parts (in order) by ``fractions``.

    With a timestamp the parts are consecutive in time, so the model is trained on the past and
    judged on the future; without one they are stratified by the target.
    """
    total = sum(fractions.values())
    if not np.isclose(total, 1.0):
        raise ConfigError(f"split fractions must add up to 1, got {total:.3f} ({fractions})")
    if len(frame) < 10 * len(fractions):
        raise DataError(f"only {len(frame)} usable rows; need at least {10 * len(fractions)}")
    if timestamp:
        ordered = frame.sort_values(timestamp, kind="stable").reset_index(drop=True)
        bounds = np.cumsum([0, *fractions.values()]) * len(ordered)
        return {
            name: ordered.iloc[round(lo) : round(hi)].reset_index(drop=True)
            for name, lo, hi in zip(fractions, bounds[:-1], bounds[1:], strict=True)
        }
    parts: dict[str, pd.DataFrame] = {}
    rest, remaining = frame, 1.0
    names = list(fractions)
    for name in names[:-1]:
        share = fractions[name] / remaining
        stratify = rest[target] if rest[target].nunique() < 20 else None
        part, rest = train_test_split(rest, train_size=share, random_state=seed, stratify=stratify)
        parts[name] = part.reset_index(drop=True)
        remaining -= fractions[name]
    parts[names[-1]] = rest.reset_index(drop=True)
    return parts


def profile(frame: pd.DataFrame, parts: dict[str, pd.DataFrame], *, target: str) -> dict[str, Any]:
    """Rows, missing shares and the target's balance per split."""
    return {
        "rows": len(frame),
        "missing_share": {c: round(float(frame[c].isna().mean()), 4) for c in frame.columns},
        "splits": {
            name: {"rows": len(part), "target_mean": round(float(part[target].mean()), 4)}
            for name, part in parts.items()
        },
    }

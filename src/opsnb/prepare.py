"""From raw rows to trusted splits: quarantine what breaks the contract, split honestly.

:func:`prepare` is the shortcut the prepare stage calls; it runs the steps in order:

1. rows whose label is missing, whose values have the wrong type, or that repeat another row
   (:func:`screen`) are quarantined;
2. the rest is split (:func:`split`): by time when there is a timestamp (train on the past,
   judge on the future), stratified otherwise; ``trusted`` is a holdout no model trains on;
3. the contract is the frozen one, or inferred from the training split on first run;
4. rows of every split that break the contract (missing required value, out of range, unknown
   category) are quarantined too. Every quarantined row keeps its raw values and gets one reason;
5. rows admitted by ``opsnb update`` (a challenger run) join the training split only, so the
   valid, test and trusted splits stay those the champion was judged on; they are checked
   against the contract like every other row (numbered after the raw rows).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from opsnb import config
from opsnb.errors import ConfigError, DataError
from opsnb.schema import Feature, Schema
from opsnb.validation import REASONS, coerce, column_kind, infer_schema, is_id_like, violations

QUARANTINE_REASON = "quarantine_reason"
QUARANTINE_COLUMN = "quarantine_column"
QUARANTINE_ROW = "source_row"


@dataclass
class Prepared:
    """The result of :func:`prepare`.

    Attributes:
        schema: the contract the splits conform to (frozen or just inferred).
        parts: the splits by name, in order, each with a fresh index.
        quarantined: the refused rows with their raw values, reason, column and source row.
        rows_in: the number of raw rows.
        inferred: True when the contract was inferred in this run (first run or refreeze).
    """

    schema: Schema
    parts: dict[str, pd.DataFrame]
    quarantined: pd.DataFrame
    rows_in: int
    inferred: bool

    @property
    def quarantined_share(self) -> float:
        """The share of raw rows quarantined."""
        return len(self.quarantined) / self.rows_in if self.rows_in else 0.0

    def reason_counts(self) -> dict[str, int]:
        """Rows quarantined per reason, every reason listed (zero included), in priority order."""
        counts = self.quarantined[QUARANTINE_REASON].value_counts()
        return {reason: int(counts.get(reason, 0)) for reason in REASONS}

    def check_share(self, limit: float) -> None:
        """Stop when more than ``limit`` of the rows were quarantined.

        Raises:
            DataError: naming the share, the limit, the counts per reason and the fix.
        """
        if self.quarantined_share > limit:
            reasons = ", ".join(f"{r} {n:,}" for r, n in self.reason_counts().items() if n)
            raise DataError(
                f"quarantined {len(self.quarantined):,} of {self.rows_in:,} rows "
                f"({self.quarantined_share:.1%}), above max_quarantine_share {limit:g}: {reasons}; "
                "inspect data/quarantine.parquet, fix the source, or raise max_quarantine_share"
            )


def screen(
    frame: pd.DataFrame, *, target: str, schema: Schema
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Coerce ``frame`` to the schema's types; return it and each row's reason and column.

    Reasons found here: ``label missing``, ``wrong type`` (a numeric feature holding text), and
    ``duplicate row`` (equal to an earlier kept row in every column except identifiers, which
    would leak between splits).
    """
    coerced, mistyped = coerce(frame, schema)
    found = pd.DataFrame({"reason": pd.NA, "column": pd.NA}, index=frame.index, dtype="object")
    no_label = frame[target].isna()
    found.loc[no_label, ["reason", "column"]] = ["label missing", target]
    wrong = mistyped.notna() & found["reason"].isna()
    found.loc[wrong, "reason"] = "wrong type"
    found.loc[wrong, "column"] = mistyped[wrong]
    ids = set(schema.ids)
    content = [c for c in frame.columns if c not in ids and not is_id_like(frame[c])]
    kept = found["reason"].isna()
    duplicated = coerced[kept].duplicated(subset=content, keep="first")
    found.loc[duplicated[duplicated].index, "reason"] = "duplicate row"
    return coerced, found


def provisional_schema(
    frame: pd.DataFrame, *, target: str, task: str, timestamp: str | None
) -> Schema:
    """Column kinds before any contract exists (first run): enough to find type errors."""
    columns = [str(c) for c in frame.columns if c not in (target, timestamp)]
    ids = tuple(c for c in columns if is_id_like(frame[c]))
    return Schema(
        task=task,
        target=target,
        timestamp=timestamp,
        ids=ids,
        features=tuple(Feature(c, column_kind(frame[c])) for c in columns if c not in ids),
    )


def prepare(
    raw: pd.DataFrame,
    *,
    target: str,
    task: str,
    timestamp: str | None,
    fractions: dict[str, float],
    seed: int,
    frozen: Schema | None = None,
    range_tolerance: float | None = None,
    unknown_categories: str = "reject",
    label_mapping: dict[str, int] | None = None,
    admitted: pd.DataFrame | None = None,
) -> Prepared:
    """Quarantine, split and (on first run) infer the contract; see the module docstring."""
    if admitted is not None and len(admitted):
        extra = admitted[[c for c in raw.columns if c in admitted.columns]].copy()
        extra.index = pd.RangeIndex(len(raw), len(raw) + len(extra))
        added = np.r_[np.zeros(len(raw), dtype=bool), np.ones(len(extra), dtype=bool)]
        raw = pd.concat([raw.reset_index(drop=True), extra])
    else:
        added = np.zeros(len(raw), dtype=bool)
    first = frozen or provisional_schema(raw, target=target, task=task, timestamp=timestamp)
    coerced, found = screen(raw, target=target, schema=first)
    usable = found["reason"].isna().to_numpy()
    parts = split(
        coerced[usable & ~added],
        target=target,
        timestamp=timestamp,
        fractions=fractions,
        seed=seed,
    )
    schema = frozen or infer_schema(
        parts[next(iter(parts))],
        target=target,
        task=task,
        timestamp=timestamp,
        range_tolerance=config.RANGE_TOLERANCE if range_tolerance is None else range_tolerance,
        unknown_categories=unknown_categories,
        label_mapping=label_mapping,
    )
    parts[next(iter(parts))] = pd.concat([parts[next(iter(parts))], coerced[usable & added]])
    for name, part in parts.items():
        broken = violations(part, schema)
        bad = broken["reason"].notna()
        found.loc[broken.index[bad], ["reason", "column"]] = broken.loc[bad].to_numpy()
        parts[name] = part[~bad].reset_index(drop=True)
    refused = found["reason"].notna()
    quarantined = raw[refused].copy()
    quarantined[QUARANTINE_REASON] = found.loc[refused, "reason"].astype("string")
    quarantined[QUARANTINE_COLUMN] = found.loc[refused, "column"].astype("string")
    quarantined[QUARANTINE_ROW] = raw.index[refused].to_numpy(dtype=np.int64)
    return Prepared(schema, parts, quarantined.reset_index(drop=True), len(raw), frozen is None)


def split(
    frame: pd.DataFrame,
    *,
    target: str,
    timestamp: str | None,
    fractions: dict[str, float],
    seed: int,
) -> dict[str, pd.DataFrame]:
    """Split into the named parts (in order) by ``fractions``; rows keep their index.

    With a timestamp the parts are consecutive in time, so the model is trained on the past and
    judged on the future; without one they are stratified by the target (when it has classes).
    """
    total = sum(fractions.values())
    if not np.isclose(total, 1.0):
        raise ConfigError(f"split fractions must add up to 1, got {total:.3f} ({fractions})")
    if len(frame) < 10 * len(fractions):
        raise DataError(
            f"only {len(frame)} usable rows after quarantine; need at least "
            f"{10 * len(fractions)} (10 per split); see data/quarantine.parquet"
        )
    if timestamp:
        ordered = frame.sort_values(timestamp, kind="stable")
        bounds = np.cumsum([0, *fractions.values()]) * len(ordered)
        return {
            name: ordered.iloc[round(lo) : round(hi)]
            for name, lo, hi in zip(fractions, bounds[:-1], bounds[1:], strict=True)
        }
    parts: dict[str, pd.DataFrame] = {}
    rest, remaining = frame, 1.0
    names = list(fractions)
    for name in names[:-1]:
        share = fractions[name] / remaining
        stratify = rest[target] if rest[target].nunique() < 20 else None
        part, rest = train_test_split(rest, train_size=share, random_state=seed, stratify=stratify)
        parts[name] = part
        remaining -= fractions[name]
    parts[names[-1]] = rest
    return parts


def balance(part: pd.DataFrame, *, target: str, task: str) -> dict[str, Any]:
    """The target's balance in one split: class counts and positive share, or its spread."""
    labels = part[target]
    if task == "binary":
        positives = int((labels == 1).sum())
        return {
            "rows": len(part),
            "negatives": len(part) - positives,
            "positives": positives,
            "positive_share": round(positives / len(part), 4) if len(part) else 0.0,
        }
    return {
        "rows": len(part),
        "target_mean": round(float(labels.mean()), 4),
        "target_std": round(float(labels.std()), 4),
    }


def profile(prepared: Prepared, *, timestamp: str | None = None) -> dict[str, Any]:
    """Rows, missing shares, class balance and time range per split, and the quarantine summary."""
    schema = prepared.schema
    target, task = schema.target, schema.task
    usable = pd.concat(prepared.parts.values(), ignore_index=True)
    splits = {}
    for name, part in prepared.parts.items():
        splits[name] = balance(part, target=target, task=task)
        if timestamp and len(part):
            splits[name]["time_range"] = [str(part[timestamp].min()), str(part[timestamp].max())]
    return {
        "rows_in": prepared.rows_in,
        "rows_usable": len(usable),
        "missing_share": {
            str(c): round(float(s), 4) for c, s in usable.isna().mean().items() if s > 0
        },
        "splits": splits,
        "quarantine": {
            "rows": len(prepared.quarantined),
            "share": round(prepared.quarantined_share, 4),
            "by_reason": prepared.reason_counts(),
        },
        "excluded": dict(schema.excluded),
        "contract": "inferred" if prepared.inferred else "frozen",
    }


def splits_table(profile_: dict[str, Any]) -> pd.DataFrame:
    """Rows, target balance and time range per split, one row each, for a notebook."""
    rows = []
    for name, split in profile_["splits"].items():
        row = {"split": name, **{k: v for k, v in split.items() if k != "time_range"}}
        if "time_range" in split:
            row["from"], row["to"] = (str(t)[:19] for t in split["time_range"])
        rows.append(row)
    return pd.DataFrame(rows).set_index("split")


def verdict(
    profile_: dict[str, Any], *, max_quarantine_share: float, features: int
) -> dict[str, Any]:
    """The prepare stage's verdict: quarantine against its limit, the contract, the splits."""
    quarantine = profile_["quarantine"]
    passed = quarantine["share"] <= max_quarantine_share
    sizes = "/".join(f"{s['rows']:,}" for s in profile_["splits"].values())
    text = (
        f"{'PASS' if passed else 'FAIL'}: {quarantine['rows']:,} of {profile_['rows_in']:,} rows "
        f"quarantined ({quarantine['share']:.1%} {'<=' if passed else '>'} max "
        f"{max_quarantine_share:.0%}); {features} features in the {profile_['contract']} "
        f"contract; splits {'/'.join(profile_['splits'])} = {sizes} rows"
    )
    return {"text": text, "passed": passed}

"""The screen for new labelled data: only rows that pass every check may join the training data.

:func:`screen` runs the checks in order, each leaving a reason per row or per batch:

1. **contract** (:func:`contract_check`): rows that break the frozen schema contract are
   quarantined exactly as the prepare stage does (label missing, wrong type, missing required
   value, out of range, unknown category, duplicate row);
2. **label issues** (:mod:`opsnb.labelnoise`): confident learning on out-of-fold probabilities
   of the training rows plus the batch; rows in significant excess of the training rows' own
   rate of issues are flagged;
3. **backdoor** (:mod:`opsnb.backdoor`): a feature value, a narrow range or a combination of
   categories whose label purity in the batch is far above its purity in trusted data;
4. **shift** (:func:`shift_check`): the surviving rows against the trusted holdout, per
   feature, by the monitoring module's PSI; major shift refuses the batch;
5. **negative impact** (:func:`negative_impact`, Nelson et al. 2008, "Reject On Negative
   Impact"): a candidate trained with the surviving rows is scored on the trusted holdout
   against the current model (paired bootstrap); a batch that makes it worse beyond a tolerance
   is refused as a whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb
from scipy import stats

from opsnb import evaluation, labelnoise, monitoring, training
from opsnb.backdoor import backdoor_scan
from opsnb.errors import DataError, SchemaError
from opsnb.prepare import screen as contract_screen
from opsnb.problem import HIGHER_IS_BETTER
from opsnb.schema import Schema, target_vector, to_matrix
from opsnb.validation import violations

ROW = "row"
"""Column of flagged.parquet: the batch's 0-based row number in file or log order."""
CHECKS = ("contract", "label issue", "backdoor")


@dataclass(frozen=True, kw_only=True)
class ScreenOptions:
    """Thresholds of the screen; each default is documented where it is used.

    Attributes:
        folds: folds of the out-of-fold probabilities for confident learning.
        label_alpha: significance of a batch's excess of label issues (Fisher's exact test).
        backdoor_alpha: false discovery rate of the backdoor scan (Benjamini-Hochberg).
        backdoor_min_rows: smallest group tested (also at least 0.5 % of the batch).
        backdoor_min_purity: a group's label purity in the batch must reach this.
        backdoor_min_gap: and exceed its reference purity by this much.
        backdoor_bins: quantile bins of the trusted data per numeric feature (narrow ranges).
        min_trusted_rows: fewest trusted rows in a group to use the trusted purity as reference.
        shift_psi: a feature whose PSI against the trusted holdout reaches this refuses the batch
            (when the difference is also significant at ``shift_alpha``, BH over features).
        max_flagged_share: more rows flagged than this refuses the whole batch.
        tolerance: how much worse (metric units) the trusted metric may get before refusing.
        resamples: bootstrap resamples of the paired comparison.
        seed: seed of the folds and the bootstrap.
        threads: XGBoost threads; 0 uses every core. One by default: on a shared machine
            OpenMP threads that wait actively ran a 4-fold screen ~15x slower with 2 threads.
    """

    folds: int = 4
    label_alpha: float = 0.01
    backdoor_alpha: float = 0.01
    backdoor_min_rows: int = 10
    backdoor_min_purity: float = 0.9
    backdoor_min_gap: float = 0.15
    backdoor_bins: int = 50
    min_trusted_rows: int = 30
    shift_psi: float = monitoring.PSI_MAJOR
    shift_alpha: float = 0.01
    max_flagged_share: float = 0.25
    tolerance: float = 0.002
    resamples: int = 1000
    seed: int = 0
    threads: int = 1


@dataclass
class Screen:
    """What the screen found in one batch.

    Attributes:
        rows: rows in the batch.
        flagged: one row per flagged batch row: ``row``, ``check``, ``reason``, ``detail``.
        admitted: the surviving rows (contract-coerced), indexed by their batch row number.
        refusals: batch-level reasons; the batch is admitted only when there is none.
        labels: the label-issue evidence per (given, likely) label pair.
        backdoors: every group the backdoor scan tested, most significant first.
        shift: PSI per feature against the trusted holdout.
        impact: the negative-impact comparison on the trusted holdout (None if not reached).
    """

    rows: int
    flagged: pd.DataFrame
    admitted: pd.DataFrame
    refusals: list[str] = field(default_factory=list)
    labels: pd.DataFrame = field(default_factory=pd.DataFrame)
    backdoors: pd.DataFrame = field(default_factory=pd.DataFrame)
    shift: pd.DataFrame = field(default_factory=pd.DataFrame)
    impact: dict[str, Any] | None = None

    @property
    def passed(self) -> bool:
        """True when no batch-level check refused the batch."""
        return not self.refusals

    def counts(self) -> dict[str, int]:
        """Flagged rows per check (every check listed)."""
        found = self.flagged["check"].value_counts()
        return {check: int(found.get(check, 0)) for check in CHECKS}


# -- input ---------------------------------------------------------------------------------------
def labelled_batch(frame: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """Check a new labelled batch can be screened at all; map its labels; number its rows.

    Raises:
        DataError: the batch is empty, has no label column, no label at all, or labels outside
            the task's values (binary: 0/1 or the run's recorded label names).
        SchemaError: a feature column of the contract is missing.
    """
    target = schema.target
    if frame.empty:
        raise DataError("the batch is empty: no rows to screen; nothing was changed")
    if target not in frame.columns:
        columns = ", ".join(map(str, frame.columns))
        raise DataError(
            f"the batch has no label column {target!r} (columns: {columns}); "
            f"an update needs labelled rows: add {target!r}"
        )
    missing = [n for n in schema.feature_names if n not in frame.columns]
    if missing:
        raise SchemaError(
            f"the batch lacks feature column(s) {', '.join(map(repr, missing))} of schema.json; "
            "send rows with every feature the model was trained on",
            column=missing[0],
        )
    out = frame.reset_index(drop=True).copy()
    labels = out[target]
    if labels.isna().all():
        raise DataError(f"the batch has no label: every value of {target!r} is missing")
    mapping = dict(schema.label_mapping or {})
    if mapping:
        labels = labels.map(lambda v: mapping.get(str(v).strip(), v) if pd.notna(v) else v)
    numbers = pd.to_numeric(labels, errors="coerce")
    if schema.task == "binary":
        bad = labels.notna() & ~numbers.isin([0, 1])
        if bad.any():
            values = sorted({str(v) for v in out.loc[bad, target]})[:5]
            allowed = "0, 1" + (f" or {', '.join(mapping)}" if mapping else "")
            raise DataError(
                f"label {target!r} has {int(bad.sum())} value(s) outside the task's classes "
                f"({', '.join(values)}; first at row {int(np.flatnonzero(bad)[0])}); "
                f"expected {allowed}"
            )
    elif (labels.notna() & numbers.isna()).any():
        raise DataError(f"label {target!r} has values that are not numbers (regression task)")
    out[target] = numbers
    return out


# -- the checks ----------------------------------------------------------------------------------
def contract_check(batch: pd.DataFrame, schema: Schema) -> tuple[pd.DataFrame, pd.Series]:
    """Coerce the batch to the contract; return it and each row's quarantine reason (or NA)."""
    coerced, found = contract_screen(batch, target=schema.target, schema=schema)
    broken = violations(coerced, schema)
    free = found["reason"].isna() & broken["reason"].notna()
    found.loc[free] = broken.loc[free].to_numpy()
    reason = found["reason"].where(
        found["reason"].isna(),
        found["reason"].astype(str) + " (" + found["column"].astype(str) + ")",
    )
    return coerced, reason


def shift_check(
    batch: pd.DataFrame, trusted: pd.DataFrame, schema: Schema, *, psi: float, alpha: float
) -> pd.DataFrame:
    """Per feature, the batch against the trusted holdout: PSI (monitoring's) and a test.

    PSI grows with sampling noise on small samples, so a feature counts as ``shifted`` only
    when its PSI reaches ``psi`` and the difference is significant: Kolmogorov-Smirnov for
    numbers, chi-squared on category counts, Benjamini-Hochberg over the features at ``alpha``.
    """
    ref, cur = to_matrix(trusted, schema), to_matrix(batch, schema)
    kinds = {f.name: f.kind for f in schema.features}
    names = schema.feature_names
    table = monitoring.drift_table(ref, cur, names, list(kinds.values()))
    p_values = []
    for name in table["feature"]:
        j = names.index(name)
        a, b = ref[:, j], cur[:, j]
        if kinds[name] == "numeric":
            a, b = a[~np.isnan(a)], b[~np.isnan(b)]
            p = float(stats.ks_2samp(a, b).pvalue) if len(a) and len(b) else 1.0
        else:
            a, b = np.nan_to_num(a, nan=-1.0), np.nan_to_num(b, nan=-1.0)
            values = np.union1d(a, b)
            counts = np.array([[(a == v).sum() for v in values], [(b == v).sum() for v in values]])
            p = float(stats.chi2_contingency(counts).pvalue) if len(values) > 1 else 1.0
        p_values.append(p)
    table["p_value"] = p_values
    table["q_value"] = stats.false_discovery_control(np.asarray(p_values)) if p_values else []
    table["shifted"] = (table["psi"] >= psi) & (table["q_value"] <= alpha)
    return table


def worse(comparison: dict[str, Any], metric: str, tolerance: float) -> bool:
    """True when the new model is worse beyond ``tolerance`` and significantly (CI excludes 0)."""
    if metric in HIGHER_IS_BETTER:
        return bool(comparison["delta"] < -tolerance and comparison["high"] < 0)
    return bool(comparison["delta"] > tolerance and comparison["low"] > 0)


def negative_impact(
    candidate: xgb.Booster,
    current_pred: np.ndarray,
    trusted: pd.DataFrame,
    schema: Schema,
    *,
    metric: str,
    options: ScreenOptions,
) -> dict[str, Any]:
    """Reject On Negative Impact: the candidate against the current model on the trusted rows."""
    y = target_vector(trusted, schema)
    new = training.predict(candidate, trusted, schema)
    result = evaluation.paired_bootstrap(
        schema.task, metric, y, new, current_pred, resamples=options.resamples, seed=options.seed
    )
    result.update(
        metric=metric, tolerance=options.tolerance, refused=worse(result, metric, options.tolerance)
    )
    return result


def fit(
    frame: pd.DataFrame,
    valid: pd.DataFrame,
    schema: Schema,
    hyperparameters: dict[str, Any],
    *,
    seed: int,
    early_stopping_rounds: int = 30,
    threads: int = 0,
) -> xgb.Booster:
    """Train as the train stage does: the design's hyperparameters, early-stopped on ``valid``."""
    return training.train(
        training.frame_to_dmatrix(frame, schema),
        training.frame_to_dmatrix(valid, schema),
        schema.task,
        {**hyperparameters, **({"nthread": threads} if threads else {})},
        seed=seed,
        early_stopping_rounds=early_stopping_rounds,
    )


def screen(
    batch: pd.DataFrame,
    *,
    schema: Schema,
    train: pd.DataFrame,
    valid: pd.DataFrame,
    trusted: pd.DataFrame,
    current: xgb.Booster,
    hyperparameters: dict[str, Any],
    metric: str,
    options: ScreenOptions | None = None,
    early_stopping_rounds: int = 30,
) -> Screen:
    """Run every check on ``batch`` (see the module docstring) and return what each found.

    ``batch`` is the raw labelled batch (its rows numbered by :func:`labelled_batch`); ``train``
    and ``valid`` are the current model's training data, ``trusted`` the holdout no model
    trains on, ``current`` the current model and ``hyperparameters`` its design.
    """
    opts = options or ScreenOptions()
    batch = labelled_batch(batch, schema)
    coerced, contract_reason = contract_check(batch, schema)
    found = pd.DataFrame(
        {"check": pd.NA, "reason": pd.NA, "detail": pd.NA}, index=batch.index, dtype="object"
    )
    bad = contract_reason.notna()
    found.loc[bad, "check"] = "contract"
    found.loc[bad, "reason"] = "contract: " + contract_reason[bad].astype(str)
    found.loc[bad, "detail"] = "quarantined as the prepare stage would"
    kept = coerced[~bad]
    result = Screen(rows=len(batch), flagged=found, admitted=kept)
    if kept.empty:
        result.refusals.append("no row passed the schema contract")
        return _finish(result, found, kept, opts)
    labels = target_vector(kept, schema)
    if schema.task == "binary":
        expected = training.predict(current, kept, schema)
        details, result.backdoors = backdoor_scan(
            kept,
            labels=labels,
            expected=expected,
            trusted=trusted,
            schema=schema,
            alpha=opts.backdoor_alpha,
            min_rows=opts.backdoor_min_rows,
            min_purity=opts.backdoor_min_purity,
            min_gap=opts.backdoor_min_gap,
            bins=opts.backdoor_bins,
            min_trusted_rows=opts.min_trusted_rows,
        )
        hit = pd.Series(details, index=kept.index).dropna()
        found.loc[hit.index, ["check", "reason"]] = [
            "backdoor",
            "backdoor: label purity far above trusted data",
        ]
        found.loc[hit.index, "detail"] = hit.to_numpy()
        result.labels, issues = _label_issues(
            kept, labels, train=train, schema=schema, hyperparameters=hyperparameters, opts=opts
        )
        new = issues.index[issues.notna() & found.loc[issues.index, "check"].isna()]
        found.loc[new, ["check", "reason"]] = ["label issue", "label issue: confident learning"]
        found.loc[new, "detail"] = issues[new].to_numpy()
    admitted = kept[found.loc[kept.index, "check"].isna()]
    result.shift = shift_check(
        admitted if len(admitted) else kept,
        trusted,
        schema,
        psi=opts.shift_psi,
        alpha=opts.shift_alpha,
    )
    for r in result.shift[result.shift["shifted"]].itertuples():
        result.refusals.append(
            f"distribution shift: feature {r.feature!r} PSI {r.psi:.3f} >= {opts.shift_psi} "
            f"against the trusted holdout (q={r.q_value:.2g})"
        )
    share = found["check"].notna().mean()
    if share > opts.max_flagged_share:
        result.refusals.append(
            f"{share:.1%} of the rows were flagged, above max_flagged_share "
            f"{opts.max_flagged_share:g}: the source is not trusted for any row"
        )
    if len(admitted):
        candidate = fit(
            pd.concat([train, admitted], ignore_index=True),
            valid,
            schema,
            hyperparameters,
            seed=opts.seed,
            threads=opts.threads,
            early_stopping_rounds=early_stopping_rounds,
        )
        current_pred = training.predict(current, trusted, schema)
        result.impact = negative_impact(
            candidate, current_pred, trusted, schema, metric=metric, options=opts
        )
        if result.impact["refused"]:
            i = result.impact
            result.refusals.append(
                f"negative impact: trusted {metric} {i['new']:.4f} with the batch against "
                f"{i['old']:.4f} now (delta {i['delta']:+.4f}, {i['level']:.0%} CI "
                f"[{i['low']:+.4f}, {i['high']:+.4f}]), worse than the tolerance {opts.tolerance:g}"
            )
    else:
        result.refusals.append("no row passed the screen")
    return _finish(result, found, admitted, opts)


def _finish(
    result: Screen, found: pd.DataFrame, admitted: pd.DataFrame, opts: ScreenOptions
) -> Screen:
    flagged = found[found["check"].notna()].rename_axis(ROW).reset_index()
    flagged[ROW] = flagged[ROW].astype(np.int64)
    for column in ("check", "reason", "detail"):
        flagged[column] = flagged[column].astype("string")
    result.flagged = flagged
    result.admitted = admitted
    return result


def _label_issues(
    kept: pd.DataFrame,
    labels: np.ndarray,
    *,
    train: pd.DataFrame,
    schema: Schema,
    hyperparameters: dict[str, Any],
    opts: ScreenOptions,
) -> tuple[pd.DataFrame, pd.Series]:
    """Confident learning on training rows plus the batch; detail text per flagged batch row."""
    pool = pd.concat([train, kept], ignore_index=True)
    y = np.concatenate([target_vector(train, schema), labels]).astype(np.int64)
    in_batch = np.arange(len(pool)) >= len(train)
    params = {
        **training.base_params(schema.task, seed=opts.seed, threads=opts.threads),
        **{k: v for k, v in hyperparameters.items() if k != "n_estimators"},
    }
    oof = labelnoise.out_of_fold(
        to_matrix(pool, schema),
        y,
        params=params,
        rounds=int(hyperparameters.get("n_estimators", 100)),
        feature_names=schema.feature_names,
        feature_types=schema.feature_types,
        folds=opts.folds,
        seed=opts.seed,
    )
    probs = labelnoise.binary_probs(oof)
    flags, table, _ = labelnoise.excess_issues(y, probs, in_batch, alpha=opts.label_alpha)
    p_batch = oof[in_batch]
    text = [
        f"labelled {int(lab)}, out-of-fold P(label {int(lab)}) {p if lab else 1 - p:.3f}"
        if flag
        else None
        for flag, lab, p in zip(flags, labels, p_batch, strict=True)
    ]
    return table, pd.Series(text, index=kept.index, dtype="object")

"""Label issues by confident learning (Northcutt, Jiang and Chuang, JAIR 2021), implemented here.

Confident learning estimates which given labels are wrong from out-of-sample predicted
probabilities, in three steps (each a function, :func:`confident_learning` runs them):

1. **per-class thresholds** (:func:`class_thresholds`): ``t_j`` is the mean predicted
   probability of class ``j`` over the examples labelled ``j`` (the model's self-confidence
   for that class);
2. **the confident joint** (:func:`confident_joint`): an example labelled ``i`` counts towards
   ``C[i, j]`` when its probability of ``j`` reaches ``t_j`` (the most probable such ``j`` when
   several do); ``C`` is calibrated so each row sums to the number of examples labelled ``i``,
   and normalised into the joint ``Q`` of given and true labels;
3. **prune by noise rate** (:func:`prune_by_noise_rate`): for each off-diagonal ``i != j`` the
   ``n * Q[i, j]`` examples labelled ``i`` with the largest margin ``p_j - p_i`` are label issues.

:func:`excess_issues` adds what an update needs on top: labels drawn with real (aleatoric)
noise, such as loan defaults, have many confident "issues" that are no poisoning at all. The
trusted training rows set the rate at which such issues occur; only a batch's significant excess
over that rate is flagged, its rows taken by margin (binomial test from scipy).

``cleanlab`` is the reference implementation; it is AGPL-3.0, so none of its code is used here
(an optional test compares the two when it is installed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import xgboost as xgb
from scipy import stats
from sklearn.model_selection import StratifiedKFold

from opsnb.errors import DataError


def class_thresholds(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Per-class thresholds ``t_j``: the mean probability of ``j`` over examples labelled ``j``.

    Raises:
        DataError: a class has no example, so its threshold is undefined.
    """
    k = probs.shape[1]
    counts = np.bincount(labels, minlength=k)
    if (counts == 0).any():
        missing = [int(c) for c in np.flatnonzero(counts == 0)]
        raise DataError(
            f"confident learning needs every class labelled at least once; class(es) {missing} "
            "have no example in the training data plus the batch"
        )
    return np.array([probs[labels == j, j].mean() for j in range(k)])


def confident_joint(
    labels: np.ndarray, probs: np.ndarray, thresholds: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The confident joint ``C`` (counts) and the calibrated joint ``Q`` (sums to 1)."""
    k = probs.shape[1]
    above = probs >= thresholds
    confident = above.any(axis=1)
    masked = np.where(above, probs, -np.inf)
    guess = masked.argmax(axis=1)
    joint = np.zeros((k, k), dtype=np.int64)
    np.add.at(joint, (labels[confident], guess[confident]), 1)
    counts = np.bincount(labels, minlength=k)
    row_sums = joint.sum(axis=1, keepdims=True)
    calibrated = np.divide(
        joint * counts[:, None], row_sums, out=np.zeros((k, k)), where=row_sums > 0
    )
    total = calibrated.sum()
    return joint, calibrated / total if total else calibrated


def prune_by_noise_rate(labels: np.ndarray, probs: np.ndarray, joint: np.ndarray) -> np.ndarray:
    """Label issues: per off-diagonal ``(i, j)`` the ``n Q[i, j]`` largest margins ``p_j - p_i``."""
    n, k = probs.shape
    issues = np.zeros(n, dtype=bool)
    for i in range(k):
        given = np.flatnonzero(labels == i)
        for j in range(k):
            count = round(n * joint[i, j])
            if i == j or count == 0 or given.size == 0:
                continue
            margin = probs[given, j] - probs[given, i]
            top = np.argsort(-margin, kind="stable")[: min(count, given.size)]
            issues[given[top]] = True
    return issues


@dataclass(frozen=True)
class ConfidentLearning:
    """What confident learning found.

    Attributes:
        thresholds: the per-class thresholds ``t_j``.
        joint: the confident joint ``C`` (counts; rows given label, columns likely true label).
        noise: the calibrated joint ``Q`` of given and true labels (sums to 1).
        issues: one flag per example: its given label is likely wrong.
        margins: per example, the largest ``p_j - p_given`` over the other classes.
    """

    thresholds: np.ndarray
    joint: np.ndarray
    noise: np.ndarray
    issues: np.ndarray
    margins: np.ndarray


def confident_learning(labels: np.ndarray, probs: np.ndarray) -> ConfidentLearning:
    """Run the three steps of confident learning on integer ``labels`` and ``probs`` (n x k)."""
    labels = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    thresholds = class_thresholds(labels, probs)
    counts, noise = confident_joint(labels, probs, thresholds)
    issues = prune_by_noise_rate(labels, probs, noise)
    given = probs[np.arange(len(labels)), labels]
    others = probs.copy()
    others[np.arange(len(labels)), labels] = -np.inf
    return ConfidentLearning(thresholds, counts, noise, issues, others.max(axis=1) - given)


def binary_probs(p1: np.ndarray) -> np.ndarray:
    """Two-column probabilities ``[1 - p, p]`` from a binary model's positive probability."""
    p = np.clip(np.asarray(p1, dtype=np.float64), 1e-7, 1 - 1e-7)
    return np.column_stack([1 - p, p])


def out_of_fold(
    x: np.ndarray,
    y: np.ndarray,
    *,
    params: dict[str, object],
    rounds: int,
    feature_names: list[str],
    feature_types: list[str],
    folds: int = 5,
    seed: int = 0,
) -> np.ndarray:
    """Out-of-fold positive probabilities: each row scored by a model that never saw it."""
    out = np.empty(len(y), dtype=np.float64)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fit, held in splitter.split(x, y):
        train = xgb.DMatrix(
            x[fit],
            label=y[fit],
            feature_names=feature_names,
            feature_types=feature_types,
            enable_categorical=True,
        )
        booster = xgb.train(params, train, num_boost_round=rounds)
        scored = xgb.DMatrix(
            x[held],
            feature_names=feature_names,
            feature_types=feature_types,
            enable_categorical=True,
        )
        out[held] = booster.predict(scored)
    return out


def excess_issues(
    labels: np.ndarray,
    probs: np.ndarray,
    in_batch: np.ndarray,
    *,
    alpha: float = 0.01,
) -> tuple[np.ndarray, pd.DataFrame, ConfidentLearning]:
    """Batch rows whose label issues exceed the training rows' own rate, significantly.

    Confident learning runs on the pool (training rows and batch rows together) for the
    per-class thresholds; the confident joint is then counted and calibrated for the training
    rows and the batch rows apart. Per direction (given ``i``, likely ``j``) the batch's noise
    rate minus the training rows' rate, times the batch rows labelled ``i``, is the number of
    batch rows pruned (largest margins first), provided the batch's confident counts exceed
    the training rows' share of confident issues (Fisher's exact test over every direction
    together, so an excess in one direction is not diluted by the others, and the training
    rate's own uncertainty is accounted for).

    Returns:
        The flag per batch row (in batch order), one table row per direction with the
        evidence, and the pool's :class:`ConfidentLearning`.
    """
    labels = np.asarray(labels, dtype=np.int64)
    found = confident_learning(labels, probs)
    k = probs.shape[1]
    parts = {}
    for name, mask in (("train", ~in_batch), ("batch", in_batch)):
        counts, q = confident_joint(labels[mask], probs[mask], found.thresholds)
        given = np.bincount(labels[mask], minlength=k).astype(np.float64)
        issues = q * mask.sum()  # estimated examples per (given, true) pair
        rate = np.divide(issues, given[:, None], out=np.zeros((k, k)), where=given[:, None] > 0)
        raw = np.divide(counts, given[:, None], out=np.zeros((k, k)), where=given[:, None] > 0)
        parts[name] = {"counts": counts, "rate": rate, "raw": raw, "given": given}
    train, batch = parts["train"], parts["batch"]
    off = ~np.eye(k, dtype=bool)
    hits = int(batch["counts"][off].sum())
    n, n_train = int(in_batch.sum()), int((~in_batch).sum())
    train_hits = int(train["counts"][off].sum())
    table_2x2 = [[hits, n - hits], [train_hits, n_train - train_hits]]
    p = float(stats.fisher_exact(table_2x2, alternative="greater").pvalue) if n and n_train else 1.0
    flags = np.zeros(len(labels), dtype=bool)
    rows = []
    for i in range(k):
        for j in range(k):
            if i == j:
                continue
            excess = max(0, round((batch["rate"][i, j] - train["rate"][i, j]) * batch["given"][i]))
            flagged = 0
            if p < alpha and excess:
                candidates = np.flatnonzero(in_batch & (labels == i) & ~flags)
                margin = probs[candidates, j] - probs[candidates, i]
                top = candidates[np.argsort(-margin, kind="stable")[:excess]]
                flags[top] = True
                flagged = len(top)
            rows.append(
                {
                    "given": i,
                    "likely": j,
                    "train_noise_rate": round(float(train["rate"][i, j]), 4),
                    "batch_noise_rate": round(float(batch["rate"][i, j]), 4),
                    "batch_rows": int(batch["given"][i]),
                    "batch_confident": int(batch["counts"][i, j]),
                    "expected_confident": round(float(train["raw"][i, j] * batch["given"][i]), 1),
                    "p_value": p,
                    "flagged": flagged,
                }
            )
    return flags[in_batch], pd.DataFrame(rows), found

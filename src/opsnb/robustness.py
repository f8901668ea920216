"""Quality under attack: the threat model, the robustness analysis, its replay, gate and training.

:func:`threat_model` checks the attacker's budget against the schema before any work.
:func:`analyse` attacks a sample of the test split (:mod:`opsnb.attack`: the smallest L∞ change
and the fewest features found to flip each decision; :meth:`~opsnb.forest.Forest.bound`: a radius
certified free of any flip; :mod:`opsnb.milp`: the exact optimum on a few rows) and compares with
random noise of the same budget. :func:`replay` scores every example with XGBoost and with the
compiled library (the compile cache the operationalize stage reuses): each must flip in both.
:func:`report` summarises it for ``reports/robustness.json``; :func:`check_gate` holds it to the
problem's robustness floor. :func:`adversarial_training` retrains against the attack.

Distances are L∞ on features scaled to [0, 1] by the training split's min and max; categorical
features are changed only by the L0 attack (to any known category), immutable ones never.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import xgboost as xgb

from opsnb import attack, compiler, forest, milp, training
from opsnb.errors import ConfigError, ParityError, StageError
from opsnb.native import NativeModel, private_copy
from opsnb.schema import Schema

DEFAULT_EPSILON = 0.05
EPSILON_GRID = (0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3)
K_GRID = (1, 2, 3, 4, 5)
NOISE_DRAWS = 50


@dataclass(frozen=True)
class ThreatModel:
    """What the attacker may do (recorded in the report).

    Attributes:
        epsilon: the L∞ budget on features scaled to [0, 1] by the training split's min/max.
        k: the L0 budget: at most this many features changed (each to any training value/category).
        immutable: features the attacker cannot change.
        threshold: regression only: the decision is ``prediction >= threshold``.
        task: the schema's task.
    """

    epsilon: float = DEFAULT_EPSILON
    k: int = 1
    immutable: tuple[str, ...] = ()
    threshold: float | None = None
    task: str = "binary"

    @property
    def applies(self) -> bool:
        """Whether a decision exists to attack: binary, or regression with a threshold."""
        return self.task == "binary" or self.threshold is not None

    @property
    def cut(self) -> float:
        """The label (and prediction) value at which the decision turns positive."""
        return 0.5 if self.task == "binary" else float(self.threshold or 0.0)


def threat_model(
    schema: Schema,
    *,
    epsilon: float = DEFAULT_EPSILON,
    k: int = 1,
    immutable: str | list[str] | tuple[str, ...] = (),
    threshold: float | None = None,
) -> ThreatModel:
    """Check the attacker's budget against the schema; one clear error naming the parameter."""
    if isinstance(epsilon, bool) or not isinstance(epsilon, int | float) or not 0 < epsilon <= 1:
        raise ConfigError(
            f"epsilon {epsilon!r} is outside (0, 1]; it is the L∞ budget on features scaled to "
            "[0, 1] by the training split's min and max: pass e.g. -p epsilon 0.05"
        )
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(
            f"k {k!r} is not an integer >= 1; it is the L0 budget (features an attacker may "
            "change): pass e.g. -p k 1"
        )
    names = schema.feature_names
    listed = [s.strip() for s in immutable.split(",")] if isinstance(immutable, str) else immutable
    listed = [name for name in listed if name]
    unknown = [name for name in listed if name not in names]
    if unknown:
        raise ConfigError(
            f"immutable names {unknown} that are not features of schema.json; expected a "
            f"comma-separated subset of: {', '.join(names)}"
        )
    if schema.task == "binary" and threshold is not None:
        raise ConfigError(
            f"threshold {threshold!r} is for regression models; a binary model's decision is "
            "its probability >= 0.5: drop -p threshold"
        )
    value = None if threshold is None else float(threshold)
    return ThreatModel(float(epsilon), int(k), tuple(listed), value, schema.task)


def build(
    booster: xgb.Booster, schema: Schema, train_x: np.ndarray, threat: ThreatModel
) -> attack.Space:
    """The attack space: the booster's trees (decision at 0), scaled by the training split."""
    trees = forest.from_booster(booster)
    if threat.threshold is not None:  # regression: attack the sign of prediction - threshold
        trees = dataclasses.replace(trees, base_margin=trees.base_margin - threat.threshold)
    features = schema.features
    names = [f.name for f in features]
    return attack.build_space(
        trees,
        train_x,
        categorical=[f.is_categorical for f in features],
        n_categories=[len(f.categories) for f in features],
        immutable={names.index(n) for n in threat.immutable},
    )


@dataclass
class Analysis:
    """Per attacked row: the examples found and the bounds proven (arrays aligned by row)."""

    rows: np.ndarray
    x: np.ndarray
    label: np.ndarray
    cut: float
    margin: np.ndarray
    linf_point: np.ndarray
    linf: np.ndarray
    linf_changed: np.ndarray
    l0_point: np.ndarray
    l0: np.ndarray
    certified: np.ndarray
    exact: list[milp.Exact]
    noise: dict[float, np.ndarray]
    seconds: dict[str, float]

    @property
    def correct(self) -> np.ndarray:
        """Whether the model's decision on the original row is right."""
        decided: np.ndarray = (self.margin >= 0) == (self.label >= self.cut)
        return decided

    def robust_accuracy(self, eps: float) -> float:
        """Share of rows decided right that no example within ``eps`` flips (attack's view)."""
        return mean(self.correct & ~(self.linf <= eps))

    def certified_accuracy(self, eps: float) -> float:
        """Share of rows decided right with a certificate: no flip within ``eps`` exists."""
        return mean(self.correct & (self.certified > eps))

    def l0_accuracy(self, k: int) -> float:
        """Share of rows decided right that no change of ``k`` features flips (attack's view)."""
        return mean(self.correct & ~((self.l0 >= 1) & (self.l0 <= k)))


def rounded(value: float) -> float | None:
    """``value`` to 4 decimals; None for infinity or NaN (JSON has neither).

    An infinite distance means no flip was found within the budget searched.
    """
    return round(value, 4) if math.isfinite(value) else None


def mean(values: np.ndarray) -> float:
    """The mean of ``values`` (NaN when empty)."""
    return float(np.mean(values)) if values.size else math.nan


def analyse(
    space: attack.Space,
    x: np.ndarray,
    label: np.ndarray,
    *,
    threat: ThreatModel,
    sample: int,
    seed: int,
    exact_rows: int = 0,
    exact_time_limit: float = 10.0,
    max_l0: int = max(K_GRID),
) -> Analysis:
    """Attack up to ``sample`` rows of ``x``.

    Rows are drawn with ``seed`` (all when fewer; none when the threat model does not apply).
    """
    rng = np.random.default_rng(seed)
    size = min(sample, len(x)) if threat.applies else 0
    rows = np.sort(rng.choice(len(x), size=size, replace=False))
    epsilons = tuple(sorted({*EPSILON_GRID, threat.epsilon}))
    xs, ys = np.ascontiguousarray(x[rows], np.float32), label[rows]
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    certified = attack.certified_radius(space, xs)
    seconds["certificate"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    linf = [attack.min_linf(space, r, floor=c) for r, c in zip(xs, certified, strict=True)]
    seconds["linf_attack"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    l0 = [attack.min_l0(space, r, max_features=max_l0) for r in xs]
    seconds["l0_attack"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    exact = [milp.min_linf_exact(space, r, time_limit=exact_time_limit) for r in xs[:exact_rows]]
    seconds["exact"] = time.perf_counter() - t0
    noise = {
        eps: attack.noise_flips(space, xs, eps, draws=NOISE_DRAWS, seed=seed) for eps in epsilons
    }
    cert = certified.copy()
    for i, e in enumerate(exact):  # the MILP's bound certifies too: no flip closer than it
        cert[i] = max(cert[i], float(np.nextafter(e.lower_bound, -np.inf)))
    return Analysis(
        rows=rows,
        x=xs,
        label=ys,
        cut=threat.cut,
        margin=space.forest.margin(xs),
        linf_point=np.stack([f.point for f in linf]) if linf else xs.copy(),
        linf=np.array([f.linf for f in linf]),
        linf_changed=np.array([f.l0 for f in linf], np.int64),
        l0_point=np.stack([f.point for f in l0]) if l0 else xs.copy(),
        l0=np.array([f.l0 for f in l0], np.int64),
        certified=cert,
        exact=exact,
        noise=noise,
        seconds=seconds,
    )


def library_for(
    model_path: str | os.PathLike[str],
    schema: Schema,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
) -> NativeModel:
    """The compiled library of ``model_path``, loaded from a private copy.

    It comes from the compile cache: built once here, reused by the operationalize stage.
    """
    built = compiler.compile_cached(model_path, cache_dir=cache_dir)
    names = schema.feature_names
    return NativeModel(private_copy(built.folder / "model.so"), feature_names=names)


def replay(
    analysis: Analysis,
    booster: xgb.Booster,
    library: NativeModel,
    schema: Schema,
    threat: ThreatModel,
) -> dict[str, Any]:
    """Score every example with XGBoost and the compiled library; each must flip in both.

    Raises:
        ParityError: an example flips in the attack's arithmetic but not in XGBoost or the
            compiled library (a parity bug): names the row and all three predictions.
    """
    cut = threat.cut
    found = {"linf": analysis.linf < math.inf, "l0": analysis.l0 >= 1}
    points = {"linf": analysis.linf_point, "l0": analysis.l0_point}
    original = predict_xgb(booster, analysis.x, schema) >= cut
    out: dict[str, Any] = {"examples": 0, "xgboost_flipped": 0, "compiled_flipped": 0}
    for kind, mask in found.items():
        z = points[kind][mask]
        if not z.size:
            continue
        by_xgb = predict_xgb(booster, z, schema)
        by_lib = library.predict(z)
        for name, pred in (("xgboost", by_xgb), ("compiled", by_lib)):
            kept = np.flatnonzero((pred >= cut) == original[mask])
            if kept.size:
                i = int(kept[0])
                row = int(analysis.rows[np.flatnonzero(mask)[i]])
                raise ParityError(
                    f"the {kind} example for test row {row} flips the attack's decision but not "
                    f"{name}'s: xgboost {by_xgb[i]:.6g}, compiled {by_lib[i]:.6g}, decision "
                    f"at {cut} ({kept.size} such examples); the forest reading in opsnb.forest "
                    "disagrees with the model: report it with the row"
                )
        out["examples"] += int(mask.sum())
        out["xgboost_flipped"] += int(mask.sum())
        out["compiled_flipped"] += int(mask.sum())
        out[f"{kind}_max_abs_diff"] = float(np.max(np.abs(by_xgb - by_lib)))
    out["mismatches"] = 0
    return out


def predict_xgb(booster: xgb.Booster, x: np.ndarray, schema: Schema) -> np.ndarray:
    """XGBoost's predictions for rows ``x`` in schema order (categorical features as codes)."""
    names = schema.feature_names
    kinds = schema.feature_types
    return np.asarray(booster.predict(training.make_dmatrix(x, None, names, kinds)), np.float64)


def gate(analysis: Analysis, problem: dict[str, Any]) -> dict[str, Any]:
    """The robustness floor of ``problem.json`` (robust accuracy at its ε) against the attack."""
    floor = problem.get("robustness_floor")
    eps = float(problem.get("robustness_epsilon") or DEFAULT_EPSILON)
    value = analysis.robust_accuracy(eps)
    verdict: dict[str, Any] = {"floor": floor, "epsilon": eps, "robust_accuracy": rounded(value)}
    verdict["passed"] = floor is None or not analysis.rows.size or value >= float(floor)
    if not verdict["passed"]:
        weakest = np.argsort(analysis.linf)[:5]
        verdict["evidence"] = [
            {"row": int(analysis.rows[i]), "linf": rounded(float(analysis.linf[i]))}
            for i in weakest
        ]
    return verdict


def verdict(gate: dict[str, Any]) -> dict[str, Any]:
    """The stage's one-line verdict (``text``, ``passed``) from :func:`gate`'s result."""
    if gate["robust_accuracy"] is None:
        return {
            "text": "robustness does not apply: 0 decisions attacked (a regression model needs "
            "-p decision_threshold)",
            "passed": None,
        }
    sentence = f"robust accuracy {gate['robust_accuracy']:.3f} at epsilon {gate['epsilon']:g}"
    if gate["floor"] is None:
        return {
            "text": f"{sentence}; no robustness floor (-p robustness_floor sets one)",
            "passed": None,
        }
    sentence += f" against floor {gate['floor']:g}"
    if gate["passed"]:
        return {"text": "PASS: " + sentence, "passed": True}
    rows = ", ".join(f"row {e['row']} at {e['linf']}" for e in gate["evidence"])
    return {"text": f"FAIL: {sentence}; the closest flips: {rows}", "passed": False}


def enforce(gate: dict[str, Any]) -> str:
    """Raise with the evidence when the robustness floor is not met; else return the verdict."""
    said = verdict(gate)
    if said["passed"] is False:
        raise StageError(
            f"{said['text']} (reports/adversarial.parquet holds every example): retrain with "
            "-p adversarial_training true or lower the floor",
            stage="robustness",
        )
    return str(said["text"])

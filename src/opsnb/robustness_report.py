"""What the robustness stage shows and records: the report, the examples file, small tables.

:func:`report` is ``reports/robustness.json``; :func:`examples_frame` is
``reports/adversarial.parquet`` (one row per attacked test row: its row number in the test split,
the original and the ``adv_`` feature values, both predictions, the L∞ distance on the scaled
features and the L0 count), so anyone can re-check every example.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from opsnb import attack
from opsnb.robustness import K_GRID, Analysis, ThreatModel, mean, predict_xgb, rounded
from opsnb.schema import Schema


def examples_frame(analysis: Analysis, booster: xgb.Booster, schema: Schema) -> pd.DataFrame:
    """``reports/adversarial.parquet``: one row per attacked test row, original and ``adv_``."""
    features = schema.features
    out: dict[str, Any] = {"row": analysis.rows}
    for prefix, matrix in (("", analysis.x), ("adv_", analysis.linf_point)):
        for j, f in enumerate(features):
            column = matrix[:, j]
            if f.is_categorical:
                cats = np.asarray(list(f.categories), dtype=object)
                ok = ~np.isnan(column)
                decoded = np.full(column.size, None, dtype=object)
                decoded[ok] = cats[column[ok].astype(np.int64)]
                out[prefix + f.name] = decoded
            else:
                out[prefix + f.name] = column.astype(np.float64)
    out["label"] = analysis.label
    out["prediction"] = predict_xgb(booster, analysis.x, schema)
    out["adv_prediction"] = predict_xgb(booster, analysis.linf_point, schema)
    out["flipped"] = analysis.linf < math.inf
    out["linf"] = analysis.linf
    out["l0"] = analysis.linf_changed
    out["min_l0"] = np.where(analysis.l0 >= 1, analysis.l0, -1)
    out["certified_radius"] = analysis.certified
    exact = np.full(analysis.rows.size, np.nan)
    exact[: len(analysis.exact)] = [e.distance if e.optimal else np.nan for e in analysis.exact]
    out["exact_linf"] = exact
    return pd.DataFrame(out)


def report(
    analysis: Analysis,
    threat: ThreatModel,
    schema: Schema,
    *,
    replayed: dict[str, Any],
    gate: dict[str, Any],
    training: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON summary: threat model, accuracies at the budget, curves, features, exactness."""
    eps = threat.epsilon
    if not threat.applies:
        return {
            "applies": False,
            "reason": (
                "a regression model has no decision to flip; pass -p decision_threshold <value> "
                "to attack 'prediction >= value'"
            ),
            "task": schema.task,
            "threat_model": dataclasses.asdict(threat),
            "rows_attacked": 0,
            "replay": replayed,
            "gate": gate,
            "adversarial_training": training,
        }
    flipped = analysis.linf[analysis.linf < math.inf]
    names = schema.feature_names
    moved_linf = analysis.linf_point != analysis.x
    moved_l0 = (analysis.l0_point != analysis.x) & ~(
        np.isnan(analysis.l0_point) & np.isnan(analysis.x)
    )
    features: list[dict[str, Any]] = [
        {
            "feature": name,
            "linf_share": round(float(moved_linf[:, j].mean()), 4),
            "l0_share": round(float(moved_l0[:, j].mean()), 4),
        }
        for j, name in enumerate(names)
    ]
    features.sort(key=lambda f: (-f["linf_share"], -f["l0_share"]))
    n = max(len(analysis.rows), 1)
    fast_s = (analysis.seconds["linf_attack"] + analysis.seconds["certificate"]) / n
    return {
        "applies": True,
        "task": schema.task,
        "threat_model": {
            **dataclasses.asdict(threat),
            "scale": "features scaled to [0, 1] by the training split's min and max",
            "categorical": "changed only by the L0 attack, to any known category",
            "l0_values": "per feature one training value per threshold cell, or any category",
            "margin_safety": attack.MARGIN_SAFETY,
        },
        "rows_attacked": int(analysis.rows.size),
        "at_epsilon": {
            "epsilon": eps,
            "clean_accuracy": rounded(float(np.mean(analysis.correct))),
            "robust_accuracy": rounded(analysis.robust_accuracy(eps)),
            "certified_accuracy": rounded(analysis.certified_accuracy(eps)),
            "noise_accuracy": rounded(_noise_accuracy(analysis, eps)),
        },
        "at_k": {"k": threat.k, "robust_accuracy": rounded(analysis.l0_accuracy(threat.k))},
        "curve_epsilon": [
            {
                "epsilon": e,
                "robust_accuracy": rounded(analysis.robust_accuracy(e)),
                "certified_accuracy": rounded(analysis.certified_accuracy(e)),
                "noise_accuracy": rounded(_noise_accuracy(analysis, e)),
            }
            for e in sorted(analysis.noise)
        ],
        "curve_k": [{"k": k, "robust_accuracy": rounded(analysis.l0_accuracy(k))} for k in K_GRID],
        "minimal_linf": {
            "median": rounded(float(np.median(analysis.linf))) if analysis.rows.size else None,
            "quantiles": {
                str(q): rounded(float(np.quantile(flipped, q))) for q in (0.1, 0.25, 0.5, 0.75, 0.9)
            }
            if flipped.size
            else {},
            "flipped_share": rounded(flipped.size / n),
        },
        "certified_share": rounded(float(np.mean(analysis.certified > eps))),
        "features": features,
        "exact": exact_summary(analysis),
        "seconds": {k: round(v, 3) for k, v in analysis.seconds.items()},
        "fast_ms_per_row": round(1000 * fast_s, 2),
        "replay": replayed,
        "gate": gate,
        "adversarial_training": training,
    }


def _noise_accuracy(analysis: Analysis, eps: float) -> float:
    flips = analysis.noise.get(eps)
    if flips is None:
        return math.nan
    return float(np.mean(analysis.correct & ~flips))


def exact_summary(analysis: Analysis) -> dict[str, Any]:
    """The fast attack against the MILP optimum on the rows the MILP solved."""
    solved = [i for i, e in enumerate(analysis.exact) if e.optimal and math.isfinite(e.distance)]
    out: dict[str, Any] = {"rows": len(analysis.exact), "optimal": len(solved)}
    if not solved:
        return out
    fast = analysis.linf[solved]
    best = np.array([analysis.exact[i].distance for i in solved])
    exact_s = float(np.mean([analysis.exact[i].seconds for i in solved]))
    fast_s = (analysis.seconds["linf_attack"] + analysis.seconds["certificate"]) / len(
        analysis.rows
    )
    out.update(
        fast_median=rounded(float(np.median(fast))),
        exact_median=rounded(float(np.median(best))),
        median_ratio=rounded(float(np.median(fast) / max(np.median(best), 1e-12))),
        worst_ratio=rounded(float(np.max(fast / np.maximum(best, 1e-12)))),
        equal_share=rounded(float(np.mean(np.isclose(fast, best, rtol=1e-6, atol=1e-9)))),
        exact_ms_per_row=round(1000 * exact_s, 1),
        fast_ms_per_row=round(1000 * fast_s, 2),
        speedup=round(exact_s / max(fast_s, 1e-9), 1),
    )
    return out


def headline(analysis: Analysis, threat: ThreatModel, schema: Schema) -> str:
    """One sentence: what the attack found at the budget, against noise of the same size."""
    if not threat.applies:
        return (
            f"does not apply: a {schema.task} model has no decision to flip "
            "(pass -p decision_threshold to attack prediction >= threshold)"
        )
    eps, n = threat.epsilon, analysis.rows.size
    flipped = int(np.sum(analysis.linf <= eps))
    return (
        f"{flipped} of {n} attacked test rows flip within L∞ {eps} (median smallest flip "
        f"{np.median(analysis.linf):.3g}); robust accuracy {analysis.robust_accuracy(eps):.3f} "
        f"against clean {mean(analysis.correct):.3f} and {_noise_accuracy(analysis, eps):.3f} "
        f"under random noise of the same size; {analysis.l0_accuracy(threat.k):.3f} with "
        f"{threat.k} feature(s) changed"
    )


def summary_table(summary: dict[str, Any]) -> pd.DataFrame:
    """Accuracy at the budget: clean, under attack, certified, under random noise."""
    if not summary["applies"]:
        return pd.DataFrame([{"applies": False, "reason": summary["reason"]}])
    at = summary["at_epsilon"]
    rows = [
        ("clean", at["clean_accuracy"]),
        (f"under L∞ attack, epsilon {at['epsilon']}", at["robust_accuracy"]),
        (f"certified at epsilon {at['epsilon']}", at["certified_accuracy"]),
        (f"under random noise, epsilon {at['epsilon']}", at["noise_accuracy"]),
        (f"under L0 attack, k {summary['at_k']['k']}", summary["at_k"]["robust_accuracy"]),
    ]
    return pd.DataFrame(rows, columns=["accuracy", "value"]).set_index("accuracy")


def exact_table(summary: dict[str, Any]) -> pd.DataFrame:
    """The fast attack against the MILP optimum, as a one-row table."""
    exact = summary.get("exact") or {"rows": 0}
    return pd.DataFrame([exact])


def example_table(
    analysis: Analysis, booster: xgb.Booster, schema: Schema, *, rank: int = 0
) -> pd.DataFrame:
    """The ``rank``-th closest L∞ example: changed features and predictions, before and after."""
    order = np.argsort(analysis.linf, kind="stable")
    if rank >= order.size or not math.isfinite(analysis.linf[order[rank]]):
        return pd.DataFrame([{"example": f"none found at rank {rank}"}])
    i = int(order[rank])
    frame = examples_frame(analysis, booster, schema).iloc[i]
    names = schema.feature_names
    changed = [n for j, n in enumerate(names) if analysis.linf_point[i, j] != analysis.x[i, j]]
    table = pd.DataFrame(
        {
            "original": [frame[n] for n in changed] + [frame["prediction"]],
            "adversarial": [frame["adv_" + n] for n in changed] + [frame["adv_prediction"]],
        },
        index=[*changed, "prediction"],
    )
    table.index.name = f"test row {int(frame['row'])} (L∞ {frame['linf']:.3g})"
    return table


def training_table(summary: dict[str, Any]) -> pd.DataFrame:
    """Adversarial training's before/after figures (from the train stage), or why there are none."""
    trained = summary.get("adversarial_training")
    if not trained:
        return pd.DataFrame(
            [{"adversarial_training": "off (the sealed model was trained on clean data)"}]
        )
    return pd.DataFrame(trained["compare"]).set_index("model")

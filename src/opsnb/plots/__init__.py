"""Plotting helpers in one house style: each takes data and returns a matplotlib ``Figure``.

The style (STYLE.md, "Plots and reports"): the title states the answer ("2 of 12 features
drifted", not "PSI by feature"); axes are labelled with units; the threshold or budget a value is
judged against is drawn as a dashed line and named in the legend; one accent colour
(:data:`ACCENT`) marks what breaks the rule, everything else is grey (:data:`GREY`), and the
chosen or reference series is dark (:data:`INK`). Figures are built with the object-oriented API
(no pyplot state), so a notebook shows one with ``stage.figure(name, fig)`` and nothing leaks.

The helpers live by area: :mod:`~opsnb.plots.style` (the shared house style),
:mod:`~opsnb.plots.data` (prepare), :mod:`~opsnb.plots.model` (design, train, serving latency),
:mod:`~opsnb.plots.monitoring`, :mod:`~opsnb.plots.update` and :mod:`~opsnb.plots.robustness`;
this package re-exports them, so ``plots.drift_heatmap(...)`` works as before. Add a helper for a
new plot to the module of its area and re-export it here: take plain data (frames, arrays, dicts
from the stage's JSON), compute the verdict the title states, colour by :func:`colours`, and draw
the rule with :func:`rule`.
"""

from __future__ import annotations

from opsnb.plots.data import balance, distributions
from opsnb.plots.model import (
    calibration,
    cv_curves,
    latency_vs_batch,
    model_quality,
    predicted_vs_actual,
    roc,
)
from opsnb.plots.monitoring import (
    alert_timeline,
    drift,
    drift_distributions,
    drift_heatmap,
    quality_over_windows,
)
from opsnb.plots.robustness import (
    attackable_features,
    minimal_perturbation,
    robust_accuracy_by_k,
    robust_accuracy_curve,
)
from opsnb.plots.style import ACCENT, GREY, INK, LIGHT, colours, new_figure, rule
from opsnb.plots.update import backdoor_groups, metric_deltas, screen_counts, shift_psi

__all__ = [
    "ACCENT",
    "GREY",
    "INK",
    "LIGHT",
    "alert_timeline",
    "attackable_features",
    "backdoor_groups",
    "balance",
    "calibration",
    "colours",
    "cv_curves",
    "distributions",
    "drift",
    "drift_distributions",
    "drift_heatmap",
    "latency_vs_batch",
    "metric_deltas",
    "minimal_perturbation",
    "model_quality",
    "new_figure",
    "predicted_vs_actual",
    "quality_over_windows",
    "robust_accuracy_by_k",
    "robust_accuracy_curve",
    "roc",
    "rule",
    "screen_counts",
    "shift_psi",
]

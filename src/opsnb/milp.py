"""The exact minimal L∞ attack on a forest: Kantchelian et al. (ICML 2016) as a MILP (HiGHS).

Variables, for one row ``x``:

- ``eta`` — the L∞ distance on the scaled features, minimised;
- one binary predicate ``p[j, i] = [z_j < t_ji]`` per distinct threshold of a feature the
  attacker may move, ordered so ``p[j, i] <= p[j, i + 1]`` (a value below one threshold is below
  every larger one); flipping a predicate from its value at ``x`` costs the distance to the
  nearest point on its other side, so ``eta >= cost * |p - p(x)|``;
- one leaf weight ``l[t, k]`` in [0, 1] per leaf, one leaf per tree (``sum_k l[t, k] = 1``); a
  split's left subtree may hold weight only if its predicate holds, the right only if it does
  not, so the weights select exactly the leaves ``z`` reaches;
- the decision crosses by a safety margin: ``s * (base + sum v l) <= -MARGIN_SAFETY``.

Splits on features the attacker may not move (immutable, categorical, missing in ``x``) are
fixed to the branch ``x`` takes. Solved with scipy's interface to HiGHS; at a time limit the
solver's dual bound is still a valid lower bound on the distance — a certificate that no attack
within a smaller budget exists.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, milp

from opsnb.attack import MARGIN_SAFETY, Space, side


@dataclass(frozen=True)
class Exact:
    """The MILP's answer for one row.

    Attributes:
        distance: the minimal L∞ distance (``inf``: no change of the movable features flips it),
            or the best found at the time limit (``nan`` if none).
        lower_bound: a proven lower bound on the minimal distance (= ``distance`` when optimal).
        optimal: the solver proved optimality (or infeasibility).
        point: the adversarial row rebuilt from the predicates (None when none was found).
        seconds: solve time.
    """

    distance: float
    lower_bound: float
    optimal: bool
    point: np.ndarray | None
    seconds: float


def _subtree_leaves(space: Space) -> list[dict[int, list[int]]]:
    """Per tree, the leaves under each node (node -> leaf ids)."""
    f = space.forest
    out = []
    for t in range(f.n_trees):
        under: dict[int, list[int]] = {}

        def walk(node: int, tree: int = t, acc: dict[int, list[int]] = under) -> list[int]:
            if f.is_leaf[tree, node]:
                acc[node] = [node]
            else:
                acc[node] = walk(int(f.left[tree, node])) + walk(int(f.right[tree, node]))
            return acc[node]

        walk(0)
        out.append(under)
    return out


Row = tuple[dict[int, float], float, float]
"""One linear constraint: {column: coefficient}, lower bound, upper bound."""


def _predicates(
    space: Space, x: np.ndarray, movable: list[int]
) -> tuple[dict[tuple[int, float], int], list[Row]]:
    """Predicate columns (from 1, after eta), their cost rows and their monotonicity rows."""
    index: dict[tuple[int, float], int] = {}
    rows: list[Row] = []
    for j in movable:
        cols = []
        for t in space.thresholds[j]:
            col = 1 + len(index)
            index[(j, float(t))] = col
            cols.append(col)
            if x[j] < t:  # p(x) = 1; p = 0 means z >= t
                cost = (float(t) - float(x[j])) / space.span[j]
                rows.append(({0: 1.0, col: cost}, cost, np.inf))  # eta >= cost * (1 - p)
            else:  # p(x) = 0; p = 1 means z <= the float32 below t
                nearest = float(np.nextafter(t, np.float32(-np.inf)))
                cost = (float(x[j]) - nearest) / space.span[j]
                rows.append(({0: 1.0, col: -cost}, 0.0, np.inf))  # eta >= cost * p
        rows += [({a: 1.0, b: -1.0}, -np.inf, 0.0) for a, b in itertools.pairwise(cols)]
    return index, rows


def _tree_rows(
    space: Space,
    x: np.ndarray,
    *,
    pred_index: dict[tuple[int, float], int],
    leaf_index: dict[tuple[int, int], int],
    under: list[dict[int, list[int]]],
    upper: np.ndarray,
) -> list[Row]:
    """One leaf per tree, and each split's subtrees tied to its predicate (or fixed)."""
    f = space.forest
    movable = {j for j, _ in pred_index}
    rows: list[Row] = []
    for t in range(f.n_trees):
        rows.append(({leaf_index[(t, k)]: 1.0 for k in under[t][0]}, 1.0, 1.0))
        for node in under[t]:
            if f.is_leaf[t, node]:
                continue
            left = [leaf_index[(t, k)] for k in under[t][int(f.left[t, node])]]
            right = [leaf_index[(t, k)] for k in under[t][int(f.right[t, node])]]
            j = int(f.feature[t, node])
            if j in movable and not f.is_cat[t, node]:
                p = pred_index[(j, float(f.threshold[t, node]))]
                rows.append(({**dict.fromkeys(left, 1.0), p: -1.0}, -np.inf, 0.0))
                rows.append(({**dict.fromkeys(right, 1.0), p: 1.0}, -np.inf, 1.0))
            else:  # a fixed split: the branch x does not take holds no weight
                upper[right if _goes_left(space, x, t, node) else left] = 0.0
    return rows


def min_linf_exact(space: Space, x: np.ndarray, *, time_limit: float = 30.0) -> Exact:
    """Solve the minimal L∞ attack on row ``x`` exactly (or bounded, at ``time_limit``)."""
    t0 = time.perf_counter()
    f = space.forest
    s = float(side(f.margin(x[None])[0]))
    movable = [int(j) for j in space.linf if not np.isnan(x[j])]
    # variable layout: eta | predicates (feature by feature) | leaves (tree by tree)
    pred_index, rows = _predicates(space, x, movable)
    n_pred = len(pred_index)
    under = _subtree_leaves(space)
    leaf_index: dict[tuple[int, int], int] = {}
    for t, tree in enumerate(under):
        for k in tree[0]:
            leaf_index[(t, k)] = 1 + n_pred + len(leaf_index)
    n_var = 1 + n_pred + len(leaf_index)
    upper = np.ones(n_var)
    upper[0] = np.inf
    rows += _tree_rows(
        space, x, pred_index=pred_index, leaf_index=leaf_index, under=under, upper=upper
    )
    decision = {leaf_index[(t, k)]: s * float(f.value[t, k]) for t, k in leaf_index}
    rows.append((decision, -np.inf, -MARGIN_SAFETY - s * f.base_margin))
    r_idx = [r for r, (coefs, _, _) in enumerate(rows) for _ in coefs]
    c_idx = [c for coefs, _, _ in rows for c in coefs]
    values = [v for coefs, _, _ in rows for v in coefs.values()]
    matrix = sparse.csr_matrix((values, (r_idx, c_idx)), shape=(len(rows), n_var))
    objective = np.zeros(n_var)
    objective[0] = 1.0
    integrality = np.zeros(n_var)
    integrality[1 : 1 + n_pred] = 1
    result = milp(
        objective,
        constraints=LinearConstraint(
            matrix, np.array([r[1] for r in rows]), np.array([r[2] for r in rows])
        ),
        integrality=integrality,
        bounds=Bounds(np.zeros(n_var), upper),
        options={"time_limit": time_limit, "mip_rel_gap": 1e-6},
    )
    seconds = time.perf_counter() - t0
    if result.status == 2:  # infeasible: no move of the movable features flips it
        return Exact(math.inf, math.inf, True, None, seconds)
    bound = max(float(getattr(result, "mip_dual_bound", None) or 0.0), 0.0)
    if result.x is None:
        return Exact(math.nan, bound, False, None, seconds)
    point = _rebuild(space, x, pred_index, result.x)
    moved = point != x
    gaps = np.abs(point[moved] - x[moved].astype(np.float64)) / space.span[moved]
    distance = float(np.max(gaps, initial=0.0))
    optimal = result.status == 0
    return Exact(distance, distance if optimal else bound, optimal, point, seconds)


def _goes_left(space: Space, x: np.ndarray, t: int, node: int) -> bool:
    f = space.forest
    v = x[int(f.feature[t, node])]
    if np.isnan(v):
        return bool(f.default_left[t, node])
    if f.is_cat[t, node]:
        code = int(v)
        inside = 0 <= code < f.cat_right.shape[2] and bool(f.cat_right[t, node, code])
        return not inside
    return bool(v < f.threshold[t, node])


def _rebuild(
    space: Space, x: np.ndarray, pred_index: dict[tuple[int, float], int], solution: np.ndarray
) -> np.ndarray:
    """The point nearest ``x`` inside the cells the predicates chose."""
    z = x.copy()
    for j in sorted({j for j, _ in pred_index}):
        ts = space.thresholds[j]
        below = np.array([solution[pred_index[(j, float(t))]] > 0.5 for t in ts])
        floor = ts[~below].max() if (~below).any() else -np.inf  # z >= every t it is not below
        ceiling = ts[below].min() if below.any() else np.inf  # z < the smallest t it is below
        top = np.nextafter(np.float32(ceiling), np.float32(-np.inf)) if below.any() else np.inf
        z[j] = np.float32(min(max(float(x[j]), float(floor)), float(top)))
    return z

"""Fast attacks on a forest: search over split-threshold crossings, not random noise.

A forest is constant on the boxes its split thresholds cut the input space into, so the only
moves that matter for a feature are to the nearest point of another cell: a threshold ``t``
itself (``x >= t`` goes right) or the float32 just below it (goes left). Both attacks below
search these moves only.

- :func:`min_linf` — the smallest L∞ change (features scaled to [0, 1] by the training split's
  min and max) found to flip the decision. For a budget ε, an oracle looks for a flip inside the
  ε-box: exactly, by enumerating every combination of cells, when the box holds few of them;
  otherwise by steepest descent over single-feature cell moves (each step scores every move in
  one vectorised pass and takes the best, so features combine). The budget is searched over the
  row's own crossing distances (exponential, then binary search), starting above the row's
  certified radius (:meth:`Forest.bound`), so no step is spent where no flip can exist.
- :func:`min_l0` — the fewest features changed ("the sticker"), each to a value seen in training
  (one per threshold cell) or any known category: greedy, best single change first. Its first
  step tries every single change, so "flippable with one feature" is exact.
- :func:`noise_flips` — the comparison: uniform random points in the same ε-box.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from opsnb.forest import Forest

MARGIN_SAFETY = 1e-4
"""A found example must cross the decision by this much (margin units), so float32 summation
order in XGBoost or the compiled library cannot put it back on the other side."""

ENUMERATE_BUDGET = 512
"""The ε-box is searched exactly when it holds at most this many combinations of cells."""


@dataclass
class Space:
    """What an attacker may change and how distance is measured.

    Attributes:
        forest: the model.
        low: (features,) the training split's minimum (NaN-free), the scale's 0.
        span: (features,) the training split's max − min; L∞ distances are divided by it.
        linf: indices of features the L∞ attack moves (numeric, mutable, non-constant, split on).
        l0_values: per feature, the values the L0 attack may set (empty: never changed).
        thresholds: per feature, its sorted float32 split thresholds.
    """

    forest: Forest
    low: np.ndarray
    span: np.ndarray
    linf: np.ndarray
    l0_values: list[np.ndarray]
    thresholds: list[np.ndarray] = field(default_factory=list)
    tree_ptr: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))
    tree_idx: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def pairs(self, feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(move, tree) pairs: for move i on feature ``feats[i]``, each tree splitting on it."""
        starts = self.tree_ptr[feats]
        sizes = self.tree_ptr[feats + 1] - starts
        pair_move = np.repeat(np.arange(feats.size), sizes)
        first = np.repeat(np.cumsum(sizes) - sizes, sizes)
        offsets = np.arange(pair_move.size) - first
        return pair_move, self.tree_idx[np.repeat(starts, sizes) + offsets]


def build_space(
    forest: Forest,
    train_x: np.ndarray,
    *,
    categorical: list[bool],
    n_categories: list[int],
    immutable: set[int],
) -> Space:
    """The attack space of ``forest`` for training rows ``train_x`` (schema order)."""
    n = forest.n_features
    with np.errstate(all="ignore"):
        low = np.nan_to_num(np.nanmin(train_x, axis=0).astype(np.float64), nan=0.0)
        high = np.nan_to_num(np.nanmax(train_x, axis=0).astype(np.float64), nan=0.0)
    span = high - low
    used = set(forest.split_features().tolist())
    thresholds = [forest.thresholds(j) for j in range(n)]
    linf = [
        j
        for j in range(n)
        if j in used and j not in immutable and not categorical[j] and span[j] > 0
    ]
    l0_values: list[np.ndarray] = []
    for j in range(n):
        if j not in used or j in immutable:
            l0_values.append(np.empty(0, np.float32))
        elif categorical[j]:
            l0_values.append(np.arange(n_categories[j], dtype=np.float32))
        else:
            seen = np.sort(train_x[:, j][~np.isnan(train_x[:, j])])
            cell = np.searchsorted(thresholds[j], seen, side="right")
            first = np.flatnonzero(np.diff(cell, prepend=-1))
            last = np.append(first[1:], seen.size) - 1
            l0_values.append(seen[(first + last) // 2].astype(np.float32))  # a median per cell
    using = [forest.trees_using(j) for j in range(n)]
    tree_ptr = np.concatenate([[0], np.cumsum([u.size for u in using])]).astype(np.int64)
    tree_idx = np.concatenate(using).astype(np.int64) if n else np.zeros(0, np.int64)
    return Space(
        forest, low, span, np.asarray(linf, np.int64), l0_values, thresholds, tree_ptr, tree_idx
    )


@dataclass
class Found:
    """The result of an attack on one row.

    Attributes:
        point: the adversarial row (float32, schema order), or the original if none was found.
        flipped: whether ``point`` flips the decision.
        linf: its L∞ distance on the scaled features (``inf`` when nothing was found).
        l0: the number of features it changes (0 when nothing was found).
    """

    point: np.ndarray
    flipped: bool
    linf: float
    l0: int


def side(margin: np.ndarray | float) -> np.ndarray:
    """+1 where the decision is positive (margin >= 0), −1 elsewhere."""
    return np.where(np.asarray(margin) >= 0, 1.0, -1.0)


def _moves(space: Space, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every single-feature move to the nearest point of another cell: (feature, value, dist)."""
    feats, values, dists = [], [], []
    for j in space.linf:
        xj = x[j]
        if np.isnan(xj):
            continue  # a missing value stays missing under L∞: it has no distance
        t = space.thresholds[j]
        up = t[t > xj]
        down = np.nextafter(t[t <= xj], np.float32(-np.inf))
        v = np.concatenate([up, down]).astype(np.float32)
        feats.append(np.full(v.size, j))
        values.append(v)
        dists.append(np.abs(v.astype(np.float64) - float(xj)) / space.span[j])
    if not feats:
        return np.empty(0, np.int64), np.empty(0, np.float32), np.empty(0)
    return np.concatenate(feats), np.concatenate(values), np.concatenate(dists)


def _score(space: Space, points: np.ndarray, s: float) -> np.ndarray:
    return s * space.forest.margin(points)


class _Walker:
    """A point moved one feature at a time, its per-tree leaves kept.

    A move then costs only the trees that split on the moved feature, and each step scores every
    move in one pass.
    """

    def __init__(self, space: Space, x: np.ndarray, s: float) -> None:
        self.space, self.s = space, s
        self.z = x.copy()
        self.current = space.forest.leaves(self.z[None])[0]
        self.h = s * (space.forest.base_margin + float(self.current.sum()))
        self._moves: tuple[np.ndarray, np.ndarray] | None = None
        self._moved: int | None = None  # the feature the last take() changed

    def step(
        self, feats: np.ndarray, values: np.ndarray, allowed: np.ndarray | None = None
    ) -> tuple[int, float]:
        """Score every move (``feats[i]`` set to ``values[i]``); return the best and its score.

        Called again with the same move arrays after :meth:`take`, only the (move, tree) pairs
        in trees that split on the feature just moved are re-evaluated: the others reach the
        same leaves as before. ``allowed`` masks moves out of the choice.
        """
        forest = self.space.forest
        if self._moves is None or self._moves[0] is not feats or self._moves[1] is not values:
            self._moves = (feats, values)
            self._pair_move, self._pair_tree = self.space.pairs(feats)
            self._points = np.repeat(self.z[None], feats.size, axis=0)
            self._points[np.arange(feats.size), feats] = values
            self._new = forest.leaves_at(self._points, self._pair_move, self._pair_tree)
            self._part = self._new - self.current[self._pair_tree]  # each pair's score change
            self._delta = np.bincount(self._pair_move, self._part, minlength=feats.size)
            sizes = np.bincount(self._pair_move, minlength=feats.size)
            self._move_start = np.concatenate([[0], np.cumsum(sizes)])
            self._by_tree = np.argsort(self._pair_tree, kind="stable")
            counts = np.bincount(self._pair_tree, minlength=forest.n_trees)
            self._tree_start = np.concatenate([[0], np.cumsum(counts)])
        elif self._moved is not None:
            j = self._moved
            self._points[feats != j, j] = self.z[j]
            trees = self.space.tree_idx[self.space.tree_ptr[j] : self.space.tree_ptr[j + 1]]
            starts, ends = self._tree_start[trees], self._tree_start[trees + 1]
            sizes = ends - starts
            offsets = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
            idx = self._by_tree[np.repeat(starts, sizes) + offsets]  # pairs in those trees
            redo = idx[feats[self._pair_move[idx]] != j]  # moves on j itself kept their point
            self._new[redo] = forest.leaves_at(
                self._points, self._pair_move[redo], self._pair_tree[redo]
            )
            part = self._new[idx] - self.current[self._pair_tree[idx]]
            self._delta += np.bincount(
                self._pair_move[idx], part - self._part[idx], minlength=feats.size
            )
            self._part[idx] = part
        self._moved = None
        scores = self.h + self.s * self._delta
        if allowed is not None:
            scores = np.where(allowed, scores, np.inf)
        self.last_scores = scores
        best = int(np.argmin(scores))
        mine = slice(self._move_start[best], self._move_start[best + 1])
        self._pending = (
            int(feats[best]),
            self._points[best].copy(),
            self._pair_tree[mine],
            self._new[mine].copy(),
        )
        return best, float(scores[best])

    def take(self) -> None:
        """Apply the best move of the last :meth:`step`."""
        self._moved, self.z, trees, leaves = self._pending
        self.current[trees] = leaves
        self.h = self.s * (self.space.forest.base_margin + float(self.current.sum()))


def _descend(
    space: Space,
    x: np.ndarray,
    feats: np.ndarray,
    values: np.ndarray,
    s: float,
    *,
    until_flip: bool = True,
) -> tuple[np.ndarray, float]:
    """Steepest descent of ``s * margin`` over the given single-feature moves from ``x``."""
    walker = _Walker(space, x, s)
    for _ in range(len(np.unique(feats)) + 1):
        if (until_flip and walker.h <= -MARGIN_SAFETY) or not feats.size:
            break
        _, score = walker.step(feats, values)
        if score >= walker.h - 1e-12:
            break
        walker.take()
    return walker.z, walker.h


def _enumerate(
    space: Space, x: np.ndarray, feats: np.ndarray, values: np.ndarray, s: float
) -> tuple[np.ndarray, float] | None:
    """The best point over every combination of the moves' cells, when there are few."""
    if not feats.size:
        return x.copy(), float(_score(space, x[None], s)[0])
    groups = [values[feats == j] for j in np.unique(feats)]
    if math.prod(g.size + 1 for g in groups) > ENUMERATE_BUDGET:
        return None
    columns = np.unique(feats)
    choices = [
        np.concatenate([[x[j]], g]).astype(np.float32) for j, g in zip(columns, groups, strict=True)
    ]
    grid = np.array(list(itertools.product(*choices)), np.float32).reshape(-1, columns.size)
    points = np.repeat(x[None], grid.shape[0], axis=0)
    points[:, columns] = grid
    scores = _score(space, points, s)
    best = int(np.argmin(scores))
    return points[best], float(scores[best])


def flips_within(
    space: Space,
    x: np.ndarray,
    eps: float,
    s: float,
    moves: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> np.ndarray | None:
    """A point within L∞ ``eps`` of ``x`` that flips the decision, or None if none was found."""
    feats, values, dists = moves if moves is not None else _moves(space, x)
    keep = dists <= eps
    feats, values = feats[keep], values[keep]
    found = _enumerate(space, x, feats, values, s)
    if found is None:
        found = _descend(space, x, feats, values, s)
    z, h = found
    return z if h <= -MARGIN_SAFETY else None


def worst_per_feature(space: Space, x: np.ndarray, eps: float) -> np.ndarray:
    """Adversarial points along each axis: (points, features).

    For each feature whose move within ``eps`` pushes the margin the other way, ``x`` with that
    feature moved by ``eps`` in that direction.
    """
    s = float(side(space.forest.margin(x[None])[0]))
    feats, values, dists = _moves(space, x)
    keep = dists <= eps
    feats, values = feats[keep], values[keep]
    if not feats.size:
        return np.empty((0, x.size), np.float32)
    walker = _Walker(space, x, s)
    walker.step(feats, values)
    scores = walker.last_scores
    order = np.lexsort((scores, feats))  # by feature, best score first
    first = order[np.r_[True, feats[order][1:] != feats[order][:-1]]]
    first = first[scores[first] < walker.h - 1e-12]
    # Out to the edge of the budget in the harmful direction: the model must learn the label
    # there, not just past the nearest threshold (where a new split would only shave it).
    j = feats[first]
    direction = np.sign(values[first].astype(np.float64) - x[j])
    points = np.repeat(x[None], first.size, axis=0)
    points[np.arange(first.size), j] = (x[j] + direction * eps * space.span[j]).astype(np.float32)
    return points


def _distance(space: Space, x: np.ndarray, z: np.ndarray) -> float:
    moved = np.flatnonzero(~((z == x) | (np.isnan(z) & np.isnan(x))))
    if not moved.size:
        return 0.0
    return float(np.max(np.abs(z[moved].astype(np.float64) - x[moved]) / space.span[moved]))


def min_linf(space: Space, x: np.ndarray, *, floor: float = 0.0, cap: float = 1.0) -> Found:
    """The smallest L∞ change found to flip ``x``'s decision (at most ``cap``).

    ``floor`` is a certified radius: no flip exists at or below it, so the search starts above.
    """
    s = float(side(space.forest.margin(x[None])[0]))
    moves = _moves(space, x)
    dists = moves[2]
    budgets = np.unique(dists[(dists > floor) & (dists <= cap)])
    best: np.ndarray | None = None
    lo, hi, step = -1, budgets.size, 1  # invariant: no flip found at lo, a flip at hi

    def found_at(k: int, z: np.ndarray) -> int:
        # A flip found within budget k may lie closer: its own distance bounds the search.
        own = int(np.searchsorted(budgets, _distance(space, x, z), side="left"))
        return max(lo + 1, min(k, own))

    while lo + step < budgets.size:  # exponential search from the smallest budget
        z = flips_within(space, x, float(budgets[lo + step]), s, moves)
        if z is not None:
            hi, best = found_at(lo + step, z), z
            break
        lo, step = lo + step, step * 2
    else:
        z = flips_within(space, x, float(budgets[-1]), s, moves) if budgets.size else None
        if z is None:
            return Found(x.copy(), False, math.inf, 0)
        hi, best = found_at(budgets.size - 1, z), z
    while hi - lo > 1:
        mid = (lo + hi) // 2
        z = flips_within(space, x, float(budgets[mid]), s, moves)
        if z is None:
            lo = mid
        else:
            hi, best = found_at(mid, z), z
    assert best is not None
    changed = int(np.sum(best != x))
    return Found(best, True, _distance(space, x, best), changed)


def min_l0(space: Space, x: np.ndarray, *, max_features: int) -> Found:
    """The fewest features (at most ``max_features``) found to flip ``x``'s decision."""
    s = float(side(space.forest.margin(x[None])[0]))
    feats = np.concatenate([np.full(v.size, j) for j, v in enumerate(space.l0_values)])
    values = np.concatenate(space.l0_values) if feats.size else np.empty(0, np.float32)
    walker = _Walker(space, x, s)
    changed: set[int] = set()
    while len(changed) < max_features:
        free = ~np.isin(feats, list(changed)) & (values != walker.z[feats])
        if not free.any():
            break
        best, _ = walker.step(feats, values, free)
        walker.take()
        changed.add(int(feats[best]))
        if walker.h <= -MARGIN_SAFETY:
            z = walker.z
            return Found(z, True, _distance(space, x, z), len(changed))
    return Found(x.copy(), False, math.inf, 0)


def box(space: Space, x: np.ndarray, eps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The L∞ box of radius ``eps`` (one per row) around rows ``x``: float64 (lo, hi)."""
    lo = x.astype(np.float64)
    hi = lo.copy()
    j = space.linf
    width = np.asarray(eps, np.float64)[:, None] * space.span[j][None]
    lo[:, j] -= width
    hi[:, j] += width
    return lo, hi


def certified_radius(
    space: Space, x: np.ndarray, *, cap: float = 1.0, steps: int = 11
) -> np.ndarray:
    """Per row, an L∞ radius within which no flip exists (sound; by bisection on the bound)."""
    s = side(space.forest.margin(x))
    lo_r = np.zeros(x.shape[0])
    hi_r = np.full(x.shape[0], cap)
    for _ in range(steps):
        mid = (lo_r + hi_r) / 2
        safe = _certified(space, x, mid, s)
        lo_r = np.where(safe, mid, lo_r)
        hi_r = np.where(safe, hi_r, mid)
    top = _certified(space, x, np.full(x.shape[0], cap), s)
    return np.where(top, cap, lo_r)


def _certified(space: Space, x: np.ndarray, eps: np.ndarray, s: np.ndarray) -> np.ndarray:
    """True where no point of the ``eps``-box around the row crosses the decision."""
    lo, hi = box(space, x, eps)
    out = np.zeros(x.shape[0], bool)
    up = s > 0  # a positive decision flips when the margin can fall below 0, and vice versa
    if up.any():
        out[up] = space.forest.bound(lo[up], hi[up], lower=True) >= 0
    if (~up).any():
        out[~up] = space.forest.bound(lo[~up], hi[~up], lower=False) < 0
    return out


def noise_flips(space: Space, x: np.ndarray, eps: float, *, draws: int, seed: int) -> np.ndarray:
    """Per row, whether any of ``draws`` uniform random points of the ``eps``-box flips it."""
    rng = np.random.default_rng(seed)
    s = side(space.forest.margin(x))
    flipped = np.zeros(x.shape[0], bool)
    j = space.linf
    for _ in range(draws):
        z = x.copy()
        shift = rng.uniform(-eps, eps, size=(x.shape[0], j.size)) * space.span[j]
        z[:, j] = (z[:, j] + shift).astype(np.float32)
        flipped |= s * space.forest.margin(z) <= -MARGIN_SAFETY
    return flipped

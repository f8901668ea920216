"""An XGBoost forest as numpy arrays: vectorised margins, thresholds and reachable-leaf bounds.

The attacks of :mod:`opsnb.robustness` and the exact program of :mod:`opsnb.milp` reason about
the trees themselves, not about a black box: a forest's decision regions are boxes bounded by its
split thresholds. :func:`from_booster` reads the booster's own JSON (``save_raw("json")``), so
the arrays hold exactly what XGBoost evaluates: ``x < threshold`` goes left (float32), a missing
value follows the node's default, and a categorical split sends the categories in its set right.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import xgboost as xgb

from opsnb.errors import ConfigError


@dataclass(frozen=True)
class Forest:
    """Padded per-tree node arrays; node 0 is each tree's root, a leaf is its own child.

    Attributes:
        feature: (trees, nodes) split feature, 0 on leaves.
        threshold: (trees, nodes) float32 split value (numeric splits).
        left, right: (trees, nodes) child ids; a leaf (and padding) points at itself.
        default_left: (trees, nodes) where a missing value goes.
        is_leaf: (trees, nodes).
        value: (trees, nodes) leaf value (margin units), 0 elsewhere.
        is_cat: (trees, nodes) categorical split.
        cat_right: (trees, nodes, codes) the category codes a categorical split sends right.
        base_margin: the margin of a forest with no trees (XGBoost's base score, as a margin).
        n_features: the model's input width.
        depth: the longest root-to-leaf path.
    """

    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    default_left: np.ndarray
    is_leaf: np.ndarray
    value: np.ndarray
    is_cat: np.ndarray
    cat_right: np.ndarray
    base_margin: float
    n_features: int
    depth: int

    @property
    def n_trees(self) -> int:
        """The number of trees."""
        return int(self.feature.shape[0])

    def trees_using(self, j: int) -> np.ndarray:
        """Indices of the trees with a split on feature ``j``."""
        return np.flatnonzero(((self.feature == j) & ~self.is_leaf).any(axis=1))

    def thresholds(self, j: int) -> np.ndarray:
        """Sorted distinct float32 thresholds of the numeric splits on feature ``j``."""
        mask = (self.feature == j) & ~self.is_leaf & ~self.is_cat
        return np.unique(self.threshold[mask]).astype(np.float32)

    def split_features(self) -> np.ndarray:
        """Every feature some tree splits on, ascending."""
        return np.unique(self.feature[~self.is_leaf])

    def leaves(self, x: np.ndarray, trees: np.ndarray | None = None) -> np.ndarray:
        """Leaf values reached by each row of ``x`` (rows, features) in ``trees``: (rows, trees)."""
        t = np.arange(self.n_trees) if trees is None else np.asarray(trees)
        rows = x.shape[0]
        pair_row = np.repeat(np.arange(rows), t.size)
        pair_tree = np.tile(t, rows)
        return self.leaves_at(x, pair_row, pair_tree).reshape(rows, t.size)

    def leaves_at(self, x: np.ndarray, pair_row: np.ndarray, pair_tree: np.ndarray) -> np.ndarray:
        """The leaf value row ``pair_row[i]`` of ``x`` reaches in tree ``pair_tree[i]``, per i."""
        flat = self._flat()
        n_features = x.shape[1]
        x_flat = np.ascontiguousarray(x, np.float32).ravel()
        node = pair_tree * self.feature.shape[1]  # global node ids
        row_base = pair_row * n_features
        missing = bool(np.isnan(x_flat).any())
        categorical = bool(self.is_cat.any())
        for _ in range(self.depth):
            v = x_flat.take(row_base + flat["feature"].take(node))
            go_left = v < flat["threshold"].take(node)
            if categorical:
                at = np.flatnonzero(flat["is_cat"].take(node))
                if at.size:
                    codes = self.cat_right.shape[2]
                    vc = v[at]
                    code = np.minimum(np.where(vc >= 0, vc, 0).astype(np.int64), codes - 1)
                    go_left[at] = ~flat["cat_right"].take(node[at] * codes + code)
            if missing:
                go_left = np.where(np.isnan(v), flat["default_left"].take(node), go_left)
            node = np.where(go_left, flat["left"].take(node), flat["right"].take(node))
        out: np.ndarray = flat["value"].take(node)
        return out

    def _flat(self) -> dict[str, np.ndarray]:
        """The node arrays raveled, children as global node ids (built once, then cached)."""
        cached: dict[str, np.ndarray] | None = self.__dict__.get("_flat_cache")
        if cached is None:
            width = self.feature.shape[1]
            offset = (np.arange(self.n_trees) * width)[:, None]
            cached = {
                "feature": self.feature.ravel(),
                "threshold": self.threshold.ravel(),
                "left": (self.left + offset).ravel(),
                "right": (self.right + offset).ravel(),
                "default_left": self.default_left.ravel(),
                "value": self.value.ravel(),
                "is_cat": self.is_cat.ravel(),
                "cat_right": self.cat_right.ravel(),
            }
            object.__setattr__(self, "_flat_cache", cached)
        return cached

    def margin(self, x: np.ndarray) -> np.ndarray:
        """The raw score of each row (log-odds for a binary model), as XGBoost sums it."""
        out: np.ndarray = self.leaves(np.asarray(x, np.float32)).sum(axis=1) + self.base_margin
        return out

    def bound(self, lo: np.ndarray, hi: np.ndarray, *, lower: bool) -> np.ndarray:
        """Per row, a bound on the margin over every point of the box ``[lo, hi]`` (rows, features).

        Each tree contributes its smallest (``lower``) or largest reachable leaf, trees taken
        independently: a sound bound, since no point of the box can do better in every tree at
        once. A NaN in ``lo``/``hi`` stands for a missing value kept missing; categorical
        features must have ``lo == hi`` (a fixed code).
        """
        rows = lo.shape[0]
        n_nodes = self.feature.shape[1]
        reach = np.zeros((rows, self.n_trees, n_nodes), bool)
        reach[:, :, 0] = True
        t = np.arange(self.n_trees)
        for k in range(n_nodes):  # children have larger ids than their parent
            split = ~self.is_leaf[:, k]
            if not split.any():
                continue
            f = self.feature[:, k]
            a, b = lo[:, f], hi[:, f]  # (rows, trees)
            thr = self.threshold[:, k]
            can_left = a < thr
            can_right = b >= thr
            if self.cat_right.shape[2]:
                code = np.nan_to_num(a, nan=0).astype(np.int64).clip(0, self.cat_right.shape[2] - 1)
                right_cat = self.cat_right[t, k, code]
                can_left = np.where(self.is_cat[:, k], ~right_cat, can_left)
                can_right = np.where(self.is_cat[:, k], right_cat, can_right)
            missing = np.isnan(a)
            can_left = np.where(missing, self.default_left[:, k], can_left)
            can_right = np.where(missing, ~self.default_left[:, k], can_right)
            here = reach[:, :, k] & split
            reach[:, t, self.left[:, k]] |= here & can_left
            reach[:, t, self.right[:, k]] |= here & can_right
        leaf_values = np.where(self.is_leaf, self.value, np.nan)[None]
        pick = np.where(reach & self.is_leaf[None], leaf_values, np.inf if lower else -np.inf)
        per_tree = pick.min(axis=2) if lower else pick.max(axis=2)
        out: np.ndarray = per_tree.sum(axis=1) + self.base_margin
        return out


def from_booster(booster: xgb.Booster) -> Forest:
    """Read ``booster``'s trees into a :class:`Forest` (one output per row, gbtree only)."""
    model = json.loads(bytes(booster.save_raw(raw_format="json")))
    learner = model["learner"]
    gbm = learner["gradient_booster"]
    if gbm.get("name", "gbtree") not in ("gbtree", "dart") or "model" not in gbm:
        raise ConfigError(
            f"booster type {gbm.get('name')!r} has no trees to attack; "
            "robustness analysis needs a tree model (booster gbtree)"
        )
    trees = gbm["model"]["trees"]
    if int(learner["learner_model_param"].get("num_class", "0")) > 1 or not trees:
        raise ConfigError("robustness analysis needs a forest with one output per row")
    sizes = [len(t["left_children"]) for t in trees]
    width = max(sizes)
    n = len(trees)
    feature = np.zeros((n, width), np.int64)
    threshold = np.zeros((n, width), np.float32)
    left = np.tile(np.arange(width), (n, 1))
    right = left.copy()
    default_left = np.ones((n, width), bool)
    is_leaf = np.ones((n, width), bool)
    value = np.zeros((n, width), np.float64)
    is_cat = np.zeros((n, width), bool)
    cat_sets: list[tuple[int, int, list[int]]] = []
    depth = 0
    arrays = (feature, threshold, left, right, default_left, is_leaf, value, is_cat)
    for i, tree in enumerate(trees):
        _fill(i, tree, arrays, cat_sets)
        lc, rc = np.asarray(tree["left_children"]), np.asarray(tree["right_children"])
        depth = max(depth, _depth(lc, rc))
    codes = 1 + max((max(c, default=0) for _, _, c in cat_sets), default=-1)
    cat_right = np.zeros((n, width, codes), bool)
    for i, node, members in cat_sets:
        cat_right[i, node, members] = True
    forest = Forest(
        feature, threshold, left, right, default_left, is_leaf, value, is_cat, cat_right,
        0.0, booster.num_features(), depth,
    )  # fmt: skip
    probe = np.zeros((1, forest.n_features), np.float32)
    names = booster.feature_names
    kinds_in = booster.feature_types
    dm = xgb.DMatrix(probe, feature_names=names, feature_types=kinds_in, enable_categorical=True)
    xgb_margin = float(booster.predict(dm, output_margin=True)[0])
    base = xgb_margin - float(forest.leaves(probe).sum())
    fields = {k: v for k, v in forest.__dict__.items() if not k.startswith("_")}
    return Forest(**{**fields, "base_margin": base})


def _fill(
    i: int,
    tree: dict[str, Any],
    arrays: tuple[np.ndarray, ...],
    cat_sets: list[tuple[int, int, list[int]]],
) -> None:
    """Copy tree ``i`` of the JSON dump into row ``i`` of the node arrays."""
    feature, threshold, left, right, default_left, is_leaf, value, is_cat = arrays
    lc = np.asarray(tree["left_children"], np.int64)
    rc = np.asarray(tree["right_children"], np.int64)
    m = lc.size
    leaf = lc < 0
    cond = np.asarray(tree["split_conditions"], np.float64)
    feature[i, :m] = np.where(leaf, 0, tree["split_indices"])
    threshold[i, :m] = np.where(leaf, 0, cond).astype(np.float32)
    left[i, :m] = np.where(leaf, np.arange(m), lc)
    right[i, :m] = np.where(leaf, np.arange(m), rc)
    default_left[i, :m] = np.asarray(tree["default_left"], bool)
    is_leaf[i, :m] = leaf
    value[i, :m] = np.where(leaf, cond, 0.0)
    kinds = np.asarray(tree.get("split_type", [0] * m), np.int64)
    is_cat[i, :m] = (kinds == 1) & ~leaf
    cats = tree.get("categories", [])
    for node, start, count in zip(
        tree.get("categories_nodes", []),
        tree.get("categories_segments", []),
        tree.get("categories_sizes", []),
        strict=True,
    ):
        cat_sets.append((i, int(node), [int(c) for c in cats[start : start + count]]))


def _depth(left: np.ndarray, right: np.ndarray) -> int:
    deepest, stack = 0, [(0, 0)]
    while stack:
        node, d = stack.pop()
        deepest = max(deepest, d)
        if left[node] >= 0:
            stack += [(int(left[node]), d + 1), (int(right[node]), d + 1)]
    return deepest

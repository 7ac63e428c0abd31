"""The trees of a scikit-learn random forest, grown without the forest's per-tree Python checks.

Cross-validation needs each fold's summed tree probabilities, not fitted estimators. On small
data, `RandomForestClassifier.fit` spends most of each tree's time outside the tree builder:
a new `DecisionTreeClassifier`, a fresh `RandomState` (about 0.1 ms each, twice per tree),
target-type and sample-weight checks. `summed_proba` drives scikit-learn's own Cython builder
with exactly the inputs `fit` would give it, in the same order, from the same seeds, so the
trees are the same trees (the unit tests compare probabilities bit for bit against `fit`).

It handles the settings this project's search uses (bootstrap, no class or sample weights, no
leaf limit, no pruning, finite dense features) on the scikit-learn releases the unit tests
compared (`VERIFIED_RELEASES`), and says so through `supports`; anything else goes through the
public `fit`, slower and just as right. After upgrading scikit-learn, run tests/unit/test_trees.py
and add the release here if it passes.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from math import ceil
from typing import Any

import numpy as np
import sklearn
from sklearn.ensemble import RandomForestClassifier

try:
    from sklearn.ensemble._bootstrap import _get_n_samples_bootstrap
    from sklearn.tree._classes import CRITERIA_CLF
    from sklearn.tree._splitter import BestSplitter
    from sklearn.tree._tree import DepthFirstTreeBuilder, Tree
except ImportError:  # pragma: no cover - a scikit-learn that reorganised its internals
    CRITERIA_CLF = {}

MAX_SEED = np.iinfo(np.int32).max
VERIFIED_RELEASES = ("1.9",)


def verified_release(version: str = sklearn.__version__) -> bool:
    """Whether this scikit-learn's tree internals are the ones `summed_proba` was checked on."""
    return ".".join(version.split(".")[:2]) in VERIFIED_RELEASES


@dataclass(frozen=True)
class TreeLimits:
    """What `DecisionTreeClassifier._fit` derives from the forest's parameters."""

    max_features: int
    min_samples_split: int
    min_samples_leaf: int
    max_depth: int
    min_impurity_decrease: float
    bootstrap_rows: int


def supports(forest: Any, x: np.ndarray, y: np.ndarray) -> bool:
    """Whether `summed_proba` grows exactly the trees `forest.fit(x, y)` would."""
    params = forest.get_params() if type(forest) is RandomForestClassifier else {}
    return bool(
        params
        and verified_release()
        and CRITERIA_CLF
        and params["criterion"] in CRITERIA_CLF
        and isinstance(params["random_state"], numbers.Integral)
        and params["bootstrap"]
        and params["class_weight"] is None
        and params["max_leaf_nodes"] is None
        and params["monotonic_cst"] is None
        and params["ccp_alpha"] == 0.0
        and params["min_weight_fraction_leaf"] == 0.0
        and isinstance(x, np.ndarray)
        and x.ndim == 2
        and np.ndim(y) == 1
        and _finite_as_float32(x)
    )


def _finite_as_float32(x: np.ndarray) -> bool:
    """The builder reads float32: a value beyond its range would become inf there."""
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(x.astype(np.float32)).all())


def tree_limits(forest: RandomForestClassifier, n_rows: int, n_features: int) -> TreeLimits:
    """The builder's limits, computed by the rules of `DecisionTreeClassifier._fit`."""
    leaf, split = forest.min_samples_leaf, forest.min_samples_split
    if not isinstance(leaf, numbers.Integral):
        leaf = ceil(leaf * n_rows)
    if not isinstance(split, numbers.Integral):
        split = max(2, ceil(split * n_rows))
    return TreeLimits(
        max_features=_max_features(forest.max_features, n_features),
        min_samples_split=max(split, 2 * leaf),
        min_samples_leaf=leaf,
        max_depth=MAX_SEED if forest.max_depth is None else forest.max_depth,
        min_impurity_decrease=forest.min_impurity_decrease,
        bootstrap_rows=_get_n_samples_bootstrap(n_rows, forest.max_samples, None),
    )


def _max_features(setting: Any, n_features: int) -> int:
    if setting == "sqrt":
        return max(1, int(np.sqrt(n_features)))
    if setting == "log2":
        return max(1, int(np.log2(n_features)))
    if setting is None:
        return n_features
    if isinstance(setting, numbers.Integral):
        return int(setting)
    return max(1, int(setting * n_features)) if setting > 0.0 else 0


def tree_seeds(seed: int, start: int, stop: int) -> list[int]:
    """Seeds of trees `start:stop`, drawn as the forest draws them: one by one, in order."""
    state = np.random.RandomState(seed)
    if start:
        state.randint(MAX_SEED, size=start)
    return [state.randint(MAX_SEED) for _ in range(stop - start)]


def summed_proba(
    forest: RandomForestClassifier,
    x: np.ndarray,
    y: np.ndarray,
    x_test: np.ndarray,
    start: int,
    stop: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(classes, sum over trees `start:stop` of their probabilities on `x_test`) of the forest
    `forest.fit(x, y)` would grow. Call only when `supports(forest, x, y)`."""
    classes, encoded = np.unique(y, return_inverse=True)
    targets = np.ascontiguousarray(encoded.reshape(-1, 1), dtype=np.float64)
    rows = np.asarray(x, dtype=np.float32)
    tests = np.ascontiguousarray(x_test, dtype=np.float32)
    limits = tree_limits(forest, *rows.shape)
    n_classes = np.array([len(classes)], dtype=np.intp)
    state = np.random.RandomState()
    total = np.zeros((len(tests), len(classes)))
    for seed in tree_seeds(forest.random_state, start, stop):
        tree = _grow_tree(forest.criterion, limits, rows, targets, n_classes, state, seed)
        total += tree.predict(tests)[:, : len(classes)]
    return classes, total


def _grow_tree(
    criterion: str,
    limits: TreeLimits,
    rows: np.ndarray,
    targets: np.ndarray,
    n_classes: np.ndarray,
    state: np.random.RandomState,
    seed: int,
) -> Any:
    """One tree: bootstrap counts as sample weights, then the builder; `state` is re-seeded
    rather than created (seeding an existing one costs 1.5 us, a new one 100 us)."""
    state.seed(seed)
    drawn = state.randint(0, len(rows), limits.bootstrap_rows).astype(np.int32)
    weights = np.bincount(drawn, minlength=len(rows)).astype(np.float64)
    state.seed(seed)
    splitter = BestSplitter(
        CRITERIA_CLF[criterion](1, n_classes),
        limits.max_features,
        limits.min_samples_leaf,
        0.0,
        state,
        None,
    )
    tree = Tree(rows.shape[1], n_classes, 1)
    builder = DepthFirstTreeBuilder(
        splitter,
        limits.min_samples_split,
        limits.min_samples_leaf,
        0.0,
        limits.max_depth,
        limits.min_impurity_decrease,
    )
    builder.build(tree, rows, targets, weights, None)
    return tree

"""Trees grown straight from scikit-learn's builder are the trees `RandomForestClassifier.fit`
grows: compared bit for bit on small arrays, over settings the search draws and defaults."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

from retrain import trees
from retrain.modeling import FitBlock, build_model, fit_block, fold_splits, grow_block


def blobs(classes: list[str], rows_per_class: int = 25, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.array(classes * rows_per_class)
    centres = rng.normal(scale=2.0, size=(len(classes), 4))
    centres = centres[np.tile(range(len(classes)), rows_per_class)]
    return rng.normal(size=(len(y), 4)) + centres, y


def forest_sum(forest: RandomForestClassifier, x, y, x_test, start: int, stop: int):
    fitted = forest.set_params(n_estimators=stop).fit(x, y)
    x32 = x_test.astype(np.float32)
    return fitted.classes_, np.sum([t.predict_proba(x32) for t in fitted.estimators_[start:]], 0)


SETTINGS = [
    {"n_estimators": 60, "max_depth": 7, "min_samples_split": 5, "min_samples_leaf": 3,
     "max_features": 0.8, "max_samples": 0.85},
    {"n_estimators": 40, "max_depth": 30, "min_samples_split": 3, "min_samples_leaf": 9,
     "max_features": 0.5, "max_samples": 0.7},
    {"n_estimators": 40},
    {"n_estimators": 40, "criterion": "entropy", "max_depth": None, "min_samples_leaf": 0.05,
     "min_samples_split": 0.1, "max_features": "log2", "max_samples": None},
    {"n_estimators": 40, "max_features": 3, "min_impurity_decrease": 0.01},
]  # fmt: skip


@pytest.mark.parametrize("params", SETTINGS)
@pytest.mark.parametrize("classes", [["a", "b", "c"], ["no", "yes"]])
def test_the_builder_grows_the_forests_own_trees(params: dict, classes: list[str]) -> None:
    x, y = blobs(classes)
    forest = RandomForestClassifier(**params, random_state=11)
    assert trees.supports(forest, x, y)
    stop, cut = forest.n_estimators, len(y) * 2 // 3
    for start in (0, 17):
        labels, mine = trees.summed_proba(forest, x[:cut], y[:cut], x[cut:], start, stop)
        their_labels, theirs = forest_sum(forest, x[:cut], y[:cut], x[cut:], start, stop)
        assert labels.tolist() == their_labels.tolist()
        assert np.array_equal(mine, theirs)


def test_the_installed_scikit_learn_is_a_verified_release() -> None:
    """Fails on an upgrade, so the comparisons above are read before the release is trusted."""
    assert trees.verified_release()
    assert not trees.verified_release("1.10.0") and not trees.verified_release("2.9.1")


def test_settings_it_cannot_reproduce_go_through_the_forest() -> None:
    x, y = blobs(["a", "b"])
    assert not trees.supports(RandomForestClassifier(bootstrap=False), x, y)
    assert not trees.supports(RandomForestClassifier(class_weight="balanced"), x, y)
    assert not trees.supports(RandomForestClassifier(max_leaf_nodes=8, random_state=1), x, y)
    assert not trees.supports(RandomForestClassifier(random_state=None), x, y)
    assert not trees.supports(build_model("logreg", {"C": 1.0}), x, y)
    forest = build_model("random_forest", {"n_estimators": 20}, seed=5)
    assert not trees.supports(forest, x, np.column_stack([y, y]))
    assert not trees.supports(forest, np.full_like(x, 1e39), y)
    holes = x.copy()
    holes[3, 1] = np.nan
    assert not trees.supports(forest, holes, y)
    labels, proba = grow_block(forest, holes[:40], y[:40], holes[40:], FitBlock(0, 5, 20))
    assert np.array_equal(proba, forest_sum(forest, holes[:40], y[:40], holes[40:], 5, 20)[1])
    assert labels.tolist() == ["a", "b"]


def test_a_fold_scored_in_blocks_matches_the_whole_forest() -> None:
    x, y = blobs(["a", "b", "c"])
    forest = build_model("random_forest", {"n_estimators": 120, "max_samples": 0.8}, seed=7)
    split = fold_splits(y, 5, seed=1)[2]
    blocks = [FitBlock(2, start, min(start + 50, 120)) for start in range(0, 120, 50)]
    summed = np.sum([fit_block(forest, x, y, split, b).proba_sum for b in blocks], axis=0)
    whole = RandomForestClassifier(**forest.get_params()).fit(x[split[0]], y[split[0]])
    assert np.allclose(summed / 120, whole.predict_proba(x[split[1]]), rtol=0, atol=1e-12)

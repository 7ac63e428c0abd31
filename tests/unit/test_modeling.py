"""Holdout, AUROC and the search space on tiny arrays: no stores, no mocks."""

from __future__ import annotations

import re
import subprocess
import sys
import warnings

import numpy as np
import optuna
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier

from retrain.modeling import (
    auroc,
    build_model,
    cache_param_names,
    fit_block,
    fold_splits,
    grow_trees,
    holdout_mask,
    plan_blocks,
    score_blocks,
    suggest_params,
)


def test_holdout_depends_on_the_hash_only() -> None:
    hashes = pd.Series([f"{i:016x}" for i in range(0, 50_000, 7)])
    mask = holdout_mask(hashes, 0.2)
    assert 0.17 < mask.mean() < 0.23
    again = holdout_mask(pd.concat([hashes.iloc[::-1], pd.Series(["00000000000007d0"])]), 0.2)
    assert again[:-1].tolist() == mask[::-1].tolist()
    assert holdout_mask(pd.Series(["abc", "abc"]), 0.5).tolist() in ([True, True], [False, False])


def test_auroc_binary_uses_the_last_label_as_positive() -> None:
    classes = np.array(["no", "yes"])
    y = np.array(["no", "yes", "yes", "no"])
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.7, 0.3]])
    assert auroc(y, proba, classes) == 1.0
    assert auroc(y, proba, classes, positive="no") == 1.0
    assert auroc(y, proba[:, ::-1], classes) == 0.0


def test_auroc_multiclass_is_one_vs_one_macro() -> None:
    classes = np.array(["a", "b", "c"])
    y = np.array(["a", "b", "c", "a", "b", "c"])
    perfect = np.eye(3)[[0, 1, 2, 0, 1, 2]] * 0.8 + 0.2 / 3
    assert auroc(y, perfect, classes) == pytest.approx(1.0)
    assert auroc(y, np.full((6, 3), 1 / 3), classes) == pytest.approx(0.5)


def three_blobs(rows_per_class: int = 20) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = np.array(["a", "b", "c"] * rows_per_class)
    centres = np.array([[0, 0], [3, 3], [6, 0]])[np.tile([0, 1, 2], rows_per_class)]
    return rng.normal(size=(len(y), 2)) + centres, y


@pytest.mark.parametrize("family", ["random_forest", "logreg"])
def test_each_family_scores_its_folds_with_both_metrics(family: str) -> None:
    x, y = three_blobs()
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=1))
    model = build_model(family, suggest_params(study.ask(), family))
    splits = fold_splits(y, 5, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        results = [fit_block(model, x, y, splits[b.fold], b) for b in plan_blocks(model, 5)]
    scores = score_blocks(results, y, splits, np.unique(y))
    assert len(scores) == 5 and all(r.cpu_seconds > 0 for r in results)
    assert all(0.8 <= s.auroc <= 1.0 and 0.6 <= s.accuracy <= 1.0 for s in scores)


def test_blocks_of_trees_are_the_trees_of_the_whole_forest() -> None:
    x, y = three_blobs()
    forest = build_model("random_forest", {"n_estimators": 120, "max_samples": 0.8}, seed=7)
    whole = forest.fit(x, y)
    parts = [
        grow_trees(forest, x, y, start, stop) for start, stop in ((0, 50), (50, 100), (100, 120))
    ]
    trees = [tree for part in parts for tree in part.estimators_]
    assert len(trees) == 120
    for mine, theirs in zip(trees, whole.estimators_, strict=True):
        assert mine.random_state == theirs.random_state
        assert np.array_equal(mine.tree_.threshold, theirs.tree_.threshold)
    summed = np.sum([t.predict_proba(x.astype(np.float32)) for t in trees], axis=0) / 120
    assert np.allclose(summed, whole.predict_proba(x))


def test_a_forest_is_cut_into_even_blocks_of_trees_and_other_models_by_fold() -> None:
    forest = build_model("random_forest", {"n_estimators": 320})
    blocks = plan_blocks(forest, 2)
    assert [(b.fold, b.start, b.stop) for b in blocks] == [
        (0, 0, 107),
        (0, 107, 213),
        (0, 213, 320),
        (1, 0, 107),
        (1, 107, 213),
        (1, 213, 320),
    ]
    small = plan_blocks(build_model("random_forest", {"n_estimators": 100}), 2)
    assert [(b.start, b.stop) for b in small] == [(0, 100), (0, 100)]
    assert [b.stop for b in plan_blocks(build_model("logreg", {"C": 1.0}), 3)] == [None] * 3


def test_unknown_family_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown model family"):
        build_model("xgboost", {})


def test_cached_parameter_names_grow_the_same_forest_as_plain_scikit_learn() -> None:
    """A forest fitted in a fresh interpreter without the cache, against one fitted here."""
    code = (
        "import numpy as np; from sklearn.ensemble import RandomForestClassifier as F\n"
        "rng = np.random.default_rng(0); x = rng.normal(size=(60, 3)); y = (x[:, 0] > 0)\n"
        "f = F(30, max_samples=0.8, random_state=7).fit(x, y)\n"
        "print(repr(float(sum(t.tree_.threshold.sum() for t in f.estimators_))))"
    )
    plain = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    cache_param_names()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    forest = RandomForestClassifier(30, max_samples=0.8, random_state=7).fit(x, x[:, 0] > 0)
    assert RandomForestClassifier._get_param_names.cache_info().hits > 0
    mine = float(sum(t.tree_.threshold.sum() for t in forest.estimators_))
    assert repr(mine) == plain.stdout.strip()


def test_auroc_from_ranks_equals_scikit_learns_area() -> None:
    """Random scores, with and without ties, 2 to 5 classes, some absent from a sample: the
    same value as roc_auc_score, or the same refusal."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    compared = 0
    for case in range(400):
        k = int(rng.integers(2, 6))
        classes = np.array([f"c{i}" for i in range(k)])
        y = classes[rng.integers(0, k, int(rng.integers(8, 60)))]
        proba = rng.dirichlet(np.ones(k), size=len(y))
        if case % 2:
            proba = np.round(proba, 1) + 1e-9
            proba = proba / proba.sum(axis=1, keepdims=True)
        if len(np.unique(y)) < 2:
            continue
        try:
            if k == 2:
                expected = roc_auc_score(y == classes[1], proba[:, 1])
            else:
                expected = roc_auc_score(y, proba, multi_class="ovo", labels=classes)
        except ValueError as refusal:
            with pytest.raises(ValueError, match=re.escape(str(refusal)[:30])):
                auroc(y, proba, classes)
            continue
        assert auroc(y, proba, classes) == pytest.approx(expected, abs=1e-12)
        compared += 1
    assert compared > 300


def test_auroc_of_a_single_class_is_undefined_as_in_scikit_learn() -> None:
    from sklearn.exceptions import UndefinedMetricWarning

    y, proba = np.array(["a", "a"]), np.array([[0.4, 0.6], [0.3, 0.7]])
    with pytest.warns(UndefinedMetricWarning, match="Only one class"):
        value = auroc(y, proba, np.array(["a", "b"]))
    assert np.isnan(value)

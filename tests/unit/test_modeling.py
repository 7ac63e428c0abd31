"""Holdout, AUROC and the search space on tiny arrays: no stores, no mocks."""

from __future__ import annotations

import warnings

import numpy as np
import optuna
import pandas as pd
import pytest

from retrain.modeling import (
    auroc,
    build_model,
    fold_splits,
    holdout_mask,
    score_fold,
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


@pytest.mark.parametrize("family", ["random_forest", "logreg"])
def test_each_family_scores_a_fold_with_both_metrics(family: str) -> None:
    rng = np.random.default_rng(0)
    y = np.array(["a", "b", "c"] * 20)
    x = (
        rng.normal(size=(60, 2))
        + np.repeat([[0, 0], [3, 3], [6, 0]], 1, axis=0)[np.tile([0, 1, 2], 20)]
    )
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=1))
    params = suggest_params(study.ask(), family)
    train, test = fold_splits(y, 5, seed=3)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        score = score_fold(build_model(family, params), x, y, train, test, np.unique(y))
    assert 0.8 <= score.auroc <= 1.0 and 0.6 <= score.accuracy <= 1.0


def test_unknown_family_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown model family"):
        build_model("xgboost", {})

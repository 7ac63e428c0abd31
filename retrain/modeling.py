"""Pure modelling logic: holdout split, the one AUROC, search spaces and cross-validation.

Arrays and DataFrames in, values out: no SQL, MLflow, subprocess or Prefect here.
"""

from __future__ import annotations

import functools
import itertools
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from retrain import trees

HOLDOUT_BUCKETS = 10_000
HOLDOUT_SHARE = 0.2
FAMILIES = ("random_forest", "logreg")
TREES_PER_BLOCK = 150


def holdout_mask(row_hashes: pd.Series, share: float = 0.2) -> np.ndarray:
    """True for rows in the holdout: decided by the row's content hash alone, so a row never
    changes side from one night to the next and identical rows share a side."""
    buckets = np.array([int(h, 16) % HOLDOUT_BUCKETS for h in row_hashes], dtype=np.int64)
    return buckets < round(share * HOLDOUT_BUCKETS)


def auroc(
    y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray, positive: object | None = None
) -> float:
    """AUROC as the project defines it: one-vs-one macro for multiclass; for binary, plain
    AUROC of the positive class (the last label in sorted order unless given).

    Computed from ranks (the Mann-Whitney statistic, ties counting one half), which is the
    area scikit-learn's `roc_auc_score` integrates, in about a tenth of its time (it is called
    per fold per trial and per bootstrap resample). Inputs scikit-learn would refuse or warn
    about still go through it, so they fail the same way."""
    y_true = np.asarray(y_true)
    present = np.unique(y_true)
    if len(present) < 2 or not np.isin(present, classes).all():
        return _sklearn_auroc(y_true, proba, classes, positive)
    if len(classes) == 2:
        column = _positive_column(classes, positive)
        return _rank_auc(y_true == classes[column], proba[:, column])
    if not np.allclose(proba.sum(axis=1), 1.0):
        return _sklearn_auroc(y_true, proba, classes, positive)
    column = {label: i for i, label in enumerate(classes)}
    pairs = []
    for i, a in enumerate(present):
        for b in present[i + 1 :]:
            rows = (y_true == a) | (y_true == b)
            a_auc = _rank_auc(y_true[rows] == a, proba[rows, column[a]])
            b_auc = _rank_auc(y_true[rows] == b, proba[rows, column[b]])
            pairs.append((a_auc + b_auc) / 2)
    return float(np.mean(pairs))


def _rank_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """P(score of a positive > score of a negative) + P(tie) / 2, from average ranks."""
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    return float((rankdata(score)[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _positive_column(classes: np.ndarray, positive: object | None) -> int:
    """Column of the positive class in a binary problem: the last label unless given."""
    return len(classes) - 1 if positive is None else list(classes).index(positive)


def _sklearn_auroc(
    y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray, positive: object | None
) -> float:
    if len(classes) == 2:
        column = _positive_column(classes, positive)
        return float(roc_auc_score(np.asarray(y_true) == classes[column], proba[:, column]))
    return float(roc_auc_score(y_true, proba, multi_class="ovo", average="macro", labels=classes))


def suggest_params(trial: Any, family: str) -> dict[str, Any]:
    """The search space of a family (the classic MLflow + Optuna random-forest space)."""
    if family == "random_forest":
        return {
            "n_estimators": trial.suggest_int("n_estimators", 100, 600),
            "max_depth": trial.suggest_int("max_depth", 3, 30),
            "min_samples_split": trial.suggest_int("min_samples_split", 3, 20),
            "min_samples_leaf": trial.suggest_int("min_samples_leaf", 3, 20),
            "max_features": trial.suggest_float("max_features", 0.5, 1.0),
            "max_samples": trial.suggest_float("max_samples", 0.7, 1.0),
        }
    if family == "logreg":
        return {
            "C": trial.suggest_float("C", 1e-3, 1e2, log=True),
            "l1_ratio": trial.suggest_float("l1_ratio", 0.0, 1.0),
        }
    raise ValueError(f"unknown model family {family!r}; choose one of {', '.join(FAMILIES)}")


def cache_param_names() -> None:
    """Make scikit-learn read each estimator class's constructor parameters once per process.

    `get_params`, `set_params` and `clone` look the names up through `inspect.signature` on
    every call, and a forest calls them several times per tree: on small data that lookup is
    a fifth of a fit's CPU. The names depend on the class alone, so caching them changes no
    result (the unit test of `grow_trees` compares whole forests). Called when fits start,
    never at import; does nothing when this scikit-learn has no such method."""
    names = BaseEstimator.__dict__.get("_get_param_names")
    if isinstance(names, classmethod) and not hasattr(names.__func__, "cache_info"):
        BaseEstimator._get_param_names = classmethod(functools.cache(names.__func__))


def build_model(family: str, params: dict[str, Any], seed: int = 42) -> ClassifierMixin:
    """An unfitted estimator of the family with the given hyperparameters."""
    cache_param_names()
    if family == "random_forest":
        return RandomForestClassifier(**params, random_state=seed, n_jobs=1)
    if family == "logreg":
        logreg = LogisticRegression(solver="saga", max_iter=2000, random_state=seed, **params)
        return Pipeline([("scale", StandardScaler()), ("model", logreg)])
    raise ValueError(f"unknown model family {family!r}; choose one of {', '.join(FAMILIES)}")


@dataclass(frozen=True)
class FoldScore:
    auroc: float
    accuracy: float


def fold_splits(
    y: np.ndarray, n_folds: int = 5, seed: int = 42
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified folds, fixed by the seed so every trial sees the same splits."""
    return list(
        StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)
    )


@dataclass(frozen=True)
class FitBlock:
    """One unit of cross-validation work: trees `start:stop` of a forest on one fold, or the
    whole model (`stop` None) for families that fit in one piece."""

    fold: int
    start: int = 0
    stop: int | None = None


@dataclass(frozen=True)
class BlockResult:
    fold: int
    proba_sum: np.ndarray
    weight: int
    labels: np.ndarray
    cpu_seconds: float


def plan_blocks(model: ClassifierMixin, n_folds: int) -> list[FitBlock]:
    """Cut the fits of one trial into blocks of at most TREES_PER_BLOCK trees, as even as
    possible, so a few processes stay busy to the end of the trial instead of waiting on the
    last fold. The plan depends on the model alone, never on the number of processes, so the
    scores do not either."""
    if not isinstance(model, RandomForestClassifier):
        return [FitBlock(fold) for fold in range(n_folds)]
    n = model.n_estimators
    cuts = np.linspace(0, n, -(-n // TREES_PER_BLOCK) + 1).round().astype(int)
    return [
        FitBlock(fold, int(start), int(stop))
        for fold in range(n_folds)
        for start, stop in itertools.pairwise(cuts)
    ]


def grow_trees(
    forest: RandomForestClassifier, x: np.ndarray, y: np.ndarray, start: int, stop: int
) -> RandomForestClassifier:
    """Trees `start:stop` of the forest `forest.fit(x, y)` would grow, grown alone.

    Each tree's seed is drawn in order from the forest's random_state, and a warm start
    draws (and discards) the seeds of the trees it already has: so a forest holding `start`
    placeholders grows exactly the trees a whole fit would put at `start:stop`."""
    block = clone(forest).set_params(n_estimators=stop, warm_start=True)
    block.estimators_ = [None] * start
    block.fit(x, y)
    block.estimators_ = block.estimators_[start:]
    return block


def sum_tree_proba(trees: list[Any], x: np.ndarray) -> np.ndarray:
    """Sum of the trees' predicted probabilities. The rows are converted once to the trees'
    float32 layout so each tree skips its own input check (a tenth of a fit's CPU here)."""
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    return np.sum([tree.predict_proba(x32, check_input=False) for tree in trees], axis=0)


def fit_block(
    model: ClassifierMixin,
    x: np.ndarray,
    y: np.ndarray,
    split: tuple[np.ndarray, np.ndarray],
    block: FitBlock,
) -> BlockResult:
    """Fit one block on its fold's training rows; the summed probabilities on its test rows."""
    cache_param_names()
    started = time.thread_time()
    train, test = split
    if block.stop is None:
        fitted = clone(model).fit(x[train], y[train])
        labels, proba, weight = fitted.classes_, fitted.predict_proba(x[test]), 1
    else:
        labels, proba = grow_block(model, x[train], y[train], x[test], block)
        weight = block.stop - block.start
    return BlockResult(block.fold, proba, weight, labels, time.thread_time() - started)


def grow_block(
    forest: RandomForestClassifier,
    x: np.ndarray,
    y: np.ndarray,
    x_test: np.ndarray,
    block: FitBlock,
) -> tuple[np.ndarray, np.ndarray]:
    """(classes, summed probabilities on `x_test`) of the block's trees: straight from the
    tree builder when `trees` can grow this forest, through the forest's own fit otherwise."""
    if trees.supports(forest, x, y):
        return trees.summed_proba(forest, x, y, x_test, block.start, block.stop)
    fitted = grow_trees(forest, x, y, block.start, block.stop)
    return fitted.classes_, sum_tree_proba(fitted.estimators_, x_test)


def score_blocks(
    results: list[BlockResult],
    y: np.ndarray,
    splits: list[tuple[np.ndarray, np.ndarray]],
    classes: np.ndarray,
) -> list[FoldScore]:
    """Per fold: average the blocks' probabilities (in plan order) and score them."""
    scores = []
    for fold, (_, test) in enumerate(splits):
        mine = [r for r in results if r.fold == fold]
        proba = np.sum([r.proba_sum for r in mine], axis=0) / sum(r.weight for r in mine)
        scores.append(FoldScore(*score_proba(mine[0].labels, y[test], proba, classes)))
    return scores


def score_proba(
    labels: np.ndarray, y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray
) -> tuple[float, float]:
    """(AUROC, accuracy) of predicted probabilities whose columns follow `labels`."""
    predicted = np.asarray(labels)[proba.argmax(axis=1)]
    return auroc(y_true, proba, classes), float(np.mean(predicted == np.asarray(y_true)))


def learning_curve(
    fitted: ClassifierMixin,
    train: tuple[Any, np.ndarray],
    test: tuple[Any, np.ndarray],
    classes: np.ndarray,
    points: int = 20,
) -> list[tuple[int, float, float]]:
    """(step, holdout AUROC, holdout accuracy) as the model grows: after each block of trees
    for a forest, after each epoch (refit one pass at a time, warm-started) otherwise."""
    if isinstance(fitted, RandomForestClassifier):
        return _forest_curve(fitted, *test, classes, points)
    return _epoch_curve(fitted, train, test, classes)


def _forest_curve(
    forest: RandomForestClassifier, x: Any, y: np.ndarray, classes: np.ndarray, points: int
) -> list[tuple[int, float, float]]:
    trees = len(forest.estimators_)
    every = max(1, trees // points)
    total = np.zeros((len(x), len(forest.classes_)))
    curve = []
    for grown, tree in enumerate(forest.estimators_, start=1):
        total += sum_tree_proba([tree], x)
        if grown % every == 0 or grown == trees:
            curve.append((grown, *score_proba(forest.classes_, y, total / grown, classes)))
    return curve


def _epoch_curve(
    pipeline: Pipeline,
    train: tuple[Any, np.ndarray],
    test: tuple[Any, np.ndarray],
    classes: np.ndarray,
    max_epochs: int = 100,
) -> list[tuple[int, float, float]]:
    epochs = min(int(np.max(pipeline[-1].n_iter_)), max_epochs)
    stepper = clone(pipeline).set_params(model__max_iter=1, model__warm_start=True)
    curve = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for epoch in range(1, epochs + 1):
            stepper.fit(*train)
            proba = stepper.predict_proba(test[0])
            curve.append((epoch, *score_proba(stepper.classes_, test[1], proba, classes)))
    return curve


def align_proba(proba: np.ndarray, model_classes: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Probabilities with one column per class of `classes`, in that order; a class the model
    never saw gets 0 (a champion trained before a class appeared can still be scored)."""
    out = np.zeros((len(proba), len(classes)))
    index = {label: i for i, label in enumerate(classes)}
    for column, label in enumerate(model_classes):
        if label in index:
            out[:, index[label]] = proba[:, column]
    return out

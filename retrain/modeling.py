"""Pure modelling logic: holdout split, the one AUROC, search spaces and cross-validation.

Arrays and DataFrames in, values out: no SQL, MLflow, subprocess or Prefect here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import ClassifierMixin, clone
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

HOLDOUT_BUCKETS = 10_000
FAMILIES = ("random_forest", "logreg")


def holdout_mask(row_hashes: pd.Series, share: float = 0.2) -> np.ndarray:
    """True for rows in the holdout: decided by the row's content hash alone, so a row never
    changes side from one night to the next and identical rows share a side."""
    buckets = np.array([int(h, 16) % HOLDOUT_BUCKETS for h in row_hashes], dtype=np.int64)
    return buckets < round(share * HOLDOUT_BUCKETS)


def auroc(
    y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray, positive: object | None = None
) -> float:
    """AUROC as the project defines it: one-vs-one macro for multiclass; for binary, plain
    AUROC of the positive class (the last label in sorted order unless given)."""
    if len(classes) == 2:
        pos = classes[-1] if positive is None else positive
        column = list(classes).index(pos)
        return float(roc_auc_score(np.asarray(y_true) == pos, proba[:, column]))
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


def build_model(family: str, params: dict[str, Any], seed: int = 42) -> ClassifierMixin:
    """An unfitted estimator of the family with the given hyperparameters."""
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
    cpu_seconds: float


def fold_splits(
    y: np.ndarray, n_folds: int = 5, seed: int = 42
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified folds, fixed by the seed so every trial sees the same splits."""
    return list(
        StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)
    )


def score_fold(
    model: ClassifierMixin,
    x: np.ndarray,
    y: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    classes: np.ndarray,
) -> FoldScore:
    """Fit once on a fold and take both metrics from the same probabilities."""
    started = time.thread_time()
    fitted = clone(model).fit(x[train], y[train])
    proba = fitted.predict_proba(x[test])
    cpu = time.thread_time() - started
    return FoldScore(*score_proba(fitted, y[test], proba, classes), cpu)


def score_proba(
    fitted: ClassifierMixin, y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray
) -> tuple[float, float]:
    """(AUROC, accuracy) of one set of predicted probabilities."""
    predicted = fitted.classes_[proba.argmax(axis=1)]
    return auroc(y_true, proba, classes), float(accuracy_score(y_true, predicted))

"""Calibrated probabilities: a fitted Pipeline wrapped in scikit-learn's
`CalibratedClassifierCV` over a `FrozenEstimator` (the Pipeline is not fit again), the method
(sigmoid or isotonic) chosen by Brier score on rows held back from fitting, never on the
holdout; and the two numbers that say how honest probabilities are: the Brier score and the
expected calibration error. Pure: arrays and frames in, a model and floats out."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import KFold, StratifiedKFold

METHODS = ("sigmoid", "isotonic")
HELD_BACK_SHARE = 0.15
ECE_BINS = 10
MIN_PER_CLASS = 10  # rows of each class in each half before the two methods are compared


def held_back_rows(
    y: np.ndarray, newest_first: np.ndarray | None, seed: int, share: float = HELD_BACK_SHARE
) -> np.ndarray:
    """True for the training rows held back to calibrate on: the newest `share` when the rows
    have a time order (`newest_first`, positions), else a seeded stratified `share`. Every
    class keeps rows on both sides where it has two or more."""
    count = max(round(share * len(y)), 1)
    held = np.zeros(len(y), dtype=bool)
    if newest_first is not None:
        held[newest_first[:count]] = True
    else:
        rng = np.random.default_rng(seed)
        for label in np.unique(y):
            where = rng.permutation(np.flatnonzero(y == label))
            held[where[: round(share * len(where))]] = True
    for label in np.unique(y):
        rows = y == label
        if rows.sum() >= 2 and (held[rows].all() or not held[rows].any()):
            first = np.flatnonzero(rows)[0]
            held[first] = not held[first]
    return held


def calibrator(fitted: Any, method: str) -> CalibratedClassifierCV:
    """An unfit calibrator of `fitted` (frozen: never fit again). The folds only partition
    the rows for `cross_val_predict`, which a frozen model answers the same way whatever the
    split, so plain two folds do (the default stratified five refuse a class of four rows)."""
    return CalibratedClassifierCV(FrozenEstimator(fitted), method=method, cv=KFold(2))


def calibrate(fitted: Any, x: pd.DataFrame, y: np.ndarray, seed: int) -> tuple[Any, str]:
    """(`fitted` calibrated on the held-back rows `x`, `y`; the method): the method with the
    lower Brier score over two folds of those rows, then fit on all of them. Sigmoid (two
    parameters) when a class has too few rows to compare; with fewer than two rows of a
    class, the model stays as fitted ("none")."""
    counts = np.unique(y, return_counts=True)[1]
    if len(counts) < 2 or counts.min() < 2:
        return fitted, "none"
    method = "sigmoid"
    if counts.min() >= 2 * MIN_PER_CLASS:
        scores = {m: held_back_brier(fitted, x, y, m, seed) for m in METHODS}
        method = min(METHODS, key=lambda m: scores[m])
    return calibrator(fitted, method).fit(x, y), method


def held_back_brier(fitted: Any, x: pd.DataFrame, y: np.ndarray, method: str, seed: int) -> float:
    """Mean Brier score of `method` fit on one half of the rows and scored on the other."""
    folds = StratifiedKFold(2, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)
    scores = []
    for fit_rows, score_rows in folds:
        model = calibrator(fitted, method).fit(x.iloc[fit_rows], y[fit_rows])
        proba = model.predict_proba(x.iloc[score_rows])
        scores.append(brier(y[score_rows], proba, model.classes_))
    return float(np.mean(scores))


def brier(y: np.ndarray, proba: np.ndarray, classes: np.ndarray, positive: Any = None) -> float:
    """Brier score: binary, the mean squared error of the positive class's probability (the
    last class unless given); multiclass, the mean over rows of the squared error summed over
    the classes."""
    truth = np.asarray(y)[:, None] == np.asarray(classes)[None, :]
    if len(classes) == 2:
        column = len(classes) - 1 if positive is None else list(classes).index(positive)
        return float(np.mean((proba[:, column] - truth[:, column]) ** 2))
    return float(np.mean(((proba - truth) ** 2).sum(axis=1)))


def expected_calibration_error(
    y: np.ndarray, proba: np.ndarray, classes: np.ndarray, positive: Any = None
) -> float:
    """ECE over ECE_BINS equal-width bins: binary, of the positive class's probability
    against its frequency; multiclass, of the top label's probability against its accuracy.
    The bins' gaps weighted by their rows."""
    predicted, observed, rows = reliability_points(y, proba, classes, positive)
    return float((rows * abs(predicted - observed)).sum() / rows.sum()) if len(rows) else np.nan


def reliability_points(
    y: np.ndarray, proba: np.ndarray, classes: np.ndarray, positive: Any = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean predicted, observed frequency, rows) per non-empty bin: for binary data the
    positive class's probability, for multiclass the top label's."""
    y, classes = np.asarray(y), np.asarray(classes)
    if len(classes) == 2:
        column = len(classes) - 1 if positive is None else list(classes).index(positive)
        confidence, hit = proba[:, column], y == classes[column]
    else:
        confidence, hit = proba.max(axis=1), classes[proba.argmax(axis=1)] == y
    bins = np.minimum((confidence * ECE_BINS).astype(int), ECE_BINS - 1)
    found = np.unique(bins)
    return (
        np.array([confidence[bins == b].mean() for b in found]),
        np.array([hit[bins == b].mean() for b in found]),
        np.array([(bins == b).sum() for b in found]),
    )

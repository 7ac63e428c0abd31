"""Features that give the label away: one that alone separates the classes almost perfectly
(out-of-fold AUROC of a one-feature model at or above a threshold: a shallow tree for a number,
each category's class rates for a category; one-vs-rest macro for multiclass), or one filled
only for one class (a date of death when the target is "died"). Named, never dropped: the
schema's `ignore` is how a person drops one. Pure: a frame in, a list out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.tree import DecisionTreeClassifier

THRESHOLD = 0.98
SAMPLE_ROWS = 20_000
MIN_FILLED = 10  # a column filled in fewer rows says nothing either way


@dataclass(frozen=True)
class Leak:
    column: str
    reason: str

    def describe(self) -> str:
        return f"{self.column} ({self.reason})"


def suspected_leaks(
    frame: pd.DataFrame,
    kinds: dict[str, str],
    target: str,
    seed: int = 0,
    threshold: float = THRESHOLD,
) -> list[Leak]:
    """The features of `frame` (training rows, features as prepared: numbers float, categories
    text) that look like the label in disguise; at most SAMPLE_ROWS rows are looked at."""
    frame = rows_to_look_at(frame, seed)
    y = frame[target].astype(str).to_numpy()
    if len(np.unique(y)) < 2 or np.unique(y, return_counts=True)[1].min() < 3:
        return []
    leaks = []
    for column, kind in kinds.items():
        filled = frame[column].notna().to_numpy()
        only = np.unique(y[filled])
        if filled.sum() >= MIN_FILLED and (~filled).any() and len(only) == 1:
            leaks.append(Leak(column, f"filled only for class {only[0]}"))
            continue
        score = alone_auroc(frame[column], y, kind == "categorical", seed)
        if score >= threshold:
            leaks.append(Leak(column, f"AUROC {score:.3f} alone"))
    return leaks


def rows_to_look_at(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """At most SAMPLE_ROWS rows, a seeded sample (the same rows whether or not a caller took
    it already), so a caller can prepare only these."""
    return frame.sample(SAMPLE_ROWS, random_state=seed) if len(frame) > SAMPLE_ROWS else frame


def alone_auroc(values: pd.Series, y: np.ndarray, categorical: bool, seed: int) -> float:
    """Out-of-fold AUROC of the one feature (3 stratified folds); macro one-vs-rest for
    multiclass, as the class with the higher label for binary."""
    classes = np.unique(y)
    proba = np.zeros((len(y), len(classes)))
    folds = StratifiedKFold(3, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)
    for train, test in folds:
        if categorical:
            proba[test] = category_rates(values.iloc[train], y[train], values.iloc[test], classes)
        else:
            proba[test] = tree_proba(values.iloc[train], y[train], values.iloc[test], classes)
    if len(classes) == 2:
        return float(roc_auc_score(y == classes[1], proba[:, 1]))
    return float(roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=classes))


def tree_proba(train: pd.Series, y: np.ndarray, test: pd.Series, classes: np.ndarray) -> np.ndarray:
    """A depth-3 tree on the number alone (a missing value is a value of its own)."""
    tree = DecisionTreeClassifier(max_depth=3, random_state=0)
    tree.fit(train.to_numpy(dtype=float).reshape(-1, 1), y)
    proba = tree.predict_proba(test.to_numpy(dtype=float).reshape(-1, 1))
    out = np.zeros((len(test), len(classes)))
    out[:, np.searchsorted(classes, tree.classes_)] = proba
    return out


def category_rates(
    train: pd.Series, y: np.ndarray, test: pd.Series, classes: np.ndarray
) -> np.ndarray:
    """Each class's rate among the training rows of the category (a missing value is a
    category; one unseen in training gets the overall rates)."""
    key_train = train.astype(object).where(train.notna(), "<missing>").to_numpy()
    key_test = test.astype(object).where(test.notna(), "<missing>").to_numpy()
    counts = pd.crosstab(key_train, y).reindex(columns=classes, fill_value=0)
    rates = counts.div(counts.sum(axis=1), axis=0)
    prior = pd.Series(y).value_counts(normalize=True).reindex(classes, fill_value=0)
    looked = rates.reindex(pd.Index(key_test)).to_numpy(copy=True)
    missing = np.isnan(looked).any(axis=1)
    looked[missing] = prior.to_numpy()
    return looked

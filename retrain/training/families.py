"""Pure modelling logic: the one AUROC, feature preparation, model families as scikit-learn
Pipelines, search spaces and cross-validation.

Arrays and DataFrames in, values out: no SQL, MLflow, subprocess or Prefect here. Only public
scikit-learn API: each fold is fitted once with `fit` and both metrics come from one
`predict_proba`.
"""

from __future__ import annotations

import itertools
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from retrain.config.settings import FAMILIES
from retrain.data.features import prepare_features
from retrain.data.split import align_proba
from retrain.errors import BadInput

NUMERIC_KINDS = ("numeric", "integer", "boolean")
MAX_CATEGORIES = 250  # HistGradientBoosting needs category codes below its 255 bins
LIBGOMP_HINT = "apt-get install libgomp1"


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


JUDGED_ROWS = 200  # labelled rows an AUROC needs before anything is judged by it
JUDGED_PER_CLASS = 20  # and this many of each class


def enough_to_judge(labels: np.ndarray, classes: np.ndarray) -> bool:
    """JUDGED_ROWS labelled rows holding every class at least JUDGED_PER_CLASS times: a
    realized day that counts for the degradation verdict, a champion's check on new rows."""
    counts = pd.Series(labels).value_counts()
    return (
        len(labels) >= JUDGED_ROWS
        and len(counts) == len(classes)
        and int(counts.min()) >= JUDGED_PER_CLASS
    )


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
    """The search space of a family. The random forest keeps the classic MLflow + Optuna
    space; the other families' Optuna names carry the family as a prefix (one study may mix
    families, and Optuna refuses one name with two ranges), the returned keys do not."""
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
            "C": trial.suggest_float("logreg_C", 1e-3, 1e2, log=True),
            "l1_ratio": trial.suggest_float("logreg_l1_ratio", 0.0, 1.0),
        }
    if family == "hgb":
        return {
            "learning_rate": trial.suggest_float("hgb_learning_rate", 0.02, 0.3, log=True),
            "max_iter": trial.suggest_int("hgb_max_iter", 50, 500, log=True),
            "max_leaf_nodes": trial.suggest_int("hgb_max_leaf_nodes", 8, 64, log=True),
            "min_samples_leaf": trial.suggest_int("hgb_min_samples_leaf", 2, 100, log=True),
            "l2_regularization": trial.suggest_float("hgb_l2_regularization", 1e-6, 10, log=True),
        }
    if family == "lightgbm":
        return {
            # a cap: boosting stops early on held-back rows (above 2,000 rows)
            "n_estimators": trial.suggest_int("lgbm_n_estimators", 50, 2000, log=True),
            "learning_rate": trial.suggest_float("lgbm_learning_rate", 0.02, 0.3, log=True),
            "num_leaves": trial.suggest_int("lgbm_num_leaves", 8, 128, log=True),
            "min_child_samples": trial.suggest_int("lgbm_min_child_samples", 2, 100, log=True),
            "subsample": trial.suggest_float("lgbm_subsample", 0.6, 1.0),
            "subsample_freq": 1,
            "colsample_bytree": trial.suggest_float("lgbm_colsample_bytree", 0.5, 1.0),
            "reg_lambda": trial.suggest_float("lgbm_reg_lambda", 1e-6, 10, log=True),
        }
    raise BadInput(f"unknown model family {family!r}; choose one of {', '.join(FAMILIES)}")


def split_kinds(kinds: dict[str, str]) -> tuple[list[str], list[str]]:
    """(numeric-like features, categorical features), in the schema's order."""
    numeric = [c for c, k in kinds.items() if k in NUMERIC_KINDS]
    return numeric, [c for c, k in kinds.items() if k not in NUMERIC_KINDS]


def ordinal_encoder(max_categories: int | None = None) -> OrdinalEncoder:
    """Categories as codes; a category never seen in training is treated as missing (NaN)."""
    return OrdinalEncoder(
        handle_unknown="use_encoded_value",
        unknown_value=np.nan,
        encoded_missing_value=np.nan,
        max_categories=max_categories,
    )


def tree_preprocessing(kinds: dict[str, str], max_categories: int | None = None):
    """Numbers as they are (NaN stays missing: the tree families handle it), categories as
    ordinal codes. Output columns: numeric first, then categorical."""
    numeric, categorical = split_kinds(kinds)
    return ColumnTransformer(
        [("num", "passthrough", numeric), ("cat", ordinal_encoder(max_categories), categorical)],
        verbose_feature_names_out=False,
    )


def linear_preprocessing(kinds: dict[str, str]) -> ColumnTransformer:
    """Numbers imputed (median, with missing indicators) and scaled; categories one-hot, the
    rare and the unseen ones in one infrequent column."""
    numeric, categorical = split_kinds(kinds)
    scale = make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler())
    onehot = OneHotEncoder(
        handle_unknown="infrequent_if_exist", max_categories=50, sparse_output=False
    )
    return ColumnTransformer(
        [("num", scale, numeric), ("cat", onehot, categorical)], verbose_feature_names_out=False
    )


def _categorical_mask(kinds: dict[str, str]) -> list[bool]:
    numeric, categorical = split_kinds(kinds)
    return [False] * len(numeric) + [True] * len(categorical)


def load_lightgbm() -> Any:
    """LightGBM's scikit-learn classifier, imported only when the family is chosen."""
    try:
        from lightgbm import LGBMClassifier
    except OSError as err:  # the wheel needs the system's OpenMP runtime
        raise BadInput(
            f"lightgbm cannot load ({str(err)[:120]}); {LIBGOMP_HINT}, or choose another --family"
        ) from err
    except ImportError as err:
        raise BadInput("lightgbm is not installed; run ./dev to sync the environment") from err
    return LGBMClassifier


AUTO_FAMILY = "lightgbm"  # what bench/scale.py found best within the budget (README)
AUTO_FALLBACK = "hgb"  # runs anywhere: scikit-learn ships its own OpenMP runtime


def resolve_families(families: tuple[str, ...]) -> tuple[tuple[str, ...], str | None]:
    """(the families to search, a warning or None): `auto` is LightGBM where its OpenMP runtime
    loads, else histogram gradient boosting, so the default also runs on a bare machine."""
    if families != ("auto",):
        return families, None
    try:
        load_lightgbm()
    except BadInput as err:
        return (AUTO_FALLBACK,), f"family auto: searching {AUTO_FALLBACK}, as {err}"
    return (AUTO_FAMILY,), None


def classifier(family: str, params: dict[str, Any], kinds: dict[str, str], seed: int) -> Any:
    """The unfitted classifier of a family (the last step of its Pipeline)."""
    if family == "random_forest":
        return RandomForestClassifier(**params, random_state=seed, n_jobs=1)
    if family == "logreg":
        return LogisticRegression(solver="saga", max_iter=2000, random_state=seed, **params)
    if family == "hgb":
        mask = _categorical_mask(kinds)
        return HistGradientBoostingClassifier(
            **params, categorical_features=mask if any(mask) else None, random_state=seed
        )
    if family == "lightgbm":
        return load_lightgbm()(**params, random_state=seed, n_jobs=1, verbose=-1)
    raise BadInput(f"unknown model family {family!r}; choose one of {', '.join(FAMILIES)}")


def build_model(
    family: str, params: dict[str, Any], kinds: dict[str, str], seed: int = 42
) -> Pipeline:
    """An unfitted Pipeline: the family's preprocessing, then its classifier."""
    model = classifier(family, params, kinds, seed)
    if family == "logreg":
        prep = linear_preprocessing(kinds)
    else:
        prep = tree_preprocessing(kinds, MAX_CATEGORIES if family == "hgb" else None)
    return Pipeline([("prep", prep), ("model", model)])


def pipeline_of(model: Any, kinds: dict[str, str]) -> Pipeline:
    """Any scikit-learn classifier behind the tree families' preprocessing (numbers as they
    are, categories as codes)."""
    return Pipeline([("prep", tree_preprocessing(kinds)), ("model", model)])


def is_lightgbm(model: Pipeline) -> bool:
    return type(model[-1]).__name__ == "LGBMClassifier"


def fit_params(model: Pipeline, kinds: dict[str, str]) -> dict[str, Any]:
    """What `fit` needs beyond the rows: LightGBM is told which columns are categorical."""
    if not is_lightgbm(model):
        return {}
    mask = _categorical_mask(kinds)
    return {"model__categorical_feature": [i for i, cat in enumerate(mask) if cat] or "auto"}


EARLY_STOPPING_ROWS = 2_000  # below this a tenth of the rows is too few to stop on
EARLY_STOPPING_ROUNDS = 20
EARLY_STOPPING_SHARE = 0.1


def early_stopping(
    model: Pipeline, x: pd.DataFrame, y: np.ndarray
) -> tuple[pd.DataFrame, np.ndarray, dict[str, Any]]:
    """(rows to fit, their labels, fit params) that stop LightGBM's boosting once a held-back
    tenth of the rows stops improving for 20 rounds: `n_estimators` is then a cap. Histogram
    gradient boosting does the same by itself above 10,000 rows (`early_stopping="auto"`)."""
    if not is_lightgbm(model) or len(y) < EARLY_STOPPING_ROWS:
        return x, y, {}
    import lightgbm

    rows = np.arange(len(y))
    seed = model[-1].random_state
    try:
        fit, valid = train_test_split(
            rows, test_size=EARLY_STOPPING_SHARE, stratify=y, random_state=seed
        )
    except ValueError:  # a class too rare to stratify: no early stopping
        return x, y, {}
    prep = clone(model[:-1]).fit(x.iloc[fit])
    params = {
        "model__eval_set": [(prep.transform(x.iloc[valid]), y[valid])],
        "model__callbacks": [lightgbm.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)],
    }
    return x.iloc[fit], y[fit], params


def fit_model(model: Pipeline, x: pd.DataFrame, y: np.ndarray, kinds: dict[str, str]) -> Pipeline:
    """Fit a fresh copy of the Pipeline (fold warnings of tiny classes are expected)."""
    fitted = clone(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.filterwarnings("ignore", message=".*least populated class.*")
        warnings.filterwarnings("ignore", message=".*does not have valid feature names.*")
        # LightGBM 4.7 deprecates eval_set for eval_X/eval_y, but does not label-encode eval_y
        warnings.filterwarnings("ignore", message=".*'eval_set' is deprecated.*")
        x, y, stopping = early_stopping(fitted, x, y)
        fitted.fit(x, y, **fit_params(model, kinds), **stopping)
    return fitted


def predict_aligned(model: Pipeline, x: pd.DataFrame, classes: np.ndarray) -> np.ndarray:
    """Class probabilities with one column per class of `classes` (zeros for unseen ones)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have valid feature names.*")
        proba = model.predict_proba(x)
    return align_proba(proba, model.classes_, classes)


@dataclass(frozen=True)
class FoldScore:
    auroc: float
    accuracy: float
    cpu_seconds: float = 0.0


def fold_splits(
    y: np.ndarray, n_folds: int = 5, seed: int = 42
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified folds, fixed by the seed so every trial sees the same splits. A class with
    fewer rows than folds is simply absent from some folds."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*least populated class.*")
        return list(
            StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)
        )


def forward_splits(
    newest_first: np.ndarray, y: np.ndarray, n_folds: int = 5, seconds: np.ndarray | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Folds that go forward in time: the rows in time order (`newest_first`: positions,
    newest first) cut into `n_folds + 1` blocks of about equal size, each cut moved forward to
    where the time changes (`seconds`: each row's time; rows of one time stay on one side);
    fold k trains on the rows older than block k + 1 and validates on it. A validation block
    lacking a class is widened back in time until it holds every class, and trains on what is
    older still; a fold whose training rows hold a single class is left out."""
    order = newest_first[::-1]  # oldest first
    cuts = time_cuts(order, n_folds, seconds)
    splits, present = [], np.unique(y)
    for start, end in itertools.pairwise(cuts):
        while start > 0 and len(np.unique(y[order[start:end]])) < len(present):
            start = max(start - max(len(order) // (4 * (n_folds + 1)), 1), 0)
        train, valid = order[:start], order[start:end]
        if len(np.unique(y[train])) >= 2 and len(valid):
            splits.append((np.sort(train), np.sort(valid)))
    return splits


def time_cuts(order: np.ndarray, n_folds: int, seconds: np.ndarray | None) -> list[int]:
    """Where the validation blocks begin (and the last ends), in positions of `order`."""
    size = max(len(order) // (n_folds + 1), 1)
    cuts = [k * size for k in range(1, n_folds + 1)]
    if seconds is not None:
        ordered = seconds[order]
        cuts = [int(np.searchsorted(ordered, ordered[c - 1], side="right")) for c in cuts]
    return [*sorted({c for c in cuts if 0 < c < len(order)}), len(order)]


def restrict_to_window(
    split: tuple[np.ndarray, np.ndarray], seconds: np.ndarray, days: float | None, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """A forward fold whose training rows are only those within `days` days before its
    validation rows begin (`seconds`: each row's time; None: all history). A window that
    would leave a single class keeps the fold as it was."""
    train, valid = split
    if days is None:
        return split
    begins = seconds[valid].min()
    kept = train[seconds[train] > begins - days * 86400]
    return (kept, valid) if len(np.unique(y[kept])) >= 2 else split


def score_fold(
    model: Pipeline,
    x: pd.DataFrame,
    y: np.ndarray,
    split: tuple[np.ndarray, np.ndarray],
    kinds: dict[str, str],
    classes: np.ndarray,
    positive: Any = None,
) -> FoldScore:
    """Fit on the fold's training rows once; AUROC and accuracy from one predict_proba."""
    started = time.thread_time()
    train, test = split
    fitted = fit_model(model, x.iloc[train], y[train], kinds)
    proba = predict_aligned(fitted, x.iloc[test], classes)
    score = score_proba(classes, y[test], proba, classes, positive)
    return FoldScore(*score, time.thread_time() - started)


def score_proba(
    labels: np.ndarray,
    y_true: np.ndarray,
    proba: np.ndarray,
    classes: np.ndarray,
    positive: Any = None,
) -> tuple[float, float]:
    """(AUROC, accuracy) of predicted probabilities whose columns follow `labels`."""
    predicted = np.asarray(labels)[proba.argmax(axis=1)]
    return auroc(y_true, proba, classes, positive), float(np.mean(predicted == np.asarray(y_true)))


def learning_curve(
    fitted: Pipeline,
    train: tuple[pd.DataFrame, np.ndarray],
    test: tuple[pd.DataFrame, np.ndarray],
    classes: np.ndarray,
    positive: Any = None,
    points: int = 20,
) -> list[tuple[int, float, float]]:
    """(step, holdout AUROC, holdout accuracy) as the fitted model grows, over its whole fit:
    per tree for a forest, per boosting round for the boosted families, per epoch of a
    warm-started refit for logistic regression. About `points` evenly spaced steps."""
    total = count_steps(fitted[-1])
    every = max(1, total // points)
    keep = {k for k in range(1, total + 1) if k % every == 0 or k == total}
    curve = []
    for step, labels, proba in _stages(fitted, train, test[0], keep):
        aligned = align_proba(proba, labels, classes)
        curve.append((step, *score_proba(classes, test[1], aligned, classes, positive)))
    return curve


def count_steps(model: Any) -> int:
    """How many steps (trees, boosting rounds, epochs) the fitted classifier took."""
    if isinstance(model, RandomForestClassifier):
        return len(model.estimators_)
    if isinstance(model, HistGradientBoostingClassifier | LogisticRegression):
        return int(np.max(model.n_iter_))
    return int(model.booster_.current_iteration())


def _stages(fitted: Pipeline, train: tuple, x: pd.DataFrame, keep: set[int]):
    """(step, class labels, holdout probabilities) at the kept steps of the fit."""
    model = fitted[-1]
    if isinstance(model, LogisticRegression):
        yield from _epoch_stages(fitted, train, x, keep)
        return
    xt = fitted[:-1].transform(x)
    if isinstance(model, RandomForestClassifier):
        x32 = np.ascontiguousarray(xt, dtype=np.float32)
        total = np.zeros((len(x32), len(model.classes_)))
        for grown, tree in enumerate(model.estimators_, start=1):
            total += tree.predict_proba(x32)
            if grown in keep:
                yield grown, model.classes_, total / grown
    elif isinstance(model, HistGradientBoostingClassifier):
        for step, proba in enumerate(model.staged_predict_proba(xt), start=1):
            if step in keep:
                yield step, model.classes_, proba
    else:
        yield from boosting_stages(model, xt, keep)


def boosting_stages(model: Any, xt: Any, keep: set[int]):
    """LightGBM's probabilities after each kept round, from raw scores summed round range by
    round range: one pass over the trees in all, not one prediction per kept step."""
    raw, done = 0.0, 0
    for step in sorted(keep):
        raw = raw + model.predict(
            xt, raw_score=True, start_iteration=done, num_iteration=step - done
        )
        done = step
        yield step, model.classes_, probabilities_of(np.asarray(raw))


def probabilities_of(raw: np.ndarray) -> np.ndarray:
    """The binary (sigmoid) or multiclass (softmax) probabilities of summed raw scores."""
    if raw.ndim == 1:
        positive = 1.0 / (1.0 + np.exp(-raw))
        return np.column_stack([1.0 - positive, positive])
    shifted = np.exp(raw - raw.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _epoch_stages(fitted: Pipeline, train: tuple, x: pd.DataFrame, keep: set[int]):
    stepper = clone(fitted).set_params(model__max_iter=1, model__warm_start=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for epoch in range(1, max(keep) + 1):
            stepper.fit(*train)
            if epoch in keep:
                yield epoch, stepper.classes_, stepper.predict_proba(x)


def example_rows(frame: pd.DataFrame, kinds: dict[str, str]) -> pd.DataFrame:
    """Feature rows as a client sends them (the model's input example): numbers as floats
    (booleans as 1.0/0.0, as the signature's `double` takes them), categories as strings,
    None where a value is missing."""
    prepared = prepare_features(frame, kinds)
    return prepared.astype(object).where(prepared.notna(), None)

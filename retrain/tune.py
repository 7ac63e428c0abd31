"""Tune: an Optuna study over the training rows, each trial a nested MLflow run, then the best
model refit, scored on the holdout, logged and registered as the `challenger`."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version

import numpy as np
import optuna
import pandas as pd
from joblib import Parallel, delayed

from retrain import store, tracking
from retrain.errors import BadInput, StageFailed
from retrain.modeling import (
    FAMILIES,
    build_model,
    fold_splits,
    holdout_mask,
    score_fold,
    score_proba,
    suggest_params,
)
from retrain.settings import Settings
from retrain.store import DatasetTables
from retrain.validation import ROW_KEYS


@dataclass(frozen=True)
class TuneConfig:
    trials: int = 20
    families: tuple[str, ...] = ("random_forest",)
    objective: str = "auroc"
    seed: int = 42
    n_folds: int = 5
    holdout_share: float = 0.2
    parallel_folds: int = field(default_factory=lambda: min(5, os.cpu_count() or 1))


@dataclass(frozen=True)
class Dataset:
    """Training and holdout rows of the current cleaned data, split by row hash."""

    train: pd.DataFrame
    holdout: pd.DataFrame
    features: list[str]
    target: str

    @property
    def classes(self) -> np.ndarray:
        return np.unique(self.train[self.target].to_numpy())

    def xy(self, part: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return part[self.features].to_numpy(dtype=float), part[self.target].to_numpy()


def split_dataset(cleaned: pd.DataFrame, target: str, share: float) -> Dataset:
    """Training rows and holdout rows; refuses data too small or with a single class."""
    if target not in cleaned.columns:
        raise StageFailed(f"no label column {target!r} in the cleaned data; set RETRAIN_TARGET")
    features = [c for c in cleaned.columns if c != target and c not in ROW_KEYS]
    mask = holdout_mask(cleaned["row_hash"], share)
    data = Dataset(cleaned[~mask], cleaned[mask], features, target)
    if data.train[target].nunique() < 2 or len(data.holdout) == 0:
        raise StageFailed(
            f"not enough cleaned data to tune ({len(cleaned)} rows); ingest and "
            "clean more data first"
        )
    return data


TrialLogger = Callable[[int, dict, dict[str, float]], None]


def run_study(data: Dataset, config: TuneConfig, log_trial: TrialLogger) -> optuna.Study:
    """Maximise the cross-validated objective; each fold is one fit, folds run in parallel."""
    x, y = data.xy(data.train)
    splits = fold_splits(y, config.n_folds, config.seed)
    classes = data.classes
    sampler = optuna.samplers.TPESampler(seed=config.seed)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    with Parallel(n_jobs=config.parallel_folds, backend="loky") as parallel:

        def objective(trial: optuna.Trial) -> float:
            family = trial.suggest_categorical("family", list(config.families))
            params = suggest_params(trial, family)
            model = build_model(family, params, config.seed)
            scores = parallel(
                delayed(score_fold)(model, x, y, tr, te, classes) for tr, te in splits
            )
            metrics = _summarise(scores)
            trial.set_user_attr("mean_auroc", metrics["mean_auroc"])
            trial.set_user_attr("cpu_seconds", sum(score.cpu_seconds for score in scores))
            log_trial(trial.number, {"family": family, **params}, metrics)
            return metrics[f"mean_{config.objective}"]

        study.optimize(objective, n_trials=config.trials)
    return study


def _summarise(scores: list) -> dict[str, float]:
    aurocs = np.array([s.auroc for s in scores])
    accs = np.array([s.accuracy for s in scores])
    return {
        "mean_auroc": float(aurocs.mean()),
        "mean_accuracy": float(accs.mean()),
        "std_auroc": float(aurocs.std()),
        "std_accuracy": float(accs.std()),
        "min_auroc": float(aurocs.min()),
        "max_auroc": float(aurocs.max()),
    }


@dataclass(frozen=True)
class Refit:
    model: object
    params: dict
    family: str
    test_auroc: float
    test_accuracy: float


def refit_best(data: Dataset, study: optuna.Study, seed: int) -> Refit:
    """Fit the best trial's model on all training rows and score it on the holdout."""
    best = dict(study.best_params)
    family = best.pop("family")
    features, target = data.features, data.target
    model = build_model(family, best, seed).fit(data.train[features], data.train[target])
    y_test = data.holdout[target].to_numpy()
    proba = model.predict_proba(data.holdout[features])
    test_auroc, test_accuracy = score_proba(model, y_test, proba, data.classes)
    return Refit(model, best, family, test_auroc, test_accuracy)


def code_version() -> str:
    return f"retrain=={version('retrain')}"


def check_config(config: TuneConfig) -> None:
    unknown = [f for f in config.families if f not in FAMILIES]
    if unknown or config.objective not in ("auroc", "accuracy") or config.trials < 1:
        raise BadInput(
            f"bad tuning settings: families {list(config.families)} (known: "
            f"{', '.join(FAMILIES)}), objective {config.objective!r} (auroc or "
            f"accuracy), trials {config.trials} (>= 1)"
        )


@dataclass(frozen=True)
class TuneReport:
    """What a tuning run produced."""

    parent_run_id: str
    version: str
    trials: int
    best_cv: float
    test_auroc: float
    test_accuracy: float
    family: str
    params: dict
    search_seconds: float
    fit_cpu_seconds: float

    def describe(self) -> str:
        return (
            f"tuned {self.trials} trials: best CV AUROC {self.best_cv:.4f} ({self.family}), "
            f"holdout AUROC {self.test_auroc:.4f}; registered version {self.version} "
            "as challenger"
        )


def tune_and_register(
    engine,
    tables: DatasetTables,
    client,
    settings: Settings,
    config: TuneConfig,
    tags: dict[str, str] | None = None,
) -> TuneReport:
    """The whole stage: read cleaned rows, study under one parent run, refit, log, register."""
    check_config(config)
    with store.reporting_errors(engine), engine.connect() as conn:
        cleaned = store.read_cleaned(conn, tables)
    data = split_dataset(cleaned, settings.target, config.holdout_share)
    experiment_id = tracking.ensure_experiment(client, settings.experiment)
    parent = tracking.start_parent_run(
        client, experiment_id, "tune", {"retrain.stage": "tune", **(tags or {})}
    )

    def log_trial(number: int, params: dict, metrics: dict[str, float]) -> None:
        tracking.log_trial(client, experiment_id, parent, number, params, metrics)

    started = time.perf_counter()
    study = run_study(data, config, log_trial)
    search_seconds = time.perf_counter() - started
    fit_cpu = sum(t.user_attrs.get("cpu_seconds", 0.0) for t in study.trials)
    refit = refit_best(data, study, config.seed)
    best_cv = float(study.best_trial.user_attrs["mean_auroc"])
    tracking.log_parent_summary(
        client,
        parent,
        {"family": refit.family, **refit.params},
        {
            "best_cv_auroc": best_cv,
            "test_auroc": refit.test_auroc,
            "test_accuracy": refit.test_accuracy,
        },
    )
    example = data.train[data.features].head(5)
    logged = tracking.log_model(settings.tracking_uri, parent, refit.model, example)
    tracking.log_training_data(
        settings.tracking_uri, parent, {"training": data.train, "holdout": data.holdout}
    )
    batches = ",".join(sorted(cleaned["batch_id"].unique()))
    version = tracking.register_challenger(
        client,
        settings.model_name,
        logged,
        {"batch_ids": batches[:5000], "code_version": code_version(), "family": refit.family},
    )
    client.set_terminated(parent)
    return TuneReport(
        parent,
        version,
        len(study.trials),
        best_cv,
        refit.test_auroc,
        refit.test_accuracy,
        refit.family,
        refit.params,
        search_seconds,
        fit_cpu,
    )

"""Tune: an Optuna study over the training rows, each trial a nested MLflow run, then the best
model refit, scored on the holdout, logged and registered as the `challenger`."""

from __future__ import annotations

import contextvars
import functools
import os
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib.metadata import version
from typing import Any

import numpy as np
import optuna
import pandas as pd
from joblib import Parallel, delayed
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from retrain.config.settings import FAMILIES, Settings
from retrain.data.features import compact_features
from retrain.data.split import (
    AUTO_WINDOWS,
    HOLDOUT_SHARE,
    Dataset,
    HoldoutChoice,
    TrainWindow,
    align_proba,
    as_times,
    dataset_of,
    holdout_choice_of,
    newest_first,
    train_window_of,
    window_mask,
)
from retrain.data.training_rows import read_training_rows
from retrain.errors import BadInput, StageFailed
from retrain.io import store, tracking
from retrain.io.store import DatasetTables
from retrain.io.trial_claims import STOPPED_ATTR, TrialClaims
from retrain.model import logged_model
from retrain.model.aliases import aliases_for
from retrain.training import pictures
from retrain.training.calibration import (
    brier,
    calibrate,
    calibrator,
    expected_calibration_error,
    held_back_rows,
)
from retrain.training.families import (
    auroc,
    build_model,
    enough_to_judge,
    example_rows,
    fit_model,
    fold_splits,
    forward_splits,
    is_lightgbm,
    learning_curve,
    predict_aligned,
    prepare_features,
    restrict_to_window,
    score_fold,
    score_proba,
    suggest_params,
)
from retrain.training.leakage import rows_to_look_at, suspected_leaks
from retrain.training.notes import tuning_note, version_note
from retrain.training.tomorrow import ChampionCheck, expected_auroc, rows_after, trained_through


@dataclass(frozen=True)
class TuneConfig:
    trials: int = 20
    families: tuple[str, ...] = ("random_forest",)
    objective: str = "auroc"
    seed: int = 42
    n_folds: int = 5
    holdout_share: float = HOLDOUT_SHARE
    workers: int = 1
    parallel_folds: int = field(default_factory=lambda: os.cpu_count() or 1)
    budget: float | None = None  # seconds the whole tune may take, refit included; trials cap
    sample_rows: int | None = None  # above this many training rows, tune on a subsample
    prune: bool = True  # stop trials that are behind after a round of folds
    heartbeat: int = 30  # seconds between a shared study's trial heartbeats
    holdout: HoldoutChoice | None = None  # None: the hash holdout of `holdout_share`
    windows: tuple[float | None, ...] = ()  # training windows (days) a trial picks among
    refit_holdout: bool = False  # register a model refit on the holdout rows too

    @property
    def forward(self) -> bool:
        """Cross-validation forward in time: the data has a time holdout."""
        return self.holdout is not None and self.holdout.kind == "time"

    def as_params(self) -> dict[str, str]:
        """The tuning settings as the parent run's params (what a night was asked to do)."""
        return {
            "trials": str(self.trials), "families": ",".join(self.families),
            "objective": self.objective, "seed": str(self.seed), "n_folds": str(self.n_folds),
            "holdout_share": str(self.holdout_share), "workers": str(self.workers),
            "budget_seconds": str(self.budget or ""), "sample_rows": str(self.sample_rows or ""),
            "prune": str(self.prune).lower(), "heartbeat_seconds": str(self.heartbeat),
            "holdout": self.holdout.kind if self.holdout else "hash",
            "cv": "forward in time" if self.forward else "stratified shuffled folds",
            "window_candidates": ",".join(window_name(w) for w in self.windows),
            "refit": "window+holdout" if self.refit_holdout else "training",
        }  # fmt: skip


def window_name(days: float | None) -> str:
    return "all" if days is None else f"{days:g}"


def tune_config_of(settings: Settings, families: tuple[str, ...]) -> TuneConfig:
    """The tuning config from the settings (built at the flow's edge), with the families
    resolved to those that load here."""
    holdout = holdout_choice_of(settings, settings.load_schema())
    windows = AUTO_WINDOWS if train_window_of(settings).auto else ()
    if windows and holdout.kind != "time":
        raise StageFailed(
            "RETRAIN_TRAIN_WINDOW_DAYS=auto judges windows forward in time, so it needs a time "
            "column (the schema's timestamps or RETRAIN_TIME_COLUMN) and RETRAIN_HOLDOUT time "
            "or auto; or give the window in days"
        )
    return TuneConfig(
        trials=settings.trials, families=families, objective=settings.objective,
        seed=settings.seed, workers=settings.workers, budget=settings.tune_budget,
        sample_rows=settings.tune_sample_rows, prune=settings.tune_prune,
        heartbeat=settings.tune_heartbeat,
        holdout=holdout, windows=windows,
        refit_holdout=settings.refit == "window+holdout"
        or (settings.refit == "auto" and holdout.kind == "time"),
    )  # fmt: skip


TrialLogger = Callable[[int, dict, dict[str, float]], None]


def seconds_left(deadline: float | None) -> float | None:
    """Seconds until a wall-clock deadline (None: no deadline), never below zero."""
    return None if deadline is None else max(0.0, deadline - time.time())


CLAIM_POLL_SECONDS = 1.0  # how often a worker with nothing to claim looks again
FOLDS_PER_ROUND = 2  # folds fitted between pruning checks: fixed, so results never depend on cores


def fold_rounds(n_folds: int) -> list[range]:
    """The folds in rounds: after each round but the last the trial reports its mean score so
    far, and the pruner may stop it."""
    return [range(i, min(i + FOLDS_PER_ROUND, n_folds)) for i in range(0, n_folds, FOLDS_PER_ROUND)]


def training_matrix(data: Dataset, rows: pd.DataFrame | None = None) -> pd.DataFrame:
    """The training rows' features (or those of `rows`), prepared and in compact dtypes."""
    return compact_features(prepare_features(data.train if rows is None else rows, data.kinds))


def tuning_rows(data: Dataset, config: TuneConfig) -> tuple[pd.DataFrame, np.ndarray]:
    """The rows the study cross-validates: every training row, or above `sample_rows` a
    subsample (the best trial is still refit on every training row): for data judged forward
    in time the newest rows, else a stratified, seeded sample."""
    x, y = training_matrix(data), data.labels(data.train)
    if not config.sample_rows or len(y) <= config.sample_rows:
        return x, y
    rows = np.arange(len(y))
    if config.forward:
        keep = newest_first(row_times(data.train, config))[: config.sample_rows]
        return x.iloc[np.sort(keep)], y[np.sort(keep)]
    try:
        keep, _ = train_test_split(
            rows, train_size=config.sample_rows, stratify=y, random_state=config.seed
        )
    except ValueError:  # a class too rare to stratify: a plain seeded sample
        keep = np.random.default_rng(config.seed).choice(rows, config.sample_rows, replace=False)
    keep = np.sort(keep)
    return x.iloc[keep], y[keep]


def row_times(rows: pd.DataFrame, config: TuneConfig) -> pd.Series:
    return as_times(rows[config.holdout.time_column]).reset_index(drop=True)


def row_seconds(times: pd.Series) -> np.ndarray:
    """Unix seconds of each row; a row without a time is older than any window."""
    seconds = times.to_numpy(dtype="datetime64[ns]").astype("int64") / 1e9
    return np.where(times.isna().to_numpy(), -np.inf, seconds)


@dataclass
class Folds:
    """The study's folds: stratified and shuffled, or forward in time; with windows, each
    window's folds train only on rows within it (built once per window, on first use)."""

    splits: list
    seconds: np.ndarray | None = None
    y: np.ndarray | None = None
    by_window: dict = field(default_factory=dict)

    def within(self, days: float | None) -> list:
        if days is None or self.seconds is None:
            return self.splits
        if days not in self.by_window:
            self.by_window[days] = [
                restrict_to_window(s, self.seconds, days, self.y) for s in self.splits
            ]
        return self.by_window[days]


def study_folds(data: Dataset, config: TuneConfig, x: pd.DataFrame, y: np.ndarray) -> Folds:
    """Forward in time for a time holdout; stratified and shuffled otherwise, or when no
    forward fold trains on two classes (a table whose oldest rows hold one class)."""
    if config.forward:
        times = row_times(data.train.loc[x.index], config)
        seconds = row_seconds(times)
        splits = forward_splits(newest_first(times), y, config.n_folds, seconds)
        if splits:
            return Folds(splits, seconds, y)
    return Folds(fold_splits(y, folds_for(y, config.n_folds), config.seed))


def suggest_window(trial: optuna.Trial, config: TuneConfig) -> float | None:
    """A trial's training window in days (None: all history) when the study searches them."""
    if not config.windows:
        return None
    names = [window_name(w) for w in config.windows]
    chosen = trial.suggest_categorical("window_days", names)
    return None if chosen == "all" else float(chosen)


def make_pruner(config: TuneConfig) -> optuna.pruners.BasePruner:
    """Median pruning after the first rounds of folds (none when `prune` is off)."""
    if not config.prune:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0)


def run_trials(
    data: Dataset,
    config: TuneConfig,
    study: optuna.Study,
    n_trials: int,
    log_trial: TrialLogger,
    deadline: float | None = None,
    claims: TrialClaims | None = None,
) -> optuna.Study:
    """Maximise the cross-validated objective for `n_trials` trials of `study` (with `claims`,
    until the shared study's trials are all claimed). The folds of a trial are fitted in
    parallel processes, each once, both metrics from one predict_proba, in rounds between
    which the pruner may stop a trial that is behind. A trial is logged by a background
    thread, in order, while the next trial fits."""
    x, y = tuning_rows(data, config)
    folds = study_folds(data, config, x, y)
    splits = folds.splits
    fold_rows = float(np.mean([len(train) for train, _ in splits]))
    refit_scale = len(data.train) / fold_rows
    logged: list[Future] = []
    with (
        Parallel(n_jobs=min(config.parallel_folds, config.n_folds), backend="loky") as parallel,
        ThreadPoolExecutor(1, thread_name_prefix="trial-log") as logger,
    ):

        def objective(trial: optuna.Trial) -> float:
            if claims:
                claims.start(trial)  # the trial exists: the next worker may claim its own
            family = trial.suggest_categorical("family", list(config.families))
            params = suggest_params(trial, family)
            days = suggest_window(trial, config)
            trial.set_user_attr("window_days", days)
            model = build_model(family, params, data.kinds, config.seed)
            score = functools.partial(score_fold, model, x, y, kinds=data.kinds,
                                      classes=data.classes, positive=data.positive)  # fmt: skip
            scores, metrics = score_in_rounds(parallel, score, folds.within(days), trial,
                                              config.objective,
                                              lambda: out_of_time(study, deadline))  # fmt: skip
            pruned = len(scores) < len(splits)
            note_trial(trial, family, params, metrics["mean_auroc"], scores, refit_scale)
            metrics |= {"folds_scored": len(scores), "pruned": float(pruned)}
            # in the caller's context: the orchestrator's settings (its API URL) hold there too
            context = contextvars.copy_context()
            shown = {"family": family, **params}
            if config.windows:
                shown["window_days"] = window_name(days)
            logged.append(logger.submit(context.run, log_trial, trial.number, shown, metrics))
            if pruned:
                raise optuna.TrialPruned()
            return metrics[f"mean_{config.objective}"]

        if claims:
            run_claimed_trials(study, objective, claims, deadline)
        elif (timeout := seconds_left(deadline)) is None or timeout > 0:
            stop = [stop_before_overrun(deadline)] if deadline else []
            study.optimize(objective, n_trials=n_trials, timeout=timeout, callbacks=stop)
    for future in logged:
        future.result()
    return study


def score_in_rounds(
    parallel: Parallel,
    score: Callable[..., Any],
    splits: list,
    trial: optuna.Trial,
    objective: str,
    out_of_time: Callable[[], bool],
) -> tuple[list, dict[str, float]]:
    """A trial's folds, fitted in parallel in rounds; after each round but the last the
    pruner, or the budget, may stop a trial that is behind. (scores, mean metrics so far)"""
    scores: list = []
    for folds in fold_rounds(len(splits)):
        scores += parallel(delayed(score)(split=splits[i]) for i in folds)
        metrics = _summarise(scores)
        if len(scores) < len(splits):
            trial.report(metrics[f"mean_{objective}"], step=len(scores))
            if trial.should_prune() or out_of_time():
                break
    return scores, metrics


def note_trial(
    trial: optuna.Trial, family: str, params: dict, mean_auroc: float, scores: list, scale: float
) -> None:
    """What the refit and the budget read back from a trial: its family and parameters, its
    mean AUROC, its fold CPU seconds, and the refit's seconds estimated from them: a fold's
    CPU seconds times `scale` (all training rows over a fold's rows). Not divided by the
    cores the refit threads on: measured at 10^6 rows on 2 cores, LightGBM's refit took 98 s
    where that division said 41 (threads gain less than their number, and more rows stop
    boosting later), so the cores are the estimate's margin."""
    cpu_seconds = sum(s.cpu_seconds for s in scores)
    attributes = {
        "family": family, "params": params, "mean_auroc": mean_auroc,
        "cpu_seconds": cpu_seconds, "refit_seconds": cpu_seconds / len(scores) * scale,
    }  # fmt: skip
    for key, value in attributes.items():
        trial.set_user_attr(key, value)


def run_claimed_trials(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], float],
    claims: TrialClaims,
    deadline: float | None,
) -> None:
    """One trial per claim until the shared study needs no more (or the budget is spent)."""
    try:
        while claims.take(study, lambda: would_overrun(study, deadline)):
            try:
                study.optimize(objective, n_trials=1)
            finally:
                claims.release()
    finally:
        claims.close()


def finished_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return study.get_trials(deepcopy=False, states=states)


REGISTER_SECONDS = 15.0  # logging, pictures and registering the refit model, kept back


def refit_reserve(study: optuna.Study) -> float:
    """Seconds the budget keeps for what follows the search: refitting the best trial so far
    on every training row (its fold CPU seconds scaled to all rows and cores) and registering
    it. So `budget` bounds the whole tune, as FLAML's `time_budget` does, not the search."""
    complete = [t for t in finished_trials(study) if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        return 0.0
    best = max(complete, key=lambda t: t.value)
    return best.user_attrs.get("refit_seconds", 0.0) + REGISTER_SECONDS


def out_of_time(study: optuna.Study, deadline: float | None) -> bool:
    """Past the budget (less the refit's reserve) with a completed trial to fall back on:
    the running trial stops after its current round of folds (counted as pruned), so a long
    trial cannot overrun the budget by more than a round."""
    if deadline is None or time.time() < deadline - refit_reserve(study):
        return False
    return any(t.state == optuna.trial.TrialState.COMPLETE for t in finished_trials(study))


def stop_before_overrun(
    deadline: float,
) -> Callable[[optuna.Study, optuna.trial.FrozenTrial], None]:
    """An Optuna callback: no new trial starts when the time left is shorter than the longest
    trial so far (Optuna's `timeout` only checks before a trial, and lets it run to the end)."""

    def stop(study: optuna.Study, _trial: optuna.trial.FrozenTrial) -> None:
        if would_overrun(study, deadline):
            study.stop()

    return stop


def would_overrun(study: optuna.Study, deadline: float | None) -> bool:
    """The budget is spent, or the time left is shorter than the longest trial so far plus
    the refit's reserve."""
    if deadline is None:
        return False
    left = seconds_left(deadline)
    durations = [t.duration.total_seconds() for t in finished_trials(study) if t.duration]
    return left == 0 or (bool(durations) and left < max(durations) + refit_reserve(study))


def _summarise(scores: list) -> dict[str, float]:
    """Fold means and spread; a fold whose AUROC is undefined (it holds a single class) is
    left out of the AUROC figures rather than failing the trial."""
    aurocs = np.array([s.auroc for s in scores])
    accs = np.array([s.accuracy for s in scores])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return {
            "mean_auroc": float(np.nanmean(aurocs)),
            "mean_accuracy": float(accs.mean()),
            "std_auroc": float(np.nanstd(aurocs)),
            "std_accuracy": float(accs.std()),
            "min_auroc": float(np.nanmin(aurocs)),
            "max_auroc": float(np.nanmax(aurocs)),
        }


def folds_for(y: np.ndarray, n_folds: int) -> int:
    """Fewer folds when a binary target has fewer positives than folds, so every fold can
    score an AUROC (at least 2)."""
    counts = np.unique(y, return_counts=True)[1]
    return max(2, min(n_folds, int(counts.min()))) if len(counts) == 2 else n_folds


@dataclass(frozen=True)
class Refit:
    model: object  # the Pipeline, calibrated: what is logged and served
    params: dict
    family: str
    test_auroc: float
    test_accuracy: float
    holdout_proba: np.ndarray
    train: pd.DataFrame  # the rows the Pipeline was fit on (of the chosen window)
    held_back: pd.DataFrame  # the training rows held back to calibrate on
    pipeline: Pipeline  # the fitted Pipeline before calibration
    calibration: str = "none"  # sigmoid, isotonic or none
    test_brier: float = float("nan")
    test_ece: float = float("nan")
    test_auroc_uncalibrated: float = float("nan")  # the Pipeline's, as the learning curve ends


def compare_windows(
    data: Dataset, study: optuna.Study, config: TuneConfig, deadline: float | None = None
) -> dict:
    """The best trial's model cross-validated forward on every candidate window, everything
    else fixed: {days: mean AUROC}. Among a few trials a window's effect is small beside the
    model's, so the best trial's window is often an accident of the sampler (measured on
    bench/drift_stream.py: the study kept "all history" where 1 day scored higher and served
    0.03 better); this compares the windows alike. The best trial's own window is not refit,
    and no window starts past the `deadline` (the budget's end)."""
    best = study.best_trial
    x, y = tuning_rows(data, config)
    folds = study_folds(data, config, x, y)
    model = build_model(best.user_attrs["family"], best.user_attrs["params"], data.kinds,
                        config.seed)  # fmt: skip
    score = functools.partial(score_fold, model, x, y, kinds=data.kinds, classes=data.classes,
                              positive=data.positive)  # fmt: skip
    own = best.user_attrs.get("window_days")
    scores = {own: float(best.user_attrs["mean_auroc"])}
    with Parallel(n_jobs=min(config.parallel_folds, config.n_folds), backend="loky") as parallel:
        for days in config.windows:
            if days not in scores and seconds_left(deadline) != 0:
                fits = parallel(delayed(score)(split=split) for split in folds.within(days))
                scores[days] = _summarise(fits)["mean_auroc"]
    return scores


def best_window(scores: dict) -> float | None:
    """The window of the highest score; a tie goes to the shorter window (cheaper to refit,
    and the one closer to tomorrow)."""
    return max(scores, key=lambda days: (scores[days], -(days or float("inf"))))


def refit_best(
    data: Dataset,
    study: optuna.Study,
    seed: int,
    time_column: str | None = None,
    days: float | None = None,
) -> Refit:
    """Fit the best trial's Pipeline on the training rows (those of the last `days`, when the
    study chose windows along `time_column`) but a share held back to calibrate its
    probabilities on (the newest, with a time column), and score it on the holdout (whose
    labels may include one the training rows lack: its column is zero)."""
    best = study.best_trial
    family, params = best.user_attrs["family"], dict(best.user_attrs["params"])
    train = data.train
    if days is not None and time_column:
        train = train[window_mask(train[time_column], TrainWindow(days))]
    order = newest_first(as_times(train[time_column])) if time_column else None
    held = held_back_rows(train[data.target].to_numpy(), order, seed)
    fitting, held_back = train[~held], train[held]
    pipeline = fit_pipeline(data, family, params, fitting, seed)
    model, method = calibrate_on(data, pipeline, held_back, seed)
    classes, y_test = data.known_classes, data.labels(data.holdout)
    x_test = prepare_features(data.holdout, data.kinds)
    proba = predict_aligned(model, x_test, classes)
    test_auroc, test_accuracy = score_proba(classes, y_test, proba, classes, data.positive)
    raw = predict_aligned(pipeline, x_test, classes)
    return Refit(
        model, params, family, test_auroc, test_accuracy, proba, fitting, held_back, pipeline,
        method, brier(y_test, proba, classes, data.positive),
        expected_calibration_error(y_test, proba, classes, data.positive),
        score_proba(classes, y_test, raw, classes, data.positive)[0],
    )  # fmt: skip


def fit_pipeline(
    data: Dataset, family: str, params: dict, rows: pd.DataFrame, seed: int
) -> Pipeline:
    """The family's Pipeline fit on `rows` with every core, then set to serve on one."""
    x = training_matrix(data, rows)
    model = all_cores(build_model(family, params, data.kinds, seed))
    model = fit_model(model, x, rows[data.target].to_numpy(), data.kinds)
    if uses_threads(model):
        model[-1].set_params(n_jobs=1)  # served one request at a time: no thread pool per call
    return model


def calibrate_on(
    data: Dataset, pipeline: Pipeline, rows: pd.DataFrame, seed: int, method: str | None = None
) -> tuple[object, str]:
    """The Pipeline calibrated on held-back `rows` (the method chosen there, unless given)."""
    x, y = prepare_features(rows, data.kinds), rows[data.target].to_numpy()
    if method is None:
        return calibrate(pipeline, x, y, seed)
    if method == "none":
        return pipeline, method
    return calibrator(pipeline, method).fit(x, y), method


def refit_with_holdout(data: Dataset, refit: Refit, seed: int) -> object:
    """After the holdout judged `refit`: the same Pipeline fit on its rows and the holdout
    rows, the newest (what a drifting table's next rows resemble most), calibrated the same
    way on the same held-back rows."""
    rows = pd.concat([refit.train, data.holdout])
    pipeline = fit_pipeline(data, refit.family, refit.params, rows, seed)
    return calibrate_on(data, pipeline, refit.held_back, seed, refit.calibration)[0]


def uses_threads(model: Pipeline) -> bool:
    """The forest and LightGBM take `n_jobs`; HGB threads by itself, logreg fits one core."""
    return isinstance(model[-1], RandomForestClassifier) or is_lightgbm(model)


@contextmanager
def all_cores_for_a_while(model: Pipeline) -> Iterator[Pipeline]:
    """The fitted model on every core inside the block, then back to its own `n_jobs`."""
    if not uses_threads(model):
        yield model
        return
    before = model[-1].get_params()["n_jobs"]
    try:
        yield all_cores(model)
    finally:
        model.set_params(model__n_jobs=before)


def all_cores(model: Pipeline) -> Pipeline:
    """The refit on every training row uses every core (the folds ran one core each)."""
    if uses_threads(model):
        model.set_params(model__n_jobs=os.cpu_count() or 1)
    return model


def code_version() -> str:
    return f"retrain=={version('retrain')}"


def check_config(config: TuneConfig, storage: str | None) -> None:
    """Refuse settings the study cannot run with, saying which and what is allowed."""
    unknown = [f for f in config.families if f not in FAMILIES]
    if unknown or config.objective not in ("auroc", "accuracy") or config.trials < 1:
        raise BadInput(
            f"bad tuning settings: families {list(config.families)} (known: "
            f"{', '.join(FAMILIES)}), objective {config.objective!r} (auroc or "
            f"accuracy), trials {config.trials} (>= 1)"
        )
    if config.workers < 1 or config.workers > config.trials:
        raise BadInput(f"--workers must be between 1 and --trials ({config.trials})")
    if config.workers > 1 and not (storage or "").startswith(("mysql", "mariadb")):
        raise BadInput(
            f"--workers {config.workers} needs a shared Optuna storage on a MySQL/MariaDB "
            "server: set RETRAIN_DB_URL (or RETRAIN_OPTUNA_STORAGE) to a mysql+pymysql:// URL; "
            "SQLite allows one worker"
        )


@dataclass(frozen=True)
class TuningRun:
    """A study in progress: its data, its parent MLflow run and where Optuna keeps it
    (`storage` None: in memory, one worker). `data` is None in the copy sent to a worker in
    another process, which reads the same batches from the store itself (`with_rows`)."""

    data: Dataset | None
    experiment_id: str
    parent_run_id: str
    study_name: str
    storage: str | None
    batch_ids: str
    deadline: float | None = None  # wall clock (time.time()), shared by every worker
    source: dict[str, str] = field(default_factory=dict)  # where the rows came from (SQL)
    tags: dict[str, str] = field(default_factory=dict)  # of the orchestrator: also on the version
    leaks: tuple[str, ...] = ()  # features that look like the label in disguise

    def without_rows(self) -> TuningRun:
        return replace(self, data=None)

    def lineage(self, rule: str) -> dict[str, dict[str, str]]:
        """Input tags of the training and holdout parts: the SQL source and the split."""
        return {
            "training": {**self.source, "retrain.split": f"not ({rule})"},
            "holdout": {**self.source, "retrain.split": rule},
        }


def start_tuning(
    engine: store.Engine,
    tables: DatasetTables,
    client: tracking.MlflowClient,
    settings: Settings,
    config: TuneConfig,
    tags: dict[str, str] | None = None,
) -> TuningRun:
    """Read the cleaned rows, open the parent run and create the (shared) study."""
    storage = settings.optuna_storage_url if config.workers > 1 else None
    check_config(config, storage)
    deadline = time.time() + config.budget if config.budget else None  # reading rows counts
    cleaned, window = read_training_rows(engine, tables, settings)
    data = dataset_of(cleaned, settings.load_schema(), config.holdout_share, config.holdout)
    experiment_id = tracking.ensure_experiment(client, settings.experiment, settings.artifact_root)
    name = f"{settings.dataset}-{datetime.now(UTC):%Y-%m-%d-%H%M}"
    run_tags = {"retrain.stage": "tune", **tracking.source_tags(code_version()), **(tags or {})}
    parent = tracking.start_parent_run(client, experiment_id, name, run_tags)
    tracking.log_params(
        client, parent,
        {**config.as_params(), "holdout_rule": data.holdout_rule, "train_window": window},
    )  # fmt: skip
    study_name = f"{settings.dataset}-tune-{parent}"
    tracking.tag_run(client, parent, "optuna.study_name", study_name)
    if storage:
        optuna.create_study(
            study_name=study_name,
            storage=study_storage(storage, config.heartbeat),
            direction="maximize",
        )
    batches = ",".join(sorted(cleaned["batch_id"].unique()))
    source = store.describe_source(engine, tables) | {"retrain.batches": batches[:500]}
    leaks = tuple(leak.describe() for leak in leaks_of(data, settings.seed))
    if leaks:
        tracking.tag_run(client, parent, "retrain.leakage_suspects", "; ".join(leaks)[:5000])
    run = TuningRun(
        data,
        experiment_id,
        parent,
        study_name,
        storage,
        batches,
        deadline,
        source,
        tags or {},
        leaks,
    )
    log_lineage(run, settings, config)  # before the search: its cost is inside the budget
    return run


def leaks_of(data: Dataset, seed: int) -> list:
    """The training rows' features that look like the label in disguise (named, not dropped);
    only the rows the check looks at are prepared."""
    rows = rows_to_look_at(data.train, seed)
    prepared = prepare_features(rows, data.kinds).assign(**{data.target: data.labels(rows)})
    return suspected_leaks(prepared, data.kinds, data.target, seed)


def log_lineage(run: TuningRun, settings: Settings, config: TuneConfig) -> None:
    """The training and holdout rows as the parent run's dataset inputs (and snapshots)."""
    parts = {"training": run.data.train, "holdout": run.data.holdout}
    lineage = run.lineage(run.data.holdout_rule)
    tracking.log_training_data(
        settings.tracking_uri, run.parent_run_id, parts, settings.snapshot_max_bytes, lineage
    )


def with_rows(
    run: TuningRun,
    engine: store.Engine,
    tables: DatasetTables,
    settings: Settings,
    config: TuneConfig,
) -> TuningRun:
    """The run with its rows: read once per worker, the study's batches only, so a worker on
    another machine tunes on exactly the rows the study started with."""
    cleaned = read_training_rows(engine, tables, settings, run.batch_ids.split(","))[0]
    data = dataset_of(cleaned, settings.load_schema(), config.holdout_share, config.holdout)
    return replace(run, data=data)


def study_storage(url: str, heartbeat: int) -> optuna.storages.RDBStorage:
    """The shared study's storage. Each running trial records a heartbeat every `heartbeat`
    seconds; a trial silent for two intervals (its worker died) is failed, and a copy with
    its parameters is queued for the next worker (at most twice per trial)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url,
            heartbeat_interval=heartbeat,
            grace_period=2 * heartbeat,
            heartbeat_stale_trial_callback=optuna.storages.RetryFailedTrialCallback(max_retry=2),
        )


def stop_study(run: TuningRun, status: str) -> None:
    """Mark the shared study stopped: its workers claim no further trial (see TrialClaims)."""
    study = optuna.load_study(study_name=run.study_name, storage=run.storage)
    study.set_user_attr(STOPPED_ATTR, status)


def run_worker(
    run: TuningRun,
    client: tracking.MlflowClient,
    config: TuneConfig,
    worker: int = 0,
    on_trial: TrialLogger | None = None,
) -> optuna.Study:
    """One trial worker, each trial logged as a nested run of the parent. Alone it runs
    `trials`; on a shared study it claims trials until the study has them all, and its TPE
    treats the other workers' running trials as scored (`constant_liar`). Worker 0 samples with
    the configured seed, so one worker reproduces its best params."""
    sampler = optuna.samplers.TPESampler(seed=config.seed + worker, constant_liar=bool(run.storage))
    pruner = make_pruner(config)
    claims = None
    if run.storage:
        storage = study_storage(run.storage, config.heartbeat)
        study = optuna.load_study(
            study_name=run.study_name, storage=storage, sampler=sampler, pruner=pruner
        )
        claims = TrialClaims(run.storage, run.study_name, config.trials, CLAIM_POLL_SECONDS)
    else:
        study = optuna.create_study(
            study_name=run.study_name, direction="maximize", sampler=sampler, pruner=pruner
        )

    def log_trial(number: int, params: dict, metrics: dict[str, float]) -> None:
        tracking.log_trial(client, run.experiment_id, run.parent_run_id, number, params, metrics)
        if on_trial:
            on_trial(number, params, metrics)

    return run_trials(run.data, config, study, config.trials, log_trial, run.deadline, claims)


def run_local_workers(
    run: TuningRun, client: tracking.MlflowClient, config: TuneConfig
) -> optuna.Study:
    """All workers of this process against one study: threads that share the fit processes."""
    if config.workers == 1:
        return run_worker(run, client, config)
    with ThreadPoolExecutor(config.workers, thread_name_prefix="trial-worker") as pool:
        futures = [pool.submit(run_worker, run, client, config, w) for w in range(config.workers)]
        studies = [f.result() for f in futures]
    return studies[0]


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
    experiment_id: str = ""
    leaks: tuple[str, ...] = ()
    expected_auroc: float | None = None  # on tomorrow's rows (a time holdout only)

    def describe(self) -> str:
        leaks = (
            f"; suspected leaks (check them, then `retrain schema ignore`): {'; '.join(self.leaks)}"
            if self.leaks else ""
        )  # fmt: skip
        expected = (
            f", {self.expected_auroc:.4f} expected on tomorrow's rows (expected_auroc)"
            if self.expected_auroc is not None and self.expected_auroc != self.test_auroc
            else ""
        )
        return (
            f"tuned {self.trials} trials: best CV AUROC {self.best_cv:.4f} (best_cv_auroc, "
            f"{self.family}), holdout AUROC {self.test_auroc:.4f} (test_auroc){expected}; "
            f"registered version {self.version} as challenger{leaks}"
        )


@contextmanager
def timed(seconds: dict[str, float], name: str) -> Iterator[None]:
    """Wall seconds of the block into `seconds[name]` (the finish steps are logged as
    `finish_seconds_<name>` metrics, so the budget's refit reserve can be checked)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        seconds[name] = time.perf_counter() - started


def count_trials(study: optuna.Study) -> dict[str, int]:
    """How many trials started, completed and were pruned."""
    states = [t.state for t in study.get_trials(deepcopy=False)]
    state = optuna.trial.TrialState
    return {
        "trials_started": len(states),
        "trials_completed": states.count(state.COMPLETE),
        "trials_pruned": states.count(state.PRUNED),
    }


def finish_tuning(
    run: TuningRun,
    client: tracking.MlflowClient,
    settings: Settings,
    config: TuneConfig,
    study: optuna.Study,
    search_seconds: float,
    engine: store.Engine | None = None,
) -> TuneReport:
    """Refit the best trial, log what people read and look at, register the challenger. A
    study the budget ended early is a normal outcome; one with no completed trial fails."""
    parent = run.parent_run_id
    require_a_completed_trial(client, parent, study, config.budget)
    seconds: dict[str, float] = {}
    days = choose_window(run, client, config, study, seconds)
    with timed(seconds, "refit"):
        column = config.holdout.time_column if config.forward else None
        refit = refit_best(run.data, study, config.seed, column, days)
    best_cv = float(study.best_trial.user_attrs["mean_auroc"])
    metrics = {"best_cv_auroc": best_cv, "test_auroc": refit.test_auroc,
               "test_accuracy": refit.test_accuracy, "test_brier": refit.test_brier,
               "test_ece": refit.test_ece,
               "test_auroc_uncalibrated": refit.test_auroc_uncalibrated}  # fmt: skip
    summary = {"family": refit.family, "calibration": refit.calibration, **refit.params}
    tracking.log_parent_summary(client, parent, summary, metrics)
    with timed(seconds, "reports"):
        log_pictures(run, client, study, refit, config.objective)
    tags = {**run.tags, "batch_ids": run.batch_ids[:5000], "code_version": code_version(),
            "family": refit.family}  # fmt: skip
    served, judged = refit.model, None
    if config.refit_holdout:
        with timed(seconds, "refit_holdout"):
            served, judged = refit_with_holdout(run.data, refit, config.seed), refit.model
        tags["retrain.refit"] = "window+holdout"
        tracking.tag_run(client, parent, "retrain.refit", "window+holdout")
    expected = None
    if config.forward:
        expected, through = note_tomorrow(run, client, settings, config, refit)
        tags |= {TRAINED_THROUGH: through} if through else {}
    with timed(seconds, "register"):
        version = log_and_register(settings, client, parent, served, run.data, tags, engine, judged)
    finish = {f"finish_seconds_{k}": v for k, v in seconds.items()}
    finish["finish_seconds_reserved"] = refit_reserve(study)  # what the search kept back
    tracking.log_parent_summary(client, parent, {}, finish)
    describe_outcome(run, client, settings.model_name, best_cv, refit, version)
    trials = study.get_trials(deepcopy=False)
    fit_cpu = sum(t.user_attrs.get("cpu_seconds", 0.0) for t in trials)
    return TuneReport(
        parent, version, len(trials), best_cv, refit.test_auroc, refit.test_accuracy,
        refit.family, refit.params, search_seconds, fit_cpu, run.experiment_id, run.leaks,
        expected,
    )  # fmt: skip


def choose_window(
    run: TuningRun,
    client: tracking.MlflowClient,
    config: TuneConfig,
    study: optuna.Study,
    seconds: dict[str, float],
) -> float | None:
    """The training window the refit uses: with `auto`, the best of the candidates compared
    alike (logged as `train_window_chosen` and `window_scores`); else the best trial's."""
    if not config.windows:
        return study.best_trial.user_attrs.get("window_days")
    with timed(seconds, "windows"):
        scores = compare_windows(run.data, study, config, run.deadline)
    days = best_window(scores)
    said = ", ".join(f"{window_name(d)}: {scores[d]:.4f}" for d in config.windows if d in scores)
    params = {"train_window_chosen": window_name(days), "window_scores": said}
    tracking.log_params(client, run.parent_run_id, params)
    return days


TRAINED_THROUGH = "retrain.trained_through"  # version tag: the newest row the model was fit on


def note_tomorrow(
    run: TuningRun,
    client: tracking.MlflowClient,
    settings: Settings,
    config: TuneConfig,
    refit: Refit,
) -> tuple[float, str | None]:
    """Log `expected_auroc` (the holdout AUROC less the champion's last overstatement) with
    its basis, and the champion's check; returns it and the new version's
    `retrain.trained_through` (the newest row its served model is fit on: the holdout's too
    after a refit on it)."""
    column = config.holdout.time_column
    check = check_champion(settings, client, run.data, column)
    expected, basis = expected_auroc(refit.test_auroc, check)
    metrics = {"expected_auroc": expected}
    if check is not None:
        metrics |= {"champion_unseen_auroc": check.unseen, "champion_holdout_gap": check.gap}
    tracking.log_parent_summary(client, run.parent_run_id, {}, metrics)
    tracking.log_params(client, run.parent_run_id, {"expected_auroc_basis": basis[:500]})
    fitted = [refit.train, refit.held_back] + ([run.data.holdout] if config.refit_holdout else [])
    return expected, trained_through(pd.concat(fitted), column)


def check_champion(
    settings: Settings, client: tracking.MlflowClient, data: Dataset, time_column: str
) -> ChampionCheck | None:
    """The champion, as served, scored on today's cleaned rows newer than the newest it was
    fit on. None: no champion, one registered before versions were tagged with
    `retrain.trained_through`, too few such rows, or a champion that cannot be loaded (the
    promote stage reports that)."""
    champion = tracking.alias_version(client, settings.model_name, "champion")
    if champion is None:
        return None
    tags, logged = tracking.version_facts(client, settings.model_name, champion)
    if TRAINED_THROUGH not in tags or logged is None:
        return None
    rows = rows_after(pd.concat([data.train, data.holdout]), time_column, tags[TRAINED_THROUGH])
    y, classes = data.labels(rows), data.known_classes
    if not enough_to_judge(y, classes):
        return None
    try:
        model = logged_model.load_version(settings.tracking_uri, settings.model_name, champion)
    except Exception:  # any loader error: no check tonight; promotion names the failure
        return None
    proba = align_proba(model.predict_proba(rows[data.features]), model.classes, classes)
    unseen = auroc(y, proba, classes, data.positive)
    return ChampionCheck(champion, logged, unseen, len(rows), tags[TRAINED_THROUGH])


def require_a_completed_trial(
    client: tracking.MlflowClient, parent: str, study: optuna.Study, budget: float | None
) -> None:
    """Log the trial counts; with no completed trial the parent run fails, with the fix."""
    counts = count_trials(study)
    tracking.log_parent_summary(client, parent, {}, counts)  # the budget is a param
    if counts["trials_completed"] == 0:
        tracking.end_run(client, parent, "FAILED")
        raise StageFailed(
            f"no trial completed within the tuning budget of {budget or 0:.0f} s; raise "
            "RETRAIN_TUNE_BUDGET (--budget) or tune a smaller family"
        )


def describe_outcome(
    run: TuningRun,
    client: tracking.MlflowClient,
    model_name: str,
    best_cv: float,
    refit: Refit,
    version: str,
) -> None:
    """The notes MLflow's UI shows on the parent run and the new version; the run ends."""
    note = tuning_note(run.tags, best_cv, refit.test_auroc, refit.family, version)
    tracking.describe_run(client, run.parent_run_id, note)
    pending = version_note(run.tags, refit.test_auroc, "pending (the promote stage decides)")
    tracking.describe_version(client, model_name, version, pending)
    tracking.end_run(client, run.parent_run_id)


def log_and_register(
    settings: Settings,
    client: tracking.MlflowClient,
    run_id: str,
    pipeline: object,
    data: Dataset,
    tags: dict[str, str],
    engine: store.Engine | None = None,
    judged: object = None,
) -> str:
    """Log a fitted Pipeline as the served pyfunc model under `run_id` (with `judged`, the
    Pipeline the holdout judged, when the served one was refit on the holdout too) and
    register it as the challenger (the move recorded in `engine`'s alias log when given);
    returns the version."""
    example = example_rows(data.train.head(5), data.kinds)
    logged = logged_model.log_model(
        settings.tracking_uri, run_id, pipeline, example, data.kinds, data.passengers, judged
    )
    version = tracking.register_version(client, settings.model_name, logged, tags)
    moved_by = tags.get("prefect.tune_flow_run_id") or tags.get("prefect.flow_run_id")
    aliases = aliases_for(client, engine, settings, moved_by)
    aliases.name_challenger(version, f"registered by tuning run {run_id}")
    return version


METRIC_WORDS = {"auroc": "mean CV AUROC", "accuracy": "mean CV accuracy"}


def log_pictures(
    run: TuningRun,
    client: tracking.MlflowClient,
    study: optuna.Study,
    refit: Refit,
    objective: str = "auroc",
) -> None:
    """The learning curve as step metrics, and the PNGs: confusion matrix, ROC, Optuna plots."""
    data = run.data
    train = training_matrix(data), data.labels(data.train)
    test = prepare_features(data.holdout, data.kinds), data.labels(data.holdout)
    classes = data.known_classes
    with all_cores_for_a_while(refit.pipeline):  # served with one thread, scored with all
        curve = learning_curve(refit.pipeline, train, test, classes, data.positive)
    tracking.log_steps(
        client,
        run.parent_run_id,
        {"learning_curve_auroc": [(s, a) for s, a, _ in curve],
         "learning_curve_accuracy": [(s, acc) for s, _, acc in curve]},
    )  # fmt: skip
    predicted = classes[refit.holdout_proba.argmax(axis=1)]
    figures = {
        "confusion_matrix.png": pictures.confusion_matrix_figure(test[1], predicted, classes),
        "roc_curves.png": pictures.roc_figure(test[1], refit.holdout_proba, classes),
        "reliability.png": pictures.reliability_figure(
            test[1], refit.holdout_proba, classes, data.positive, refit.calibration
        ),
        **pictures.study_figures(study, METRIC_WORDS[objective]),
    }
    tracking.log_figures(client, run.parent_run_id, figures)


def tune_and_register(
    engine: store.Engine,
    tables: DatasetTables,
    client: tracking.MlflowClient,
    settings: Settings,
    config: TuneConfig,
    tags: dict[str, str] | None = None,
) -> TuneReport:
    """The whole stage in this process: start, run the workers, finish."""
    run = start_tuning(engine, tables, client, settings, config, tags)
    started = time.perf_counter()
    study = run_local_workers(run, client, config)
    seconds = time.perf_counter() - started
    return finish_tuning(run, client, settings, config, study, seconds, engine)

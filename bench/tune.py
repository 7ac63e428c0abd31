"""Tuning speed: the seed tutorials' recipe against this project's tuner, in one process.

    ./dev python -m bench.tune [--trials 20] [--rounds 2] [--scale 10]

Same data (bundled iris, the project's train/holdout split), same search space, same number of
trials, same sampler seed, each side with its own fresh SQLite tracking store. The baseline is
the recipe people copy: a plain `RandomForestClassifier` on the feature columns, per trial two
`cross_val_score` calls (accuracy, then roc_auc_ovo) over 5 stratified folds with n_jobs=-1
everywhere, each trial a nested run logged synchronously through MLflow's fluent API, then
refit, `mlflow.sklearn.log_model` with inferred requirements, and registration. This
project's side is `tune_and_register`: scikit-learn Pipelines (preprocessing + forest), each
fold fitted once through public scikit-learn API with both metrics from one `predict_proba`,
the folds in parallel joblib (loky) processes, trials logged by a background thread, then
refit, the pyfunc model logged and registered as challenger. Joblib's worker processes are
started and warmed before each side's clock, so neither side pays (or skips) their start-up.

Prints wall seconds (median of the rounds), the ratio, best CV and test AUROC of each side,
and this project's search time beside its CPU floor: the single-thread CPU seconds its fold
fits took (the trials' `cpu_seconds`) divided by the processes that can run them at once
(the cores, at most one per fold). The floor leaves out what the search adds around the fits
(dispatching folds to processes, TPE sampling, MLflow logging) and the straggler of a fold
count that does not divide evenly among the processes, whose bound is printed beside it.
With `--scale N`, the tuner alone on N jittered copies of each row, where the fits outweigh
the per-trial bookkeeping.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import statistics
import tempfile
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pandas as pd
from joblib import Parallel, delayed
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import StratifiedKFold, cross_val_score

from retrain.config.dataset_schema import DatasetSchema, load_dataset_schema
from retrain.config.settings import BUNDLED_SCHEMAS, load_settings
from retrain.data import clean, ingest
from retrain.data.split import Dataset, align_proba, dataset_of
from retrain.io import engines, store, tracking
from retrain.io.bundled_iris import write_bundled_iris
from retrain.training.families import auroc, suggest_params
from retrain.training.tuning import TuneConfig, TuneReport, tune_and_register

SEED = 42
N_FOLDS = 5


def prepare_store(work: Path, scale: int = 1):
    """Bundled iris (or `scale` jittered copies of each row) loaded and cleaned into a fresh
    SQLite store; returns the engine, the tables and the schema."""
    engine = engines.make_engine(f"sqlite:///{work / 'warehouse.db'}")
    schema = load_dataset_schema(BUNDLED_SCHEMAS / "iris.yaml")
    tables = store.dataset_tables("iris", schema)
    source = write_bundled_iris(work / "src")
    if scale > 1:
        source = write_scaled(source, scale)
    report = ingest.load_file(engine, tables, source, "utf-8")
    clean.clean_batch(engine, tables, schema, report.batch_id, 0.2)
    return engine, tables, schema


def write_scaled(source: Path, scale: int) -> Path:
    """`scale` copies of each row, measurements multiplied by 1 + N(0, 0.05), seeded."""
    frame = pd.read_csv(source)
    copies = pd.concat([frame] * scale, ignore_index=True)
    numeric = copies.columns[:-1]
    noise = np.random.default_rng(0).normal(1.0, 0.05, size=(len(copies), len(numeric)))
    copies[numeric] = (copies[numeric] * noise.clip(0.5, 1.5)).round(3)
    path = source.with_name(f"iris_x{scale}.csv")
    copies.to_csv(path, index=False, lineterminator="\n")
    return path


def read_dataset(engine, tables, schema: DatasetSchema) -> Dataset:
    """Training and holdout rows of the cleaned table, split as the tuner splits them."""
    with engine.connect() as conn:
        return dataset_of(store.read_cleaned(conn, tables), schema)


def _import_fit_modules() -> int:
    import sklearn.ensemble
    import sklearn.metrics
    import sklearn.model_selection  # noqa: F401

    import retrain.training.families  # noqa: F401

    time.sleep(0.2)  # hold this worker so the next task goes to another one
    return os.getpid()


def warm_workers() -> None:
    """Start joblib's shared process pool and import what both sides' folds need in every
    worker before a clock starts. Both sides use that pool; without this, whichever side runs
    first in a round pays the workers' start-up (seconds of imports per worker) and the other
    side gets them warm."""
    cores = os.cpu_count() or 1
    for _ in range(3):
        pids = Parallel(n_jobs=cores, backend="loky")(
            delayed(_import_fit_modules)() for _ in range(cores)
        )
        if len(set(pids)) == cores:
            return


@contextmanager
def fluent_baseline(uri: str, artifacts: Path):
    """MLflow's fluent API pointed at the baseline's store, as the seed recipe uses it, and
    everything it set put back afterwards through public calls: the tracking and registry
    URIs (`tracking.fluent_store`) and the MLFLOW_EXPERIMENT_ID that `set_experiment`
    exports."""
    saved = os.environ.get("MLFLOW_EXPERIMENT_ID")
    try:
        with tracking.fluent_store(uri):
            mlflow.create_experiment("baseline", artifact_location=artifacts.as_uri())
            mlflow.set_experiment("baseline")
            yield
    finally:
        if saved is None:
            os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
        else:
            os.environ["MLFLOW_EXPERIMENT_ID"] = saved


def run_baseline(engine, tables, schema, work: Path, trials: int) -> tuple[float, float, float]:
    """The seed recipe; returns (wall seconds, best CV AUROC, holdout AUROC)."""
    warm_workers()
    data = read_dataset(engine, tables, schema)
    x, y = data.train[data.features], data.labels(data.train)
    folds = StratifiedKFold(N_FOLDS, shuffle=True, random_state=SEED)
    with fluent_baseline(f"sqlite:///{work / 'b.db'}", work / "b-artifacts"):
        started = time.perf_counter()

        def objective(trial: optuna.Trial) -> float:
            with mlflow.start_run(nested=True):
                params = suggest_params(trial, "random_forest")
                model = RandomForestClassifier(**params, random_state=SEED, n_jobs=-1)
                acc = cross_val_score(model, x, y, cv=folds, scoring="accuracy", n_jobs=-1)
                auc = cross_val_score(model, x, y, cv=folds, scoring="roc_auc_ovo", n_jobs=-1)
                mlflow.log_params(params)
                mlflow.log_metrics({"mean_accuracy": acc.mean(), "mean_auroc": auc.mean()})
                return auc.mean()

        with mlflow.start_run():
            study = optuna.create_study(
                direction="maximize", sampler=optuna.samplers.TPESampler(seed=SEED)
            )
            study.optimize(objective, n_trials=trials)
            model = RandomForestClassifier(**study.best_params, random_state=SEED, n_jobs=-1)
            model.fit(x, y)
            classes = data.known_classes
            proba = model.predict_proba(data.holdout[data.features])
            proba = align_proba(proba, model.classes_, classes)
            test = auroc(data.labels(data.holdout), proba, classes, data.positive)
            mlflow.sklearn.log_model(
                model,
                name="model",
                input_example=x.head(5),
                registered_model_name="baseline_model",
                skops_trusted_types=["sklearn.tree._tree.Tree"],
            )
        seconds = time.perf_counter() - started
    return seconds, study.best_value, test


def run_ours(engine, tables, work: Path, trials: int) -> tuple[float, TuneReport]:
    """This project's tuner, `tune_and_register`; returns (wall seconds, its report)."""
    uri = f"sqlite:///{work / 'o.db'}"
    settings = load_settings(
        home=work, MLFLOW_TRACKING_URI=uri, experiment="ours", model_name="ours_model"
    )
    client = tracking.make_client(uri)
    tracking.ensure_experiment(client, "ours", settings.artifact_root)
    warm_workers()
    started = time.perf_counter()
    config = TuneConfig(trials=trials, seed=SEED, n_folds=N_FOLDS, prune=False)
    report = tune_and_register(engine, tables, client, settings, config)
    return time.perf_counter() - started, report


def fit_lanes(config: TuneConfig) -> int:
    """How many folds of a trial run at once: one per process, at most one per fold."""
    return min(config.parallel_folds, config.n_folds)


def straggler_bound(config: TuneConfig) -> float:
    """Search over floor when everything but the fits were free and all folds took as long:
    a trial waits for its last round of folds."""
    lanes = fit_lanes(config)
    return math.ceil(config.n_folds / lanes) / (config.n_folds / lanes)


def scaled_search(scale: int, trials: int) -> TuneReport:
    """This project's tuner alone on `scale` jittered copies of the iris rows."""
    with tempfile.TemporaryDirectory(prefix="bench-tune-") as tmp:
        engine, tables, _ = prepare_store(Path(tmp), scale)
        return run_ours(engine, tables, Path(tmp), trials)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--scale",
        type=int,
        default=10,
        help="also time the tuner alone on this many jittered copies of each row (0: skip)",
    )
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    base_times, our_times, reports, base = [], [], [], (0.0, 0.0)
    for round_no in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="bench-tune-") as tmp:
            work = Path(tmp)
            engine, tables, schema = prepare_store(work)
            t, *base = run_baseline(engine, tables, schema, work, args.trials)
            base_times.append(t)
            t, report = run_ours(engine, tables, work, args.trials)
            our_times.append(t)
            reports.append(report)
        print(
            f"round {round_no + 1}: baseline {base_times[-1]:.1f} s, retrain {our_times[-1]:.1f} s"
        )
    b, o, r = statistics.median(base_times), statistics.median(our_times), reports[-1]
    config = TuneConfig(trials=args.trials, seed=SEED, n_folds=N_FOLDS, prune=False)
    cores, lanes = os.cpu_count() or 1, fit_lanes(config)
    floor = statistics.median(x.fit_cpu_seconds for x in reports) / lanes
    search = statistics.median(x.search_seconds for x in reports)
    print(
        f"trials {args.trials}, same space and sampler seed, SQLite tracking stores, "
        f"{cores} cores, worker processes warm before each clock"
    )
    for label, secs, cv, test in (
        ("baseline recipe", b, *base),
        ("retrain tuner", o, r.best_cv, r.test_auroc),
    ):
        print(f"{label:<16}: {secs:6.1f} s  best CV AUROC {cv:.4f}  test AUROC {test:.4f}")
    print(f"speed-up        : {b / o:.2f}x (target >= 3x)")
    print(
        f"retrain search  : {search:6.1f} s vs CPU floor {floor:.1f} s ({search / floor:.2f}x; "
        f"{N_FOLDS} folds on {lanes} processes allow >= {straggler_bound(config):.2f}x)"
    )
    print(f"retrain fixed   : {o - search:6.1f} s (read rows, refit, plots, log_model, register)")
    print(
        f"best params equal across rounds: {all(x.params == r.params for x in reports)}; "
        f"abs CV AUROC diff {abs(base[0] - r.best_cv):.4f}"
    )
    if args.scale > 1:
        big = scaled_search(args.scale, args.trials)
        big_floor = big.fit_cpu_seconds / lanes
        print(
            f"x{args.scale} rows (tuner alone): search {big.search_seconds:.1f} s vs CPU floor "
            f"{big_floor:.1f} s ({big.search_seconds / big_floor:.2f}x)"
        )


if __name__ == "__main__":
    main()

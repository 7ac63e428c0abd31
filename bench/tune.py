"""Tuning speed: the seed tutorials' recipe against this project's tuner, in one process.

    ./dev python -m bench.tune [--trials 20] [--rounds 2] [--scale 10]

Same data (bundled iris, the project's holdout), same search space, same number of trials,
same sampler seed, each side with its own fresh SQLite tracking store. The baseline is the
recipe people copy: per trial two `cross_val_score` calls (accuracy, then roc_auc_ovo) over
5 stratified folds with n_jobs=-1 everywhere, each trial a nested run logged synchronously,
then refit, `log_model` with inferred requirements, and registration. Joblib's worker
processes are started and warmed before each side's clock, so neither side pays (or skips)
their start-up. Prints wall seconds (median of the rounds), the ratio, best CV and test AUROC
of each side, and this project's CPU floor: the single-thread CPU seconds of the fits it
performed divided by the cores. Those fits grow the forests' own trees without scikit-learn's
per-tree checks (retrain/trees.py), so two more lines put the search in context: the floor of
the same trials' fits through `RandomForestClassifier.fit`, and the tuner alone on `--scale`
jittered copies of each row, where fits outweigh the per-trial bookkeeping (TPE, MLflow).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pandas as pd
from joblib import Parallel, delayed
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import StratifiedKFold, cross_val_score

from retrain import clean, ingest, store, tracking
from retrain.datasets import write_bundled_iris
from retrain.modeling import auroc, build_model, fold_splits, suggest_params
from retrain.settings import BUNDLED_SCHEMAS, load_settings
from retrain.tune import TuneConfig, split_dataset, tune_and_register
from retrain.validation import load_schema


def prepare_store(work: Path, scale: int = 1):
    """Bundled iris (or `scale` jittered copies of each row) loaded and cleaned into a fresh
    SQLite store."""
    engine = store.make_engine(f"sqlite:///{work / 'warehouse.db'}")
    schema = load_schema(BUNDLED_SCHEMAS / "iris.yaml")
    tables = store.dataset_tables("iris", schema)
    source = write_bundled_iris(work / "src")
    if scale > 1:
        source = write_scaled(source, scale)
    report = ingest.load_file(engine, tables, source, "utf-8")
    clean.clean_batch(engine, tables, schema, report.batch_id, 0.2)
    return engine, tables


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


def read_dataset(engine, tables):
    """Training and holdout rows of the cleaned table, split as the tuner splits them."""
    with engine.connect() as conn:
        return split_dataset(store.read_cleaned(conn, tables), "target", 0.2)


def _import_fit_modules() -> int:
    import sklearn.ensemble  # noqa: F401

    return os.getpid()


def warm_workers() -> None:
    """Start joblib's shared process pool and import scikit-learn in it before a clock starts.
    Both sides use that pool; without this, whichever side runs first in a round pays the
    workers' start-up (about 4 s of imports per worker here) and the other side gets them warm."""
    cores = os.cpu_count() or 1
    Parallel(n_jobs=cores, backend="loky")(delayed(_import_fit_modules)() for _ in range(cores))


def run_baseline(engine, tables, uri: str, trials: int, seed: int) -> tuple[float, float, float]:
    warm_workers()
    data = read_dataset(engine, tables)
    x, y = data.train[data.features], data.train["target"]
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("baseline")
    started = time.perf_counter()

    def objective(trial: optuna.Trial) -> float:
        with mlflow.start_run(nested=True):
            params = suggest_params(trial, "random_forest")
            model = RandomForestClassifier(**params, random_state=seed, n_jobs=-1)
            acc = cross_val_score(model, x, y, cv=folds, scoring="accuracy", n_jobs=-1).mean()
            auc = cross_val_score(model, x, y, cv=folds, scoring="roc_auc_ovo", n_jobs=-1).mean()
            mlflow.log_params(params)
            mlflow.log_metrics({"mean_accuracy": acc, "mean_auroc": auc})
            return auc

    with mlflow.start_run():
        study = optuna.create_study(
            direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed)
        )
        study.optimize(objective, n_trials=trials)
        model = RandomForestClassifier(**study.best_params, random_state=seed, n_jobs=-1)
        model.fit(x, y)
        holdout = data.holdout
        test = auroc(
            holdout["target"].to_numpy(), model.predict_proba(holdout[data.features]), data.classes
        )
        mlflow.sklearn.log_model(
            model,
            name="model",
            input_example=x.head(5),
            registered_model_name="baseline_model",
            skops_trusted_types=["sklearn.tree._tree.Tree"],
        )
    return time.perf_counter() - started, study.best_value, test


def run_ours(engine, tables, uri: str, trials: int, seed: int):
    client = tracking.make_client(uri)
    settings = load_settings(MLFLOW_TRACKING_URI=uri, experiment="ours", model_name="ours_model")
    tracking.ensure_experiment(client, "ours", settings.artifact_root)
    warm_workers()
    started = time.perf_counter()
    config = TuneConfig(trials=trials, seed=seed)
    report = tune_and_register(engine, tables, client, settings, config)
    return time.perf_counter() - started, report


def sklearn_fit_floor(engine, tables, uri: str, report, seed: int) -> float:
    """CPU floor of the same trials done the plain way: each trial's forest fitted by
    `RandomForestClassifier.fit` (one thread, one fit per fold) and asked for its fold's
    probabilities, CPU seconds summed and divided by the cores. The trials' params are read
    back from their MLflow runs."""
    client = tracking.make_client(uri)
    runs = client.search_runs(
        [report.experiment_id], f"tags.mlflow.parentRunId = '{report.parent_run_id}'"
    )
    data = read_dataset(engine, tables)
    x, y = data.xy(data.train)
    splits = fold_splits(y, 5, seed)
    cpu = 0.0
    for run in runs:
        logged = {k: v for k, v in run.data.params.items() if k != "family"}
        params = {k: float(v) if "." in v else int(v) for k, v in logged.items()}
        for train, test in splits:
            started = time.thread_time()
            build_model("random_forest", params, seed).fit(x[train], y[train]).predict_proba(
                x[test]
            )
            cpu += time.thread_time() - started
    return cpu / (os.cpu_count() or 1)


def scaled_search(scale: int, trials: int, seed: int):
    """This project's tuner alone on `scale` jittered copies of the iris rows."""
    with tempfile.TemporaryDirectory(prefix="bench-tune-") as tmp:
        engine, tables = prepare_store(Path(tmp), scale)
        return run_ours(engine, tables, f"sqlite:///{Path(tmp) / 'o.db'}", trials, seed)


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
    base_times, our_times, reports, base = [], [], [], None
    for round_no in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="bench-tune-") as tmp:
            work = Path(tmp)
            engine, tables = prepare_store(work)
            t, best, test = run_baseline(
                engine, tables, f"sqlite:///{work / 'b.db'}", args.trials, 42
            )
            base_times.append(t)
            base = (best, test)
            uri = f"sqlite:///{work / 'o.db'}"
            t, report = run_ours(engine, tables, uri, args.trials, 42)
            our_times.append(t)
            reports.append(report)
            if round_no == args.rounds - 1:
                plain_floor = sklearn_fit_floor(engine, tables, uri, report, 42)
        print(
            f"round {round_no + 1}: baseline {base_times[-1]:.1f} s, retrain {our_times[-1]:.1f} s"
        )
    b, o, r = statistics.median(base_times), statistics.median(our_times), reports[-1]
    cores = os.cpu_count() or 1
    floor = statistics.median(x.fit_cpu_seconds for x in reports) / cores
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
        f"target <= 1.25x); fixed costs (refit, log_model, register) {o - search:.1f} s"
    )
    print(
        f"plain-fit floor : {plain_floor:6.1f} s (the same trials' fits through "
        f"RandomForestClassifier.fit); retrain search = {search / plain_floor:.2f}x of it"
    )
    print(
        f"best params equal across rounds: {all(x.params == r.params for x in reports)}; "
        f"abs CV AUROC diff {abs(base[0] - r.best_cv):.4f}"
    )
    if args.scale > 1:
        _, big = scaled_search(args.scale, args.trials, 42)
        big_floor = big.fit_cpu_seconds / cores
        print(
            f"x{args.scale} rows (tuner alone): search {big.search_seconds:.1f} s vs CPU floor "
            f"{big_floor:.1f} s ({big.search_seconds / big_floor:.2f}x)"
        )


if __name__ == "__main__":
    main()

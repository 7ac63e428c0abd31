"""Trial workers on Dask: trials per minute with 2 worker processes of 1 core each against 1
worker of 1 core, on one shared Optuna study in MariaDB, in one run.

    ./dev python -m bench.trial_workers [--rows 20000] [--trials 12]

What a second machine adds, measured on one: a real MariaDB (Debian's, started here), a real
Prefect server, and for each side a Dask `LocalCluster` of N single-threaded worker processes
that the tune flow's `trial-workers` subflow joins (as it joins RETRAIN_DASK_ADDRESS); each
worker fits its folds on one core (`parallel_folds=1`). The study is the churn table of
bench.datasets (`--rows` rows) with the random forest and no pruning, so the fits dominate.

Prints, per side, the subflow's wall time (with the workers' start: imports, reading the rows
once), the steady rate from the first trial's start to the last trial's end, and the fits'
CPU-seconds per second of that span (the sides' samplers pick different parameters, so this
compares the work done), and the ratios (target >= 1.7 for the steady rate).
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path

import optuna

from bench.datasets import customers, prepare_home
from retrain.config.settings import load_settings
from retrain.data import clean, ingest
from retrain.io import store, tracking
from retrain.training.tuning import TuneConfig, start_tuning
from tests.support import services


def load_table() -> None:
    """The configured source loaded and cleaned into the store."""
    settings = load_settings()
    engine, tables = store.open_dataset(settings)
    loaded = ingest.load_file(engine, tables, Path(settings.source), settings.encoding)
    clean.clean_batch(engine, tables, settings.load_schema(), loaded.batch_id, None)


def run_side(workers: int, trials: int) -> tuple[float, float, float]:
    """(subflow seconds, steady trials per minute, fit CPU-seconds per steady second) of one
    study on `workers` processes. The two sides' samplers pick different parameters, so
    their trials differ in cost: the fit seconds per second compare the work done."""
    from distributed import LocalCluster
    from prefect_dask import DaskTaskRunner

    from flows.tune import trial_workers

    settings = load_settings()
    engine, tables = store.open_dataset(settings)
    client = tracking.make_client(settings.tracking_uri)
    config = TuneConfig(
        trials=trials, families=("random_forest",), workers=workers, parallel_folds=1,
        prune=False, heartbeat=settings.tune_heartbeat,
    )  # fmt: skip
    # one worker has no shared study of its own; give it the same RDB study as two have
    run = start_tuning(engine, tables, client, settings, replace(config, workers=2))
    with LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:  # fmt: skip
        runner = DaskTaskRunner(address=cluster.scheduler_address)
        flow = trial_workers.with_options(task_runner=runner)
        started = time.perf_counter()
        flow(settings, config, run.without_rows())
        wall = time.perf_counter() - started
    study = optuna.load_study(study_name=run.study_name, storage=settings.optuna_storage_url)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == trials, [t.state for t in study.trials]
    first, last = min(t.datetime_start for t in done), max(t.datetime_complete for t in done)
    span = (last - first).total_seconds()
    fit_seconds = sum(t.user_attrs["cpu_seconds"] for t in done)
    return wall, 60 * trials / span, fit_seconds / span


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--trials", type=int, default=12)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        work = Path(tmp)
        for folder in ("mariadb", "prefect"):
            (work / folder).mkdir()
        with (
            services.mariadb_server(work / "mariadb") as db_url,
            services.prefect_server(work / "prefect") as api,
        ):
            os.environ.update({"PREFECT_API_URL": api})
            prepare_home(work, "churn", *customers(args.rows))
            os.environ.update({"RETRAIN_DB_URL": db_url, "RETRAIN_DATASET": "churn"})
            load_table()
            one = run_side(1, args.trials)
            two = run_side(2, args.trials)
    print(f"{args.trials} random-forest trials on {args.rows:,} rows, 5 folds, 1 core per worker")
    print(f"{'workers':>8} | {'subflow wall':>12} | {'steady trials/min':>17} | fit s per s")
    for n, (wall, rate, work) in ((1, one), (2, two)):
        print(f"{n:>8} | {wall:10.1f} s | {rate:17.2f} | {work:11.2f}")
    print(
        f"ratio (2 vs 1): wall {one[0] / two[0]:.2f}, steady trials/min {two[1] / one[1]:.2f}, "
        f"fit seconds per second {two[2] / one[2]:.2f}"
    )


if __name__ == "__main__":
    main()

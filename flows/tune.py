"""The tune flow: an Optuna study on the cleaned data, the best model registered as challenger."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from typing import TYPE_CHECKING

import optuna
from prefect import flow, get_run_logger
from prefect.exceptions import TerminationSignal
from prefect.futures import wait

from flows.hooks import log_mlflow_links, publish_tuning, run_name
from retrain.config.settings import Settings, load_settings
from retrain.errors import StageFailed
from retrain.training.families import resolve_families
from retrain.training.tuning import TuneConfig, TuneReport, TuningRun, tune_config_of
from tasks.training import abandon_study, register_best, run_trial_worker, start_study

if TYPE_CHECKING:
    from prefect_dask import DaskTaskRunner


def dask_runner(settings: Settings, workers: int) -> DaskTaskRunner:
    """The cluster the trial workers run on: RETRAIN_DASK_ADDRESS, else a local cluster of one
    single-threaded process per worker, bound to 127.0.0.1 on free ports (dashboard too).
    Imported here: `distributed` costs a second to import, and one worker needs none of it."""
    from prefect_dask import DaskTaskRunner

    if settings.dask_address:
        return DaskTaskRunner(address=settings.dask_address)
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={
            "n_workers": workers, "threads_per_worker": 1, "processes": True,
            "host": "127.0.0.1", "scheduler_port": 0, "dashboard_address": "127.0.0.1:0",
        },
    )  # fmt: skip


@flow(name="trial-workers", flow_run_name=run_name("trial-workers"), validate_parameters=False)
def trial_workers(settings: Settings, config: TuneConfig, run: TuningRun) -> optuna.Study:
    """The tune flow's workers, one task run each on the Dask cluster; each reads the study's
    rows from the store once. A worker that dies leaves the others to finish the study."""
    logger = get_run_logger()
    futures = [run_trial_worker.submit(settings, config, run, w) for w in range(config.workers)]
    wait(futures)
    studies, lost = [], []
    for number, future in enumerate(futures):
        try:
            studies.append(future.result())
        except Exception as err:  # a lost worker process: its trial was retried by the others
            lost.append(f"worker {number}: {type(err).__name__}: {err}")
    if lost:
        logger.warning(f"{len(lost)} trial worker(s) ended early: " + "; ".join(lost))
    if not studies:
        raise StageFailed("every trial worker failed: " + "; ".join(lost))
    return studies[0]


def run_trial_workers(settings: Settings, config: TuneConfig, run: TuningRun) -> optuna.Study:
    """One worker runs in this thread, so a cancel (SIGTERM) interrupts its fits at once and
    joblib stops the fit processes; several run as processes on a Dask cluster."""
    if config.workers == 1:
        return run_trial_worker(settings, config, run, 0)
    # a local cluster shares this machine's cores; on a cluster each worker uses its machine's
    folds = 0 if settings.dask_address else max(1, (os.cpu_count() or 1) // config.workers)
    on_dask = trial_workers.with_options(task_runner=dask_runner(settings, config.workers))
    return on_dask(settings, replace(config, parallel_folds=folds), run.without_rows())


def is_cancellation(err: BaseException) -> bool:
    """A cancel from the Prefect UI (SIGTERM) or Ctrl-C, as opposed to a failure."""
    return isinstance(err, TerminationSignal | KeyboardInterrupt)


@flow(name="tune", flow_run_name=run_name("tune"), timeout_seconds=6 * 3600)
def tune(
    trials: int | None = None,
    workers: int | None = None,
    family: str | None = None,
    objective: str | None = None,
    budget: float | None = None,
) -> TuneReport:
    """Tune on the training rows (holdout chosen by row hash) and register a challenger.

    With several workers each is a task run on a Dask cluster against one Optuna study in RDB
    storage."""
    logger = get_run_logger()
    settings = load_settings(
        trials=trials, workers=workers, family=family, objective=objective, tune_budget=budget
    )
    families, note = resolve_families(settings.families)
    if note:
        logger.warning(note)
    config = tune_config_of(settings, families)
    run = start_study(settings, config)
    logger.info(
        f"study {run.study_name}: at most {config.trials} trials in {config.budget:.0f} s on "
        f"{config.workers} worker(s)"
    )
    started = time.perf_counter()
    try:
        study = run_trial_workers(settings, config, run)
    except BaseException as err:
        abandon_study(settings, run, "KILLED" if is_cancellation(err) else "FAILED")
        raise
    report = register_best(settings, config, run, study, time.perf_counter() - started)
    logger.info(report.describe())
    log_mlflow_links(settings, report.version, run=(report.experiment_id, report.parent_run_id))
    publish_tuning(settings, report)
    return report

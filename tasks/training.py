"""Prefect tasks of the tuning stage: start the study, run trial workers, register the best."""

from __future__ import annotations

import optuna
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from retrain import tracking
from retrain.settings import Settings
from retrain.tune import (
    TuneConfig,
    TuneReport,
    TuningRun,
    finish_tuning,
    run_worker,
    start_tuning,
)
from tasks.data import open_dataset
from tasks.policies import IO_TASK


@task(**IO_TASK, cache_policy=NO_CACHE)
def start_study(settings: Settings, config: TuneConfig) -> TuningRun:
    """Read the cleaned rows, open the parent MLflow run and create the Optuna study."""
    engine, tables = open_dataset(settings)
    tags = {"prefect.flow_run_id": str(flow_run.id)} if flow_run.id else {}
    with tracking.reporting_errors(settings.tracking_uri):
        client = tracking.make_client(settings.tracking_uri)
        return start_tuning(engine, tables, client, settings, config, tags)


@task(cache_policy=NO_CACHE, task_run_name="trial-worker-{worker}")
def run_trial_worker(
    settings: Settings, config: TuneConfig, run: TuningRun, worker: int
) -> optuna.Study:
    """One worker's share of the trials. No retries (a rerun would add trials) and no task
    timeout (it cannot interrupt a thread); the tune flow's timeout bounds it."""
    return run_worker(run, tracking.make_client(settings.tracking_uri), config, worker)


@task(**IO_TASK, cache_policy=NO_CACHE)
def register_best(
    settings: Settings, config: TuneConfig, run: TuningRun, study: optuna.Study, seconds: float
) -> TuneReport:
    """Refit the best trial, log plots, model and data, register it as challenger."""
    with tracking.reporting_errors(settings.tracking_uri):
        client = tracking.make_client(settings.tracking_uri)
        return finish_tuning(run, client, settings, config, study, seconds)


@task(**IO_TASK, cache_policy=NO_CACHE)
def abandon_study(settings: Settings, run: TuningRun, status: str = "FAILED") -> None:
    """Mark the parent run FAILED (or KILLED, when cancelled) so a study that ended without a
    version does not look like one still running."""
    tracking.make_client(settings.tracking_uri).set_terminated(run.parent_run_id, status)

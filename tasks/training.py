"""Prefect tasks of the tuning stage: start the study, run trial workers, register the best."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import replace

import optuna
from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.settings import PREFECT_UI_URL

from retrain.config.settings import Settings
from retrain.io import tracking
from retrain.links import flow_run_url
from retrain.training.tuning import (
    TuneConfig,
    TuneReport,
    TuningRun,
    finish_tuning,
    run_worker,
    start_tuning,
    stop_study,
    with_rows,
)
from tasks.data import open_dataset
from tasks.policies import IO_TASK


def orchestrator_tags() -> dict[str, str]:
    """The nightly (root) flow run behind this study, for the MLflow run and the version: its
    id, its name, its page in the Prefect UI when PREFECT_UI_URL is known, and the tune run."""
    if not flow_run.id:
        return {}
    root = str(flow_run.root_flow_run_id or flow_run.id)
    tags = {"prefect.flow_run_id": root, "prefect.tune_flow_run_id": str(flow_run.id)}
    link = flow_run_url(PREFECT_UI_URL.value(), root)
    return tags | ({"prefect.flow_run_url": link} if link else {})


def progress_reporter(total: int, budget: float | None) -> Callable[[int, dict, dict], None]:
    """A per-trial callback for a trial worker: one log line in this run and the
    `tuning-progress` artifact moved on (the larger of trials done and budget spent). It is
    called from the trial-logging thread, so it holds the run's logger, not its context."""
    logger = get_run_logger()
    artifact = create_progress_artifact(0.0, key="tuning-progress", description="trials")
    started, done, best = time.monotonic(), [0], [None]

    def report(number: int, params: dict, metrics: dict) -> None:
        done[0] += 1
        completed = not metrics.get("pruned")
        if completed and (best[0] is None or metrics["mean_auroc"] > best[0]):
            best[0] = metrics["mean_auroc"]
        spent = (time.monotonic() - started) / budget if budget else 0.0
        outcome = "pruned" if metrics.get("pruned") else f"{int(metrics['folds_scored'])} folds"
        logger.info(
            f"trial {number} ({params.get('family')}): mean AUROC {metrics['mean_auroc']:.4f}, "
            f"{outcome}; {done[0]} done by this worker, at most {total} in the study"
        )
        progress = 100 * min(1.0, max(done[0] / total, spent))
        so_far = f"; best mean CV AUROC so far {best[0]:.4f}" if best[0] is not None else ""
        update_progress_artifact(artifact, progress, description=f"{done[0]} trials done{so_far}")

    return report


@task(**IO_TASK, cache_policy=NO_CACHE)
def start_study(settings: Settings, config: TuneConfig) -> TuningRun:
    """Read the cleaned rows, open the parent MLflow run and create the Optuna study."""
    engine, tables = open_dataset(settings)
    tags = orchestrator_tags()
    with tracking.reporting_errors(settings.tracking_uri):
        client = tracking.make_client(settings.tracking_uri)
        return start_tuning(engine, tables, client, settings, config, tags)


@task(cache_policy=NO_CACHE, task_run_name="trial-worker-{worker}")
def run_trial_worker(
    settings: Settings, config: TuneConfig, run: TuningRun, worker: int
) -> optuna.Study:
    """One trial worker, here or in a Dask worker process (which reads the study's rows once).
    No Prefect retries: a worker that dies leaves its trial to the heartbeat, which fails it
    and queues it again for the others. No task timeout; the tune flow's bounds it."""
    if config.parallel_folds == 0:  # on a cluster: the cores of the machine it landed on
        config = replace(config, parallel_folds=os.cpu_count() or 1)
    if run.data is None:  # in a Dask worker: the study's rows, read once
        run = with_rows(run, *open_dataset(settings), settings, config)
    progress = progress_reporter(config.trials, config.budget)
    return run_worker(run, tracking.make_client(settings.tracking_uri), config, worker, progress)


@task(**IO_TASK, cache_policy=NO_CACHE)
def register_best(
    settings: Settings, config: TuneConfig, run: TuningRun, study: optuna.Study, seconds: float
) -> TuneReport:
    """Refit the best trial, log plots, model and data, register it as challenger."""
    engine, _ = open_dataset(settings)
    with tracking.reporting_errors(settings.tracking_uri):
        client = tracking.make_client(settings.tracking_uri)
        return finish_tuning(run, client, settings, config, study, seconds, engine)


@task(**IO_TASK, cache_policy=NO_CACHE)
def abandon_study(settings: Settings, run: TuningRun, status: str = "FAILED") -> None:
    """Mark the parent run FAILED (or KILLED, when cancelled) so a study that ended without a
    version does not look like one still running; a shared study is marked stopped, so that
    workers on a cluster (which a cancel does not interrupt) claim no further trial."""
    tracking.end_run(tracking.make_client(settings.tracking_uri), run.parent_run_id, status)
    if run.storage:
        stop_study(run, status)

"""Prefect tasks of the tuning stage: a thin call into the core."""

from __future__ import annotations

from prefect import task
from prefect.runtime import flow_run

from retrain import tracking
from retrain.settings import Settings
from retrain.tune import TuneConfig, TuneReport, tune_and_register
from tasks.data import open_dataset
from tasks.policies import IO_TASK


@task(**IO_TASK, timeout_seconds=6 * 3600)
def tune_challenger(settings: Settings, config: TuneConfig) -> TuneReport:
    """Run the study under one parent MLflow run and register the best model as challenger."""
    engine, tables = open_dataset(settings)
    client = tracking.make_client(settings.tracking_uri)
    tags = {"prefect.flow_run_id": str(flow_run.id)} if flow_run.id else {}
    return tune_and_register(engine, tables, client, settings, config, tags)

"""Prefect tasks of the data path: ingest and clean, each a thin call into the core."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from retrain.config.settings import Settings
from retrain.data import clean, ingest
from retrain.data.clean import BatchReport
from retrain.data.ingest import LoadReport
from retrain.io import engines, store, tracking
from retrain.io.bundled_iris import source_files
from retrain.io.store import open_dataset
from retrain.monitoring import check_drift
from retrain.monitoring.check_drift import BatchDrift
from tasks.policies import IO_TASK


@task
def find_source_files(settings: Settings, source_path: str | None) -> list[Path]:
    """The CSV files to load: --source, else RETRAIN_SOURCE, else the bundled iris data."""
    return source_files(settings, source_path)


@task(**IO_TASK)
def load_source_file(settings: Settings, path: Path) -> LoadReport:
    """Load one file as one batch (whole or not at all)."""
    engine, tables = open_dataset(settings)
    return ingest.load_file(engine, tables, path, settings.encoding, settings.chunk_rows)


@task(**IO_TASK)
def find_pending_batches(settings: Settings, readmit: str | None) -> list[str]:
    """The batches to clean: every batch not cleaned yet, or the one to readmit."""
    engine, tables = open_dataset(settings)
    with engines.reporting_errors(engine), engine.begin() as conn:
        store.create_tables(conn, tables)
        if readmit:
            return [store.find_batch(conn, tables, readmit)]
        return store.pending_batches(conn, tables)


@task(**IO_TASK)
def clean_one_batch(settings: Settings, batch_id: str, threshold: float | None) -> BatchReport:
    """Split one batch into cleaned and rejected rows in one transaction."""
    engine, tables = open_dataset(settings)
    schema = settings.load_schema()
    return clean.clean_batch(engine, tables, schema, batch_id, threshold, settings.chunk_rows)


@task(**IO_TASK)
def find_cleaned_batches(settings: Settings) -> list[str]:
    """The latest batch with cleaned rows (what `retrain drift` looks at by default)."""
    engine, tables = open_dataset(settings)
    with engines.reporting_errors(engine), engine.begin() as conn:
        store.create_tables(conn, tables)
        latest = store.latest_cleaned_batch(conn, tables)
    return [latest] if latest else []


@task(**IO_TASK)
def measure_batch_drift(settings: Settings, batch_id: str) -> BatchDrift:
    """One batch against the champion's training rows: recorded, and logged to MLflow."""
    engine, tables = open_dataset(settings)
    client = tracking.make_client(settings.tracking_uri)
    return check_drift.measure_drift(engine, tables, client, settings, batch_id)

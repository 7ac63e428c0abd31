"""The drift check of a stored batch: its cleaned rows and the champion's training rows read
from the store, the verdicts (`retrain.monitoring.drift`) logged as an MLflow run.

The champion's training rows are the training part (not the holdout) of the batches loaded
before its tuning run started: the nightly order (ingest, clean, tune) means those are the
batches it saw. With no champion yet, every other batch is the reference. The verdict goes
onto the batch's `<dataset>_batches` row and into one MLflow run, `drift-<batch>`, with an
HTML report.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from retrain.config.settings import Settings
from retrain.data.split import holdout_rows
from retrain.data.training_rows import read_training_rows
from retrain.io import store, tracking
from retrain.monitoring.drift import DriftReport, batch_drift

REFERENCE_ROWS = 50_000  # a seeded sample of the reference beyond this many rows


@dataclass(frozen=True)
class BatchDrift:
    """What the drift check of one batch found (or why it could not look)."""

    batch_id: str
    report: DriftReport | None
    run_id: str | None = None
    experiment_id: str | None = None
    skipped: str = ""

    def describe(self) -> str:
        if self.report is None:
            return f"batch {self.batch_id}: drift not measured ({self.skipped})"
        return f"batch {self.batch_id}: {self.report.describe()}"


def champion_trained_at(client: tracking.MlflowClient, model_name: str) -> datetime | None:
    """When the champion's tuning run started (naive UTC, as the store keeps times)."""
    version = tracking.alias_version(client, model_name, "champion")
    if version is None:
        return None
    started = tracking.version_started_at(client, model_name, version)
    return datetime.fromtimestamp(started / 1000, UTC).replace(tzinfo=None)


def measure_drift(
    engine: store.Engine,
    tables: store.DatasetTables,
    client: tracking.MlflowClient,
    settings: Settings,
    batch_id: str,
) -> BatchDrift:
    """Compare one cleaned batch with the champion's training rows; record and log it."""
    trained_at = champion_trained_at(client, settings.model_name)
    with engine.connect() as conn:
        earlier = store.batches_loaded_before(conn, tables, trained_at, batch_id)
        current = store.read_cleaned(conn, tables, batches=[batch_id])
    # the champion's training window of those batches: a night's check reads no more rows
    # once the window is full
    reference = read_training_rows(engine, tables, settings, earlier)[0] if earlier else None
    if current.empty:
        return BatchDrift(batch_id, None, skipped="the batch has no cleaned rows")
    if reference is None or reference.empty:
        return BatchDrift(batch_id, None, skipped="no earlier batch to compare with")
    reference = reference[~holdout_rows(reference, settings)]
    if len(reference) > REFERENCE_ROWS:
        reference = reference.sample(REFERENCE_ROWS, random_state=settings.seed)
    report = batch_drift(reference, current, settings.load_schema().feature_kinds)
    experiment = tracking.ensure_experiment(client, settings.experiment, settings.artifact_root)
    run_id = log_drift(client, experiment, batch_id, report)
    with engine.begin() as conn:
        store.record_drift(conn, tables, batch_id, report.drift_share, report.drifted_columns)
    return BatchDrift(batch_id, report, run_id, experiment)


def log_drift(
    client: tracking.MlflowClient, experiment: str, batch_id: str, report: DriftReport
) -> str:
    """One run `drift-<batch>` in the experiment: the share as a metric, the report as HTML."""
    tags = {"retrain.stage": "drift", "retrain.batch_id": batch_id,
            "retrain.drifted_columns": ",".join(report.drifted_columns)[:500]}  # fmt: skip
    run_id = tracking.start_parent_run(client, experiment, f"drift-{batch_id}", tags)
    metrics = {
        "drift_share": report.drift_share,
        "drifted_features": len(report.drifted_columns),
        "reference_rows": report.reference_rows,
        "batch_rows": report.current_rows,
    }
    tracking.log_parent_summary(client, run_id, {}, metrics)
    html = {"drift_report.html": report.html(f"Drift of batch {batch_id}")}
    tracking.log_files(client, run_id, html, {"drift.json": report.table()})
    tracking.end_run(client, run_id)
    return run_id

"""Late labels in, the served model's realized AUROC out: `retrain labels` loads a file of
ground truth into `<dataset>_labels`; the nightly run adds the labelled rows of new batches;
`retrain performance` and the nightly degradation check join them to the prediction log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pandas as pd

from retrain.config.settings import Settings
from retrain.errors import BadInput
from retrain.io import engines, labels, store, tracking
from retrain.io.labels import LabelsWritten
from retrain.monitoring import inference_runs, performance
from retrain.monitoring.performance import DayPerformance, Degradation, LabelFile


@dataclass(frozen=True)
class LabelsLoaded:
    source: str
    prepared: LabelFile
    written: LabelsWritten

    def describe(self) -> str:
        w = self.written
        return (
            f"{self.source}: {self.prepared.describe()}; {w.new} new, {w.replaced} replaced an "
            f"older label, {w.stale} older than the label kept; {w.unmatched} match no logged "
            "prediction yet (kept)"
        )


def read_label_file(path: Path, encoding: str) -> pd.DataFrame:
    """A CSV or Parquet file of labels, every column as read (ids keep their digits)."""
    if not path.is_file():
        raise BadInput(f"{path}: no such file; pass a CSV or Parquet file of ids and labels")
    if path.suffix.lower() == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, encoding=encoding, dtype=str, keep_default_na=True)


def load_labels(settings: Settings, path: Path) -> LabelsLoaded:
    """`retrain labels --source FILE`: the file's labels into `<dataset>_labels`."""
    frame = read_label_file(path, settings.encoding)
    return write_frame(settings, frame, str(path))


def write_frame(settings: Settings, frame: pd.DataFrame, source: str) -> LabelsLoaded:
    schema, now = settings.load_schema(), engines.now_utc()
    prepared = performance.label_file_rows(frame, schema.roles.ids, schema.target, now)
    engine = engines.make_engine(settings.database_url)
    written = labels.write_labels(engine, settings.dataset, prepared.rows, now)
    return LabelsLoaded(source, prepared, written)


def label_batches(settings: Settings, batch_ids: list[str]) -> LabelsLoaded | None:
    """The nightly run's part: the cleaned rows of new batches carry their labels; they go
    into `<dataset>_labels` so that answers given for the same ids are judged. None when the
    schema names no id column or no batch is new."""
    schema = settings.load_schema()
    if not schema.roles.ids or not batch_ids:
        return None
    engine, tables = store.open_dataset(settings)
    with engines.reporting_errors(engine), engine.connect() as conn:
        frame = store.read_cleaned(conn, tables, batches=batch_ids)
    return write_frame(settings, frame, f"{len(batch_ids)} new batch(es)")


def served_performance(settings: Settings, days: int) -> list[DayPerformance]:
    """Per day and version over the last `days` days (UTC), with each version's holdout AUROC."""
    engine = engines.make_engine(settings.database_url)
    since = (engines.now_utc() - timedelta(days=days - 1)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    counts = pd.DataFrame(
        labels.count_answers(engine, settings.dataset, since), columns=list(labels.COUNT_COLUMNS)
    )
    labelled = pd.DataFrame(
        labels.read_labelled_answers(engine, settings.dataset, since),
        columns=list(labels.LABELLED_COLUMNS),
    )
    holdout = holdout_aurocs(settings, sorted(set(counts["model_version"])))
    positive = settings.load_schema().positive_class
    return performance.daily_performance(counts, labelled, holdout, positive, settings.seed)


def holdout_aurocs(settings: Settings, versions: list[str]) -> dict[str, float | None]:
    """Each version's logged holdout AUROC (`test_auroc`), None for a version MLflow lacks."""
    client = tracking.make_client(settings.tracking_uri)
    found: dict[str, float | None] = {}
    for version in versions:
        try:
            found[version] = tracking.version_facts(client, settings.model_name, version)[1]
        except tracking.MlflowException:  # a version deleted since it served
            found[version] = None
    return found


def check_degradation(
    settings: Settings, days: int = 14
) -> tuple[list[DayPerformance], Degradation]:
    """The recent days and the verdict on them (RETRAIN_DEGRADATION_MARGIN)."""
    table = served_performance(settings, days)
    return table, performance.degradation(
        table, settings.degradation_margin, settings.degradation_days,
        settings.degradation_window,
    )  # fmt: skip


def log_realized_days(settings: Settings, table: list[DayPerformance]) -> list[str]:
    """Each labelled day as the run `realized-<day>` of `<experiment>-inference` (found by its
    tag, else created), with per version: realized AUROC and its interval, labelled answers,
    share labelled and the holdout AUROC; logged again as late labels arrive (latest wins)."""
    client = tracking.make_client(settings.tracking_uri)
    experiment = inference_runs.inference_experiment(client, settings)
    run_ids = []
    for day in sorted({d.day for d in table if d.auroc is not None}):
        found = tracking.find_run(client, experiment, f"tags.`retrain.realized_day` = '{day}'")
        tags = {"retrain.stage": "realized-day", "retrain.realized_day": day}
        run_id = found or tracking.start_parent_run(client, experiment, f"realized-{day}", tags)
        tracking.log_parent_summary(client, run_id, {}, day_metrics(table, day))
        if not found:
            tracking.end_run(client, run_id)
        run_ids.append(run_id)
    return run_ids


def day_metrics(table: list[DayPerformance], day: str) -> dict[str, float]:
    metrics = {}
    for d in (d for d in table if d.day == day and d.auroc is not None):
        values = {"realized_auroc": d.auroc, "auroc_low": d.low, "auroc_high": d.high,
                  "labelled": d.labelled, "share_labelled": d.share_labelled,
                  "holdout_auroc": d.holdout_auroc}  # fmt: skip
        metrics |= {f"{k}_v{d.version}": v for k, v in values.items() if v is not None}
    return metrics

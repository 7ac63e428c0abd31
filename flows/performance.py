"""Late labels and the served model's realized AUROC: the `labels` flow loads a file of
ground truth; the `performance` flow joins labels to the prediction log, publishes the table
and, when the model has degraded, emits `retrain.model.degraded` and sends the alert."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.hooks import FAILURE_HOOKS, emit_model_event, notify, run_name
from retrain.config.settings import Settings, load_settings
from retrain.monitoring.performance import HEADER, DayPerformance, Degradation
from retrain.monitoring.realized import LabelsLoaded
from tasks.monitoring import (
    judge_served_model,
    label_new_batches,
    load_label_file,
    log_realized_days,
)


@flow(name="labels", flow_run_name=run_name("labels"), timeout_seconds=3600, **FAILURE_HOOKS)
def labels(source: str) -> LabelsLoaded:
    """Load a CSV or Parquet file of ids and labels into `<dataset>_labels`."""
    from pathlib import Path

    loaded = load_label_file(load_settings(), Path(source))
    get_run_logger().info(loaded.describe())
    return loaded


def label_batches(settings: Settings, batch_ids: list[str]) -> LabelsLoaded | None:
    """The nightly run's step: new batches' labels join answers given for the same ids."""
    loaded = label_new_batches(settings, batch_ids)
    if loaded:
        get_run_logger().info(loaded.describe())
    return loaded


@flow(name="performance", flow_run_name=run_name("performance"), timeout_seconds=1800)
def performance(days: int = 14) -> Degradation:
    """The served versions' realized AUROC per day against their holdout AUROC; a degraded
    model emits `retrain.model.degraded` and raises the alert."""
    settings = load_settings()
    table, verdict = judge_served_model(settings, days)
    log_realized_days(settings, table)
    logger = get_run_logger()
    logger.info(verdict.describe())
    publish_performance(table, verdict)
    if verdict.degraded:
        logger.warning(f"the served model has degraded: {verdict.describe()}")
        emit_model_event(settings, "degraded", performance_payload(settings, verdict))
        newest = verdict.below[-1].version
        notify(settings, "performance", verdict.describe(), newest, None, kind="degraded")
    return verdict


def performance_payload(settings: Settings, verdict: Degradation) -> dict[str, object]:
    return {
        "dataset": settings.dataset,
        "margin": verdict.margin,
        "days": [d.as_dict() for d in verdict.below],
    }


def publish_performance(table: list[DayPerformance], verdict: Degradation) -> None:
    """The `performance` artifact: the table `retrain performance` prints, and the verdict."""
    lines = ["```", HEADER, *(d.line() for d in table), "```", "", verdict.describe()]
    create_markdown_artifact("\n".join(lines), key="performance", description="realized AUROC")

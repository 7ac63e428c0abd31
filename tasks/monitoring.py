"""Prefect tasks of the served model's realized performance: thin calls into the core."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from retrain.config.settings import Settings
from retrain.monitoring import realized
from retrain.monitoring.performance import DayPerformance, Degradation
from retrain.monitoring.realized import LabelsLoaded
from tasks.policies import IO_TASK


@task(**IO_TASK, cache_policy=NO_CACHE)
def load_label_file(settings: Settings, path: Path) -> LabelsLoaded:
    """A file of late labels into `<dataset>_labels` (the latest label per id wins)."""
    return realized.load_labels(settings, path)


@task(**IO_TASK, cache_policy=NO_CACHE)
def label_new_batches(settings: Settings, batch_ids: list[str]) -> LabelsLoaded | None:
    """The labels new batches carry, for answers given earlier to the same ids."""
    return realized.label_batches(settings, batch_ids)


@task(**IO_TASK, cache_policy=NO_CACHE)
def judge_served_model(settings: Settings, days: int) -> tuple[list[DayPerformance], Degradation]:
    """Realized AUROC per day and version, and whether it fell below the holdout's promise."""
    return realized.check_degradation(settings, days)


@task(**IO_TASK, cache_policy=NO_CACHE)
def log_realized_days(settings: Settings, table: list[DayPerformance]) -> list[str]:
    """Each labelled day as one run of the inference experiment, realized AUROC per version."""
    return realized.log_realized_days(settings, table)

"""Prefect task of batch scoring: a thin call into the core."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from retrain.config.settings import Settings
from retrain.io import tracking
from retrain.scoring.batch_score import ScoreReport, score_source
from tasks.policies import IO_TASK


@task(**IO_TASK, cache_policy=NO_CACHE, task_run_name="score-{source}")
def score_files(settings: Settings, source: str, output: str | None) -> ScoreReport:
    """Score the files on Spark with the champion; replace their rows in the scores table.
    Safe to retry: a file's rows are keyed by its digest and line."""
    with tracking.reporting_errors(settings.tracking_uri):
        client = tracking.make_client(settings.tracking_uri)
        return score_source(settings, client, Path(source), output)

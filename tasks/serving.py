"""Prefect tasks of promotion and serving: thin calls into the core."""

from __future__ import annotations

from datetime import timedelta

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from retrain.config.settings import Settings
from retrain.io import engines, tracking
from retrain.io.nightly_metrics import NightlyFigures, publish_nightly
from retrain.monitoring import inference_runs
from retrain.monitoring.inference_runs import ServedDay
from retrain.promotion import promote
from retrain.promotion.promote import PromotionReport
from retrain.promotion.rules import PromotionRules
from retrain.serving import deploy, rollout
from retrain.serving.deploy import DeployReport
from tasks.data import open_dataset
from tasks.policies import IO_TASK


def current_flow_run_id() -> str | None:
    return str(flow_run.id) if flow_run.id else None


def rules_from(settings: Settings) -> PromotionRules:
    return PromotionRules(
        min_improvement=settings.min_improvement,
        min_auroc=settings.min_auroc,
        require_significance=settings.require_significance,
        confidence=settings.confidence,
        seed=settings.seed,
        max_brier_increase=settings.max_brier_increase,
    )


@task(**IO_TASK, cache_policy=NO_CACHE)
def compare_and_promote(
    settings: Settings, challenger: str | None = None, hold: bool = False
) -> PromotionReport:
    """Score challenger and champion on the holdout; move the aliases when it is better (with
    `hold`, a canary's bake moves them); a rollout in progress keeps the champion."""
    engine, tables = open_dataset(settings)
    client = tracking.make_client(settings.tracking_uri)
    with tracking.reporting_errors(settings.tracking_uri):
        return promote.promote_if_better(
            engine, tables, client, settings, rules_from(settings), current_flow_run_id(),
            challenger, rollout.in_progress(settings.home), hold,
        )  # fmt: skip


@task(cache_policy=NO_CACHE, timeout_seconds=1800)
def serve_champion(settings: Settings, promotion: PromotionReport | None) -> DeployReport:
    """Serve @champion after a spare-port check; rolls back on any failure (no retries)."""
    engine, _ = open_dataset(settings)
    client = tracking.make_client(settings.tracking_uri)
    with tracking.reporting_errors(settings.tracking_uri):
        return deploy.deploy_champion(
            engine, client, settings, promotion, current_flow_run_id(), settings.health_timeout
        )


@task(cache_policy=NO_CACHE, timeout_seconds=1800)
def roll_back_champion(
    settings: Settings, to_version: str | None
) -> tuple[PromotionReport, DeployReport]:
    """Move champion back and serve it the verified way."""
    engine, _ = open_dataset(settings)
    client = tracking.make_client(settings.tracking_uri)
    with tracking.reporting_errors(settings.tracking_uri):
        return deploy.rollback_champion(engine, client, settings, to_version, current_flow_run_id())


@task(**IO_TASK, cache_policy=NO_CACHE)
def report_yesterday(settings: Settings) -> ServedDay:
    """Yesterday's prediction log as one run of the inference experiment; old rows pruned."""
    engine = engines.make_engine(settings.database_url)
    client = tracking.make_client(settings.tracking_uri)
    yesterday = (engines.now_utc() - timedelta(days=1)).date()
    return inference_runs.report_served_day(engine, client, settings, yesterday)


@task(cache_policy=NO_CACHE)
def push_nightly_metrics(settings: Settings, figures: NightlyFigures) -> None:
    """The night's figures to $RETRAIN_HOME/metrics/nightly.prom and the Pushgateway."""
    problem = publish_nightly(figures, settings.home, settings.pushgateway_url)
    if problem:
        get_run_logger().warning(problem)

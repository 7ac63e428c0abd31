"""Prefect tasks of a rollout: thin calls into `retrain.serving.rollout` and `.bake`."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

from prefect import task
from prefect.cache_policies import NO_CACHE

from retrain.config.settings import Settings
from retrain.io import tracking
from retrain.monitoring import inference_runs
from retrain.promotion.promote import PromotionReport
from retrain.serving import bake, rollout
from retrain.serving.bake import Answer, BakeEnd, BakeReading
from retrain.serving.deploy import DeployReport
from retrain.serving.rollout import Rollout
from tasks.data import open_dataset
from tasks.serving import current_flow_run_id


@task(cache_policy=NO_CACHE, timeout_seconds=1800)
def split_traffic(
    settings: Settings,
    version: str,
    mode: str,
    percent: float,
    minutes: float,
    promotion: PromotionReport | None = None,
) -> Rollout:
    """Serve `version` beside the champion, checked first, with `percent` of the requests."""
    attempt = promotion.attempt_id if promotion else None
    before = promotion.aliases_before if promotion else None
    return rollout.start_split(settings, version, mode, percent, minutes, attempt, before)


@task(cache_policy=NO_CACHE)
def watch_rollout(
    settings: Settings,
    progress: Callable[[BakeReading], None],
    finishing: Callable[[], AbstractContextManager],
) -> BakeEnd:
    """The bake: the guards every RETRAIN_BAKE_CHECK_SECONDS until the end, then the verdict
    (taken inside `finishing`, the promotion section)."""
    engine, _ = open_dataset(settings)
    client = tracking.make_client(settings.tracking_uri)
    with tracking.reporting_errors(settings.tracking_uri):
        return bake.bake(engine, client, settings, progress, finishing, current_flow_run_id())


@task(cache_policy=NO_CACHE, timeout_seconds=1800)
def promote_rollout(settings: Settings, reason: str) -> tuple[PromotionReport, DeployReport]:
    """The candidate becomes champion now, guards or not (a person's call)."""
    engine, _ = open_dataset(settings)
    client = tracking.make_client(settings.tracking_uri)
    with tracking.reporting_errors(settings.tracking_uri):
        return bake.promote_candidate(engine, client, settings, reason, current_flow_run_id())


@task(cache_policy=NO_CACHE, timeout_seconds=600)
def abort_rollout(settings: Settings, reason: str) -> Rollout:
    """Every request back to the champion; the candidate stopped."""
    engine, _ = open_dataset(settings)
    return bake.abort(engine, settings, reason, current_flow_run_id())


@task(cache_policy=NO_CACHE)
def read_rollout_traffic(settings: Settings) -> BakeReading:
    """Both versions' traffic over the running (or the last) rollout."""
    engine, _ = open_dataset(settings)
    return bake.observe(settings, engine, rollout.current_or_last(settings.home))


@task(cache_policy=NO_CACHE)
def log_rollout_report(settings: Settings, reading: BakeReading) -> str:
    """The report as one run of `<experiment>-inference`; returns its run id."""
    client = tracking.make_client(settings.tracking_uri)
    with tracking.reporting_errors(settings.tracking_uri):
        return inference_runs.log_rollout_report(
            client, settings, reading.tags(), reading.figures(), reading.markdown()
        )


@task(cache_policy=NO_CACHE)
def describe_for_approval(settings: Settings, version: str, attempt_id: int | None) -> str:
    """The approval form's description: holdout AUROCs, the decision, the canary's guards."""
    engine, _ = open_dataset(settings)
    return bake.comparison(engine, settings, version, attempt_of(settings, attempt_id))


@task(cache_policy=NO_CACHE, timeout_seconds=1800)
def settle_approval(
    settings: Settings, version: str, attempt_id: int | None, answer: Answer | None
) -> BakeEnd:
    """Promote on an approval; keep the champion on a rejection or no answer."""
    engine, _ = open_dataset(settings)
    client = tracking.make_client(settings.tracking_uri)
    attempt = attempt_of(settings, attempt_id)
    with tracking.reporting_errors(settings.tracking_uri):
        return bake.settle_approval(
            engine, client, settings, version, attempt, answer, current_flow_run_id()
        )


def attempt_of(settings: Settings, attempt_id: int | None) -> int | None:
    """The `promotions` row an approval settles: the one given, else the running canary's."""
    plan = rollout.read_rollout(settings.home)
    return attempt_id if attempt_id is not None else plan.attempt_id if plan else None

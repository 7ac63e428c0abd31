"""Rollouts: a second version takes a share of the real requests beside the champion.

`rollout-start` splits the traffic (a canary, or an A/B comparison) and hands over to the
bake. The bake (`rollout`, run name `rollout-<dataset>-<version>`) reads the guard metrics
every RETRAIN_BAKE_CHECK_SECONDS and keeps a progress artifact; on a Prefect server it is its
own flow run of the `rollout-bake` deployment, so the run that started it ends; without one it
runs inside the caller. `rollout-promote`, `rollout-abort` and `rollout-report` are for a
person in a hurry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from prefect import flow, get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    update_progress_artifact,
)
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound

from flows.hooks import FAILURE_HOOKS, emit_model_event, notify, run_name
from flows.locking import promotion_section
from retrain.config.settings import Settings, load_settings
from retrain.errors import RetrainError
from retrain.promotion.promote import PromotionReport
from retrain.serving.bake import BakeEnd, BakeReading
from retrain.serving.rollout import Rollout, read_rollout
from tasks.rollout import (
    abort_rollout,
    log_rollout_report,
    promote_rollout,
    read_rollout_traffic,
    split_traffic,
    watch_rollout,
)

BAKE_DEPLOYMENT = "rollout/rollout-bake"
BAKE_TIMEOUT = 8 * 24 * 3600  # the longest bake a setting allows, and a day


def bake_run_name() -> str:
    """`rollout-<dataset>-<version>`: which rollout this bake watches."""
    try:
        settings = load_settings()
    except RetrainError:
        return "rollout-unknown"
    plan = read_rollout(settings.home)
    return f"rollout-{settings.dataset}-{plan.version if plan else 'none'}"


class Progress:
    """The bake's UI: a progress artifact (share of the bake done) and a table of traffic and
    guards, updated at every check; one log line per check."""

    def __init__(self) -> None:
        self.artifact_id: object | None = None

    def show(self, reading: BakeReading) -> None:
        plan = reading.rollout
        total = (plan.ends - plan.started).total_seconds() or 1.0
        done = min(100.0, 100 * (1 - plan.remaining(reading.at) / total))
        if self.artifact_id is None:
            self.artifact_id = create_progress_artifact(
                done, key="rollout-progress", description=plan.describe()
            )
        else:
            update_progress_artifact(self.artifact_id, done)
        create_markdown_artifact(reading.markdown(), key="rollout", description="rollout guards")
        get_run_logger().info(reading.line())


@flow(name="rollout", flow_run_name=bake_run_name, timeout_seconds=BAKE_TIMEOUT, **FAILURE_HOOKS)
def bake() -> BakeEnd:
    """Watch the running rollout until its end: promote a canary that held its guards, roll
    back one that breached a guard (at once), end an A/B split."""
    settings = load_settings()
    end = watch_rollout(settings, Progress().show, lambda: promotion_section(settings))
    get_run_logger().info(end.describe())
    if end.outcome == "approval":
        from flows.approval import ask_approval

        plan = end.rollout
        get_run_logger().info(ask_approval(settings, plan.version, plan.attempt_id).describe())
    elif end.outcome == "rolled_back":
        announce_rolled_back(settings, end)
    elif end.outcome == "promoted" and end.deployed:
        notify(settings, "rollout", end.deployed.describe_swap(), end.deployed.version,
               end.deployed.previous_version)  # fmt: skip
    return end


def announce_rolled_back(settings: Settings, end: BakeEnd) -> None:
    """The event `retrain.model.rolled_back` and the alert: a promotion failed."""
    plan = end.rollout
    payload = {"version": plan.version if plan else None, "reason": end.reason,
               "metric": end.breach.metric if end.breach else None,
               "value": end.breach.value if end.breach else None,
               "limit": end.breach.limit if end.breach else None}  # fmt: skip
    emit_model_event(settings, "rolled_back", payload)
    version, champion = (plan.version, plan.champion) if plan else (None, None)
    what = plan.mode if plan else "rollout"
    notify(settings, "rollout", f"{what} rolled back: {end.reason}", version, champion,
           kind="failure")  # fmt: skip


@dataclass(frozen=True)
class Handed:
    """Where the bake went: its own flow run (`run_name`), or its verdict here."""

    text: str
    run_name: str | None = None
    end: BakeEnd | None = None

    def describe(self) -> str:
        return self.text


def start_elsewhere(deployment: str, parameters: dict, name: str | None = None) -> str | None:
    """The name of a new run of `deployment` when the Prefect server has it and a worker of
    its pool is online (the caller then ends); None when the work must run here (Prefect's
    temporary API, or no worker to pick the run up: it would wait forever)."""
    from prefect import get_client
    from prefect.client.schemas.objects import WorkerStatus

    try:
        with get_client(sync_client=True) as client:
            pool = client.read_deployment_by_name(deployment).work_pool_name
            workers = client.read_workers_for_work_pool(pool) if pool else []
    except ObjectNotFound:
        return None
    if not any(w.status == WorkerStatus.ONLINE for w in workers):
        get_run_logger().info(f"no worker of pool {pool} is online: {deployment} runs here")
        return None
    run = run_deployment(deployment, parameters=parameters, timeout=0, as_subflow=False,
                         flow_run_name=name)  # fmt: skip
    return run.name


def hand_over(settings: Settings, plan: Rollout) -> Handed:
    """Start the bake as its own flow run of `rollout-bake` when the Prefect server has that
    deployment and a worker for it (the caller ends now); else bake here, blocking until the
    verdict."""
    name = start_elsewhere(BAKE_DEPLOYMENT, {}, f"rollout-{settings.dataset}-{plan.version}")
    if name is None:
        end = bake()
        return Handed(end.describe(), end=end)
    text = f"the bake runs as flow run {name} ({BAKE_DEPLOYMENT}); {plan.describe()}"
    return Handed(text, name)


@flow(name="rollout-start", flow_run_name=run_name("rollout-start"), timeout_seconds=BAKE_TIMEOUT,
      **FAILURE_HOOKS)  # fmt: skip
def start_rollout(
    version: str,
    mode: Literal["canary", "ab", "shadow"] = "canary",
    percent: float | None = None,
    minutes: float | None = None,
) -> str:
    """Serve `version` beside the champion with a share of the requests, then bake.

    Args:
        version: the registered version to serve beside the champion.
        mode: canary (the bake promotes it or rolls it back), shadow (the same, on the
            champion's logged requests replayed to it: no client sees its answers) or ab (a
            comparison that ends after `minutes` and promotes nobody).
        percent: its share of the requests; empty: RETRAIN_CANARY_PERCENT.
        minutes: how long; empty: RETRAIN_BAKE_MINUTES.
    """
    settings = load_settings()
    plan = split_traffic(settings, version, mode, percent or settings.canary_percent,
                         minutes or settings.bake_minutes)  # fmt: skip
    get_run_logger().info(plan.describe())
    return hand_over(settings, plan).describe()


def start_canary(settings: Settings, promotion: PromotionReport, mode: str = "canary") -> Rollout:
    """The nightly run's rollout: the promoted challenger as a canary or a shadow (the bake
    follows)."""
    plan = split_traffic(settings, promotion.challenger, mode, settings.canary_percent,
                         settings.bake_minutes, promotion)  # fmt: skip
    get_run_logger().info(plan.describe())
    return plan


@flow(name="rollout-promote", flow_run_name=run_name("rollout-promote"), timeout_seconds=1800,
      **FAILURE_HOOKS)  # fmt: skip
def promote_now(reason: str = "promoted by hand before the end of its rollout") -> str:
    """Make the rollout's version champion now and serve it the verified way."""
    settings = load_settings()
    with promotion_section(settings):
        promotion, deployed = promote_rollout(settings, reason)
    return f"{promotion.describe()}; {deployed.describe()}"


@flow(name="rollout-abort", flow_run_name=run_name("rollout-abort"), timeout_seconds=600,
      **FAILURE_HOOKS)  # fmt: skip
def abort_now(reason: str = "aborted by hand") -> str:
    """End the rollout: every request to the champion, the candidate stopped."""
    return abort_rollout(load_settings(), reason).describe()


@flow(name="rollout-report", flow_run_name=run_name("rollout-report"), timeout_seconds=600)
def report() -> BakeReading:
    """Per version over the running (or last) rollout: requests, rows, latency, class shares,
    error rate, realized AUROC and the interval on the difference; an artifact and an MLflow
    run in `<experiment>-inference`."""
    settings = load_settings()
    reading = read_rollout_traffic(settings)
    create_markdown_artifact(reading.markdown(), key="rollout-report", description="rollout")
    run_id = log_rollout_report(settings, reading)
    get_run_logger().info(
        f"{reading.line()}; MLflow run {run_id} in {settings.experiment}-inference"
    )
    return reading

"""The deploy flow: serve @champion, verified on a spare port first, rolled back on failure."""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows.hooks import DEPLOY_HOOKS, FAILURE_HOOKS, announce_rollback, notify, run_name
from flows.locking import promotion_section
from retrain.config.settings import load_settings
from retrain.promotion.promote import PromotionReport
from retrain.serving.deploy import DeployReport
from retrain.serving.model_server import ServeFailed
from tasks.serving import roll_back_champion, serve_champion


@flow(
    name="deploy",
    flow_run_name=run_name("deploy"),
    timeout_seconds=1800,
    validate_parameters=False,
    **DEPLOY_HOOKS,
)
def deploy(promotion: PromotionReport | None = None) -> DeployReport:
    """Swap the served model to @champion; a failure puts aliases and server back."""
    settings = load_settings()
    with promotion_section(settings):
        try:
            report = serve_champion(settings, promotion)
        except ServeFailed as err:
            announce_rollback(settings, err)
            raise
    get_run_logger().info(report.describe())
    if promotion is None and report.changed:  # the nightly flow announces its own
        notify(settings, "deploy", report.describe_swap(), report.version, report.previous_version)
    return report


@flow(name="rollback", flow_run_name=run_name("rollback"), timeout_seconds=1800, **FAILURE_HOOKS)
def rollback(to_version: str | None = None) -> DeployReport:
    """Put champion back on the previous (or given) version and serve it."""
    settings = load_settings()
    with promotion_section(settings):
        promotion, report = roll_back_champion(settings, to_version)
    logger = get_run_logger()
    logger.info(promotion.describe())
    logger.info(report.describe())
    return report


@flow(name="redeploy", flow_run_name=run_name("redeploy"), timeout_seconds=1800, **FAILURE_HOOKS)
def redeploy() -> DeployReport:
    """Serve the current champion again (after a reboot, say): the verified deploy."""
    return deploy()

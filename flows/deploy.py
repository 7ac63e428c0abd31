"""The deploy flow: serve @champion, verified on a spare port first, rolled back on failure."""

from __future__ import annotations

from prefect import flow, get_run_logger

from retrain.deploy import DeployReport
from retrain.promote import PromotionReport
from retrain.settings import load_settings
from tasks.serving import roll_back_champion, serve_champion


@flow(name="deploy", timeout_seconds=1800, validate_parameters=False)
def deploy(promotion: PromotionReport | None = None) -> DeployReport:
    """Swap the served model to @champion; a failure puts aliases and server back."""
    report = serve_champion(load_settings(), promotion)
    get_run_logger().info(report.describe())
    return report


@flow(name="rollback", timeout_seconds=1800)
def rollback(to_version: str | None = None) -> DeployReport:
    """Put champion back on the previous (or given) version and serve it."""
    promotion, report = roll_back_champion(load_settings(), to_version)
    logger = get_run_logger()
    logger.info(promotion.describe())
    logger.info(report.describe())
    return report

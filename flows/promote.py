"""The promote flow: challenger against champion on the same holdout rows, by AUROC."""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows.hooks import FAILURE_HOOKS, announce_promotion, log_mlflow_links, run_name
from flows.locking import promotion_section
from retrain.config.settings import load_settings
from retrain.promotion.promote import PromotionReport
from tasks.serving import compare_and_promote


@flow(name="promote", flow_run_name=run_name("promote"), timeout_seconds=1800, **FAILURE_HOOKS)
def promote(
    min_improvement: float | None = None,
    require_significance: bool | None = None,
    confidence: float | None = None,
    challenger: str | None = None,
    announce: bool = True,
    hold: bool = False,
) -> PromotionReport:
    """Promote the challenger when it beats @champion; a kept champion is a normal outcome.

    Args:
        min_improvement: AUROC margin to beat; empty: RETRAIN_MIN_IMPROVEMENT.
        require_significance: also require a paired bootstrap to find the challenger better.
        confidence: confidence of that bootstrap; empty: RETRAIN_CONFIDENCE.
        challenger: model version to judge; empty: the one the `challenger` alias names.
        announce: write the `promotion` artifact and emit the event now (the webhook's
            notice waits for the deploy that serves it); the nightly flow does all of it
            after its deploy, with the final decision.
        hold: a better challenger goes to a canary (RETRAIN_ROLLOUT=canary): its bake moves
            the aliases, not this flow.
    """
    settings = load_settings(
        min_improvement=min_improvement,
        require_significance=require_significance,
        confidence=confidence,
    )
    with promotion_section(settings):
        report = compare_and_promote(settings, challenger, hold)
    get_run_logger().info(report.describe())
    log_mlflow_links(settings, report.challenger, report.champion)
    if announce:
        announce_promotion(settings, report, served=False)
    return report

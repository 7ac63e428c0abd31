"""The clean flow: split every batch not yet cleaned into `<dataset>_cleaned` and `_rejected`."""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows.drift import judge_drift
from flows.hooks import FAILURE_HOOKS, run_name
from retrain.config.settings import Settings, load_settings
from retrain.data.clean import BatchReport
from retrain.errors import StageFailed
from tasks.data import clean_one_batch, find_pending_batches


@flow(name="clean", flow_run_name=run_name("clean"), timeout_seconds=3600, **FAILURE_HOOKS)
def clean(
    readmit: str | None = None,
    max_reject_fraction: float | None = None,
    drift_origin: str = "drift-check",
) -> list[BatchReport]:
    """Clean pending batches, then measure each cleaned batch's drift; a batch with too many
    bad rows is quarantined and the flow fails.

    `readmit` takes a quarantined batch back in: it is cleaned again with `max_reject_fraction`
    when given, otherwise with no threshold at all (its good rows are admitted).
    `drift_origin` labels the drift event (the nightly run passes `nightly`).
    """
    logger = get_run_logger()
    settings = load_settings(max_reject_fraction=max_reject_fraction)
    threshold = settings.max_reject_fraction
    if readmit and max_reject_fraction is None:
        threshold = None
    batches = find_pending_batches(settings, readmit)
    if not batches:
        logger.info("nothing new to clean")
    reports = [clean_one_batch(settings, batch_id, threshold) for batch_id in batches]
    for report in reports:
        logger.info(report.describe())
    measure_fresh_drift(settings, reports, drift_origin)
    quarantined = [r for r in reports if r.quarantined]
    if quarantined:
        raise StageFailed(
            quarantined[0].describe() + "; fix the source and load it again, or "
            f"take it back with `retrain clean --readmit {quarantined[0].batch_id}`"
        )
    return reports


def measure_fresh_drift(settings: Settings, reports: list[BatchReport], origin: str) -> None:
    """Drift of the batches just cleaned; a drift error is logged and never fails the clean."""
    fresh = [r.batch_id for r in reports if r.cleaned and not r.quarantined]
    if not fresh:
        return
    try:
        judge_drift(settings, fresh, origin)
    except Exception as err:
        get_run_logger().warning(f"drift not measured; the clean stands: {err}")

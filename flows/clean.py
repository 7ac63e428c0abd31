"""The clean flow: split every batch not yet cleaned into `<dataset>_cleaned` and `_rejected`."""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows.hooks import FAILURE_HOOKS, run_name
from retrain.clean import BatchReport
from retrain.errors import StageFailed
from retrain.settings import load_settings
from tasks.data import clean_one_batch, find_pending_batches


@flow(name="clean", flow_run_name=run_name("clean"), timeout_seconds=3600, **FAILURE_HOOKS)
def clean(
    readmit: str | None = None, max_reject_fraction: float | None = None
) -> list[BatchReport]:
    """Clean pending batches; a batch with too many bad rows is quarantined and the flow fails.

    `readmit` takes a quarantined batch back in: it is cleaned again with `max_reject_fraction`
    when given, otherwise with no threshold at all (its good rows are admitted).
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
    quarantined = [r for r in reports if r.quarantined]
    if quarantined:
        raise StageFailed(
            quarantined[0].describe() + "; fix the source and load it again, or "
            f"take it back with `retrain clean --readmit {quarantined[0].batch_id}`"
        )
    return reports

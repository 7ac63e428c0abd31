"""The drift flow: cleaned batches against the rows the champion was trained on. The clean
flow runs the same check on every batch it cleans (`judge_drift`), so `retrain drift` is for
looking again at batches cleaned before."""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows.hooks import FAILURE_HOOKS, emit_drift_event, publish_drift, run_name
from retrain.config.settings import Settings, load_settings
from retrain.monitoring.check_drift import BatchDrift
from tasks.data import find_cleaned_batches, measure_batch_drift


@flow(name="drift", flow_run_name=run_name("drift"), timeout_seconds=1800, **FAILURE_HOOKS)
def drift(batches: list[str] | None = None, origin: str = "drift-check") -> list[BatchDrift]:
    """Measure drift per batch (default: the latest cleaned batch); above
    RETRAIN_DRIFT_THRESHOLD emit `retrain.data.drifted`, labelled with `origin`."""
    settings = load_settings()
    return judge_drift(settings, batches or find_cleaned_batches(settings), origin)


def judge_drift(settings: Settings, batches: list[str], origin: str) -> list[BatchDrift]:
    """Each batch's drift, recorded, logged and published; the event above the threshold
    carries `origin` (a nightly clean says `nightly`: that night retrains anyway, so
    retrain-on-drift does not react to it)."""
    logger = get_run_logger()
    results = [measure_batch_drift(settings, b) for b in batches]
    for result in results:
        logger.info(result.describe())
        if result.report and result.report.drift_share > settings.drift_threshold:
            logger.warning(f"batch {result.batch_id} drifted beyond {settings.drift_threshold}")
            emit_drift_event(settings, result, origin)
    if results:
        publish_drift(settings, results)
    return results

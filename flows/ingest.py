"""The ingest flow: load a CSV file, or every new CSV file of a folder, into `<dataset>_raw`."""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows.hooks import run_name
from retrain.config.settings import load_settings
from retrain.data.ingest import LoadReport
from retrain.errors import BadInput
from tasks.data import find_source_files, load_source_file


@flow(name="ingest", flow_run_name=run_name("ingest"), timeout_seconds=3600)
def ingest(source: str | None = None, encoding: str | None = None) -> list[LoadReport]:
    """Load each source file as one batch: seen files add nothing, bad files are refused."""
    logger = get_run_logger()
    settings = load_settings(encoding=encoding)
    reports, refused = [], []
    for path in find_source_files(settings, source):
        state = load_source_file(settings, path, return_state=True)
        outcome = state.result(raise_on_failure=False)
        if isinstance(outcome, BadInput):
            refused.append(str(outcome))
            continue
        if isinstance(outcome, BaseException):
            raise outcome
        logger.info(outcome.describe())
        reports.append(outcome)
    if refused:
        raise BadInput(
            refused[0]
            + (f" (and {len(refused) - 1} more files refused)" if len(refused) > 1 else "")
        )
    return reports

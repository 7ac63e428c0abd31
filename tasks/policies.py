"""Retry policy shared by the I/O tasks: back off and retry transient store errors only."""

from __future__ import annotations

from typing import Any

from prefect.tasks import exponential_backoff
from sqlalchemy.exc import DBAPIError

from retrain.errors import RetrainError
from retrain.io import engines

IO_RETRIES = 3
IO_BACKOFF = exponential_backoff(backoff_factor=2)


def is_transient(_task: Any, _task_run: Any, state: Any) -> bool:
    """Retry a store that did not answer or was busy (a lock); everything else is final: bad
    input, a quarantine, a changed schema, a statement the database refused, bad credentials."""
    exc = state.result(raise_on_failure=False)
    if isinstance(exc, DBAPIError):  # one that escaped `engines.reporting_errors`
        return engines.error_kind(exc) in engines.TRANSIENT_KINDS
    if isinstance(exc, RetrainError):
        return exc.transient
    return isinstance(exc, ConnectionError | TimeoutError)


IO_TASK = {
    "retries": IO_RETRIES,
    "retry_delay_seconds": IO_BACKOFF,
    "retry_condition_fn": is_transient,
}

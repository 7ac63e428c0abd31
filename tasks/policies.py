"""Retry policy shared by the I/O tasks: back off and retry transient store errors only."""

from __future__ import annotations

from typing import Any

from prefect.tasks import exponential_backoff
from sqlalchemy.exc import DBAPIError

from retrain.errors import RetrainError, StoreUnreachable

IO_RETRIES = 3
IO_BACKOFF = exponential_backoff(backoff_factor=2)


def is_transient(_task: Any, _task_run: Any, state: Any) -> bool:
    """Retry database/tracking hiccups; an expected failure (bad input, quarantine) is final."""
    exc = state.result(raise_on_failure=False)
    if isinstance(exc, StoreUnreachable):
        return True
    if isinstance(exc, RetrainError):
        return False
    return isinstance(exc, DBAPIError | ConnectionError | TimeoutError | OSError)


IO_TASK = {
    "retries": IO_RETRIES,
    "retry_delay_seconds": IO_BACKOFF,
    "retry_condition_fn": is_transient,
}

"""One promotion at a time: the Prefect global concurrency limit on a server, and the data
store's lock always (it is what guards runs that have no server)."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from prefect import get_run_logger
from prefect.concurrency.sync import concurrency

from retrain import locks, store
from retrain.settings import Settings

PROMOTION_LIMIT = "retrain-promotion"
_depth = threading.local()


@contextmanager
def promotion_section(settings: Settings) -> Iterator[None]:
    """Hold both guards around promote + deploy; re-entrant within one process, so the
    nightly flow and the stage subflows it calls take them once."""
    if getattr(_depth, "value", 0):
        _depth.value += 1
        try:
            yield
        finally:
            _depth.value -= 1
        return
    engine = store.make_engine(settings.database_url)
    owner = f"{socket.gethostname()}:{os.getpid()}"
    with (
        locks.held(engine, "promotion", owner, settings.lock_wait, on_wait=say_waiting),
        concurrency(PROMOTION_LIMIT, occupy=1, timeout_seconds=settings.lock_wait),
    ):
        _depth.value = 1
        try:
            yield
        finally:
            _depth.value = 0


def say_waiting(holder: str) -> None:
    """Tell the person following the run why it stalls."""
    get_run_logger().info("waiting for the promotion lock, held by %s", holder)

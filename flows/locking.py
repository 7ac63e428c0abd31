"""One promotion at a time: the Prefect global concurrency limit on a server, and the data
store's lock always (it is what guards runs that have no server)."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from prefect import get_run_logger
from prefect.concurrency.sync import concurrency

from retrain.config.settings import Settings
from retrain.errors import StageFailed
from retrain.io import engines, locks

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
    engine = engines.make_engine(settings.database_url)
    owner = f"{socket.gethostname()}:{os.getpid()}"
    with (
        locks.held(engine, "promotion", owner, settings.lock_wait, on_wait=say_waiting),
        promotion_slot(settings.lock_wait),
    ):
        _depth.value = 1
        try:
            yield
        finally:
            _depth.value = 0


@contextmanager
def promotion_slot(wait: float) -> Iterator[None]:
    """The server's one promotion slot; still taken after `wait` seconds is a stage failure
    in words, not Prefect's timeout traceback."""
    with ExitStack() as stack:
        try:
            stack.enter_context(concurrency(PROMOTION_LIMIT, occupy=1, timeout_seconds=wait))
        except TimeoutError as err:
            raise StageFailed(
                f"the {PROMOTION_LIMIT} concurrency limit on the Prefect server stayed taken "
                f"for {wait:.0f} s (RETRAIN_LOCK_WAIT): another run is promoting or deploying; "
                "try again when it ends, or see Concurrency in the Prefect UI"
            ) from err
        yield


def say_waiting(holder: str) -> None:
    """Tell the person following the run why it stalls."""
    get_run_logger().info("waiting for the promotion lock, held by %s", holder)

"""Trial claims on a shared Optuna study (SQLAlchemy adapter): workers on any number of
machines run exactly `total` trials between them, a dead worker's trial included.

Optuna's `n_trials` counts per worker and `MaxTrialsCallback` can overshoot by a trial per
worker, so each worker claims its next trial under a MySQL named lock held from the count
until the new trial exists. A trial claimed by a worker that died stays RUNNING until its
heartbeat is stale; Optuna then fails it and `RetryFailedTrialCallback` queues a copy
(WAITING), which the next claim picks up."""

from __future__ import annotations

import hashlib
import time
import warnings
from collections import Counter
from collections.abc import Callable

import optuna
from sqlalchemy import Connection, text

from retrain.db import make_engine
from retrain.errors import BadInput, StageFailed

State = optuna.trial.TrialState
LOCK_WAIT_SECONDS = 60


class TrialClaims:
    """One worker's handle on the study's claims: `take` before each trial (it returns with
    the lock held), `release` as soon as the trial runs."""

    def __init__(self, url: str, study_name: str, total: int, poll_seconds: float) -> None:
        if make_engine(url).dialect.name not in ("mysql", "mariadb"):
            raise BadInput(f"trial claims need a MySQL/MariaDB Optuna storage, not {url!r}")
        self.url, self.total, self.poll_seconds = url, total, poll_seconds
        self.name = "retrain-study-" + hashlib.sha1(study_name.encode()).hexdigest()[:32]
        self.conn: Connection | None = None

    def take(self, study: optuna.Study, stop: Callable[[], bool]) -> bool:
        """True with the lock held when this worker should ask for a trial; False when every
        trial is claimed and none is left running, or when `stop()` says the time is up. A
        worker waits (polling) while others still run trials that may die and come back."""
        while not stop():
            self.acquire()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
            states = Counter(t.state for t in study.get_trials(deepcopy=False))
            claimed = states.total() - states[State.FAIL]
            if claimed < self.total or states[State.WAITING]:
                return True
            self.release()
            if not states[State.RUNNING]:
                return False
            time.sleep(self.poll_seconds)
        return False

    def acquire(self) -> None:
        """Wait for the lock (GET_LOCK gives up after LOCK_WAIT_SECONDS: ask again)."""
        conn = make_engine(self.url).connect()
        query, args = text("SELECT GET_LOCK(:n, :t)"), {"n": self.name, "t": LOCK_WAIT_SECONDS}
        while (got := conn.execute(query, args).scalar()) == 0:
            continue
        if got != 1:
            conn.close()
            raise StageFailed(f"the database refused the trial-claim lock {self.name}")
        self.conn = conn

    def release(self) -> None:
        """Give the lock back (a no-op when it is not held)."""
        if self.conn is None:
            return
        conn, self.conn = self.conn, None
        try:
            conn.execute(text("SELECT RELEASE_LOCK(:n)"), {"n": self.name})
        finally:
            conn.close()

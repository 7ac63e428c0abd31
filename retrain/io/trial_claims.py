"""Trial claims on a shared Optuna study (SQLAlchemy adapter): workers on any number of
machines run exactly `total` trials between them, a dead worker's trial included.

Optuna's `n_trials` counts per worker and `MaxTrialsCallback` can overshoot by a trial per
worker, so each worker claims its next trial under a MySQL named lock (the claim lock), held
from the count until the new trial carries the worker's id. Each worker also holds a lock of
its own for as long as it lives, which MySQL frees when its connection dies.

A trial whose worker died is failed and queued again with its parameters
(`RetryFailedTrialCallback`, WAITING), for the next claim to pick up. Optuna's heartbeat
finds most of them (no heartbeat for two intervals); the claims find the rest at once: a
RUNNING trial whose worker's lock is free, or one with no worker id at all, whose worker died
holding the claim lock before its trial started (and before its first heartbeat, so Optuna
would leave it RUNNING for ever)."""

from __future__ import annotations

import hashlib
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Callable

import optuna
from sqlalchemy import Connection, text

from retrain.errors import BadInput, StageFailed
from retrain.io.engines import make_engine

State = optuna.trial.TrialState
LOCK_WAIT_SECONDS = 60
WORKER_ATTR = "retrain.worker"
STOPPED_ATTR = "retrain.stopped"  # a study attribute: the tune ended (cancelled or failed)
MAX_RETRY = 2  # times a dead worker's trial is queued again


def worker_lock(worker: str) -> str:
    return f"retrain-worker-{worker}"


def retry_dead_trial(study: optuna.Study, number: int) -> None:
    """Fail a trial whose worker died and queue it again, as Optuna's heartbeat check does
    (`RetryFailedTrialCallback`); a trial someone else failed first is left alone."""
    try:
        study.tell(number, state=State.FAIL)
    except (RuntimeError, ValueError):  # already finished: another worker got there first
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryFailedTrialCallback(max_retry=MAX_RETRY)
    retry(study, study.get_trials(deepcopy=True)[number])


class TrialClaims:
    """One worker's handle on the study's claims: `take` before each trial (it returns with
    the claim lock held), `start` as the trial begins, `close` when the worker ends."""

    def __init__(self, url: str, study_name: str, total: int, poll_seconds: float) -> None:
        if make_engine(url).dialect.name not in ("mysql", "mariadb"):
            raise BadInput(f"trial claims need a MySQL/MariaDB Optuna storage, not {url!r}")
        self.url, self.total, self.poll_seconds = url, total, poll_seconds
        self.name = "retrain-study-" + hashlib.sha1(study_name.encode()).hexdigest()[:32]
        self.worker = uuid.uuid4().hex[:16]
        self.conn: Connection | None = None
        self.alive = self.lock(worker_lock(self.worker), 0)

    def take(self, study: optuna.Study, stop: Callable[[], bool]) -> bool:
        """True with the claim lock held when this worker should ask for a trial; False when
        every trial is claimed and none is left running, when `stop()` says the time is up,
        or when the tune has stopped the study. A worker waits (polling) while others still
        run trials that may die."""
        while not (stop() or study.user_attrs.get(STOPPED_ATTR)):
            self.conn = self.lock(self.name, LOCK_WAIT_SECONDS)
            self.fail_dead_trials(study)
            states = Counter(t.state for t in study.get_trials(deepcopy=False))
            claimed = states.total() - states[State.FAIL]
            if claimed < self.total or states[State.WAITING]:
                return True
            self.release()
            if not states[State.RUNNING]:
                return False
            time.sleep(self.poll_seconds)
        return False

    def fail_dead_trials(self, study: optuna.Study) -> None:
        """Under the claim lock: every live worker's RUNNING trial carries its id."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        for trial in study.get_trials(deepcopy=False, states=(State.RUNNING,)):
            if not self.is_alive(trial.user_attrs.get(WORKER_ATTR)):
                retry_dead_trial(study, trial.number)

    def is_alive(self, worker: str | None) -> bool:
        if worker is None:
            return False
        query = text("SELECT IS_USED_LOCK(:n)")
        return self.alive.execute(query, {"n": worker_lock(worker)}).scalar() is not None

    def start(self, trial: optuna.Trial) -> None:
        """The trial begins: mark it as this worker's, then let the next worker claim."""
        trial.set_user_attr(WORKER_ATTR, self.worker)
        self.release()

    def lock(self, name: str, wait_seconds: int) -> Connection:
        """A connection holding the named lock (GET_LOCK gives up after `wait_seconds`:
        ask again)."""
        conn = make_engine(self.url).connect()
        query, args = text("SELECT GET_LOCK(:n, :t)"), {"n": name, "t": wait_seconds}
        while (got := conn.execute(query, args).scalar()) == 0:
            continue
        if got != 1:
            conn.close()
            raise StageFailed(f"the database refused the named lock {name}")
        return conn

    def release(self) -> None:
        """Give the claim lock back (a no-op when it is not held)."""
        if self.conn is not None:
            conn, self.conn = self.conn, None
            unlock(conn, self.name)

    def close(self) -> None:
        self.release()
        unlock(self.alive, worker_lock(self.worker))


def unlock(conn: Connection, name: str) -> None:
    try:
        conn.execute(text("SELECT RELEASE_LOCK(:n)"), {"n": name})
    finally:
        conn.close()

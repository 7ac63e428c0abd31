"""Trial workers as processes on a real Dask cluster (scheduler and two workers started here),
sharing one Optuna study on the test MariaDB; one worker is killed with SIGKILL mid-trial,
and one is frozen with SIGSTOP (alive to MySQL, silent to the heartbeat)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, suppress
from datetime import UTC, datetime
from pathlib import Path

import optuna
import pytest
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from retrain.config.settings import load_settings
from retrain.io import tracking
from tests.support import services

pytestmark = [pytest.mark.integration, pytest.mark.slow]
State = optuna.trial.TrialState
BIN = Path(sys.executable).parent
TRIALS = 6


def dask_command(*args: str) -> list[str]:
    return [str(BIN / "dask"), *args, "--host", "127.0.0.1"]


@pytest.fixture
def dask_cluster(tmp_path: Path) -> Iterator[tuple[str, list[subprocess.Popen]]]:
    """`dask scheduler` and two single-threaded `dask worker` processes (no nanny, so a killed
    worker stays dead), on loopback; yields the scheduler address and the workers."""
    port, dashboard = services.free_port(), services.free_port()
    address = f"tcp://127.0.0.1:{port}"
    with ExitStack() as stack:
        scheduler = dask_command(
            "scheduler", "--port", str(port), "--dashboard-address", f"127.0.0.1:{dashboard}"
        )
        health = f"http://127.0.0.1:{dashboard}/health"
        ready = lambda: services.http_ok(health)  # noqa: E731
        stack.enter_context(
            services.running(scheduler, dict(os.environ), tmp_path / "sched.log", ready, 60)
        )
        workers = []
        for name in ("w0", "w1"):
            command = dask_command(
                "worker", address, "--nthreads", "1", "--no-nanny", "--name", name,
                "--dashboard-address", "127.0.0.1:0",
            )  # fmt: skip
            joined = lambda name=name: worker_joined(address, name)  # noqa: E731
            log = tmp_path / f"{name}.log"
            workers.append(
                stack.enter_context(services.running(command, dict(os.environ), log, joined, 60))
            )
            stack.callback(stop_session, workers[-1])  # after `running` has stopped it
        yield address, workers


def stop_session(worker: subprocess.Popen) -> None:
    """Kill what is left of a worker's session by its id (the worker's pid): the fold
    processes of a worker the test killed outlive it."""
    with suppress(ProcessLookupError):
        os.killpg(worker.pid, signal.SIGKILL)


def worker_joined(address: str, name: str) -> None:
    from distributed import Client

    with Client(address, timeout=5) as client:
        names = {w["name"] for w in client.scheduler_info()["workers"].values()}
    if name not in names:
        raise RuntimeError(f"{name} has not joined")


def find_study(storage: str, dataset: str, timeout: float = 120) -> optuna.Study:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        names = [n for n in optuna.get_all_study_names(storage) if n.startswith(dataset)]
        if names:
            return optuna.load_study(study_name=names[0], storage=storage)
        time.sleep(0.2)
    raise AssertionError("the tune flow created no study")


def wait_for_two_running(study: optuna.Study, timeout: float = 180) -> None:
    """Until both workers are inside a trial, after one trial has completed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = Counter(t.state for t in study.get_trials(deepcopy=False))
        if states[State.RUNNING] == 2 and states[State.COMPLETE] >= 1:
            return
        time.sleep(0.05)
    raise AssertionError(f"never two trials running at once: {states}")


async def task_run_names(since: datetime) -> set[str]:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return {run.name for run in await client.read_task_runs() if run.created >= since}


@pytest.mark.heavy
@pytest.mark.parametrize("db_url", ["mysql"], indirect=True)
def test_a_killed_worker_s_trial_is_failed_and_retried_by_the_other(
    prefect_api: str, env: dict, dask_cluster: tuple[str, list[subprocess.Popen]], tmp_path: Path
) -> None:
    from flows.clean import clean
    from flows.ingest import ingest

    ingest()
    clean()
    address, workers = dask_cluster
    since = datetime.now(UTC)
    environ = {
        **os.environ, "PREFECT_API_URL": prefect_api, "RETRAIN_DASK_ADDRESS": address,
        # the killed worker is found by its lock, at once; a heartbeat of 10 s keeps a live
        # worker starved of CPU on a loaded machine from being failed as silent
        "RETRAIN_TUNE_HEARTBEAT": "10", "RETRAIN_TUNE_PRUNE": "false",
        "RETRAIN_FAMILY": "random_forest",
    }  # fmt: skip
    log = tmp_path / "tune.log"
    tune = subprocess.Popen(
        [str(BIN / "retrain"), "tune", "--workers", "2", "--trials", str(TRIALS)],
        env=environ, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        study = find_study(env["RETRAIN_DB_URL"], env["RETRAIN_DATASET"])
        wait_for_two_running(study)
        os.kill(workers[1].pid, signal.SIGKILL)
        assert tune.wait(300) == 0, log.read_text()[-3000:]
    finally:
        services.stop_pid(tune)
    trials = study.get_trials(deepcopy=False)
    states = Counter(t.state for t in trials)
    assert states == {State.COMPLETE: TRIALS, State.FAIL: 1}, log.read_text()[-3000:]
    (failed,) = [t for t in trials if t.state == State.FAIL]
    retried = [optuna.storages.RetryFailedTrialCallback.retried_trial_number(t) for t in trials]
    assert retried.count(failed.number) == 1
    settings = load_settings()
    client = tracking.make_client(settings.tracking_uri)
    experiment = client.get_experiment_by_name(settings.experiment)
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if MLFLOW_PARENT_RUN_ID not in r.data.tags]
    children = [r for r in runs if r.data.tags.get(MLFLOW_PARENT_RUN_ID) == parent.info.run_id]
    assert parent.data.tags["optuna.study_name"] == study.study_name
    completed = {t.number for t in trials if t.state == State.COMPLETE}
    assert {int(c.data.tags["optuna.trial"]) for c in children} == completed
    assert len(children) == TRIALS and parent.info.status == "FINISHED"
    assert {"trial-worker-0", "trial-worker-1"} <= asyncio.run(task_run_names(since))
    assert workers[0].poll() is None and workers[1].poll() == -signal.SIGKILL


FROZEN_WORKER = """
import sys, time
import optuna
from retrain.io.trial_claims import TrialClaims
from retrain.training.tuning import study_storage

url, name = sys.argv[1], sys.argv[2]
study = optuna.load_study(study_name=name, storage=study_storage(url, 1))
claims = TrialClaims(url, name, 2, 0.2)

def objective(trial):
    claims.start(trial)
    # a heartbeat on record before the test freezes us (Optuna's thread may not have run yet)
    storage = study_storage(url, 1)
    study_id = storage.get_study_id_from_name(name)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
    storage.record_heartbeat(trial_id)
    print("running", flush=True)
    time.sleep(600)

claims.take(study, lambda: False)
study.optimize(objective, n_trials=1)
"""


def test_a_frozen_worker_keeps_its_lock_but_its_silent_trial_is_retried(mysql_url: str) -> None:
    """SIGSTOP: the worker's connection (and so its liveness lock) stays open, but its
    heartbeat stops; Optuna's heartbeat check fails the trial and the retry runs elsewhere."""
    from retrain.io.trial_claims import TrialClaims
    from retrain.training.tuning import study_storage

    name = f"frozen-{uuid.uuid4().hex[:8]}"
    optuna.create_study(study_name=name, storage=study_storage(mysql_url, 1))
    frozen = subprocess.Popen(
        [sys.executable, "-c", FROZEN_WORKER, mysql_url, name],
        stdout=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        assert frozen.stdout.readline().strip() == "running"
        os.kill(frozen.pid, signal.SIGSTOP)
        study = optuna.load_study(study_name=name, storage=study_storage(mysql_url, 1))
        claims = TrialClaims(mysql_url, name, 2, 0.2)

        def objective(trial: optuna.Trial) -> float:
            claims.start(trial)
            return 0.5

        deadline = time.monotonic() + 120  # past it `take` gives up and the counts below fail
        while claims.take(study, lambda: time.monotonic() > deadline):
            study.optimize(objective, n_trials=1)
        claims.close()
        assert time.monotonic() < deadline, "the frozen trial was not retried within 120 s"
    finally:
        os.kill(frozen.pid, signal.SIGKILL)
        frozen.wait(30)
    trials = study.get_trials(deepcopy=False)
    assert Counter(t.state for t in trials) == {State.COMPLETE: 2, State.FAIL: 1}
    (failed,) = [t for t in trials if t.state == State.FAIL]
    retried = [optuna.storages.RetryFailedTrialCallback.retried_trial_number(t) for t in trials]
    assert failed.number == 0 and retried.count(0) == 1

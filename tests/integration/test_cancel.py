"""A cancel (SIGTERM, what the Prefect UI's cancel sends) ends a running tune quickly and
cleanly: a real `retrain tune` process on a real Prefect server, signalled by its pid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from retrain.config.settings import load_settings
from retrain.data import clean, ingest
from retrain.io import tracking
from tests.integration.helpers import open_store
from tests.support.services import stop_pid

pytestmark = [pytest.mark.integration, pytest.mark.slow]
RETRAIN = str(Path(sys.executable).parent / "retrain")


def wait_for_trials(client: tracking.MlflowClient, experiment: str, timeout: float = 180) -> str:
    """The parent run's id once its study has logged a trial."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = client.get_experiment_by_name(experiment)
        runs = client.search_runs([found.experiment_id]) if found else []
        parents = [r for r in runs if r.data.tags.get("retrain.stage") == "tune"]
        if parents and len(runs) > len(parents):
            return parents[0].info.run_id
        time.sleep(0.5)
    raise AssertionError("the study logged no trial in time")


@pytest.mark.parametrize(
    ("db_url", "workers"), [("sqlite", 1), ("mysql", 2)], indirect=["db_url"]
)  # one worker in the flow's thread; two as processes of a local Dask cluster
def test_sigterm_ends_a_tune_within_seconds_and_registers_nothing(
    prefect_api: str, env: dict, tmp_path: Path, workers: int
) -> None:
    settings = load_settings()
    engine, tables = open_store()
    report = ingest.load_file(engine, tables, Path(env["RETRAIN_SOURCE"]), "utf-8")
    clean.clean_batch(engine, tables, settings.load_schema(), report.batch_id, 0.2)
    client = tracking.make_client(settings.tracking_uri)
    log = tmp_path / "tune.err"
    proc = subprocess.Popen(
        [RETRAIN, "tune", "--trials", "500", "--budget", "900", "--workers", str(workers)],
        env={**os.environ, "PREFECT_API_URL": prefect_api},
        stdout=subprocess.DEVNULL, stderr=log.open("w"), start_new_session=True,
    )  # fmt: skip
    try:
        parent = wait_for_trials(client, settings.experiment)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children, "the tuner runs its folds (or its trial workers) in processes"
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        code = proc.wait(timeout=30)
        took = time.monotonic() - sent
    finally:
        stop_pid(proc)
    assert code == 1 and took < 20, (code, took)  # seconds, not the 900 s budget, even loaded
    lines = [line for line in log.read_text().splitlines() if line.startswith("retrain:")]
    assert lines[-1].startswith("retrain: cancelled (SIGTERM)")
    assert client.get_run(parent).info.status == "KILLED"
    assert client.search_model_versions(f"name='{settings.model_name}'") == []
    _, alive = psutil.wait_procs(children, timeout=5)
    assert not alive, f"left running: {[p.pid for p in alive]}"

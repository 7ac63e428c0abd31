"""The supervisor's state file against real processes: a reused pid is never taken for ours."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from retrain.serving import model_server


def test_state_is_trusted_only_for_the_process_that_was_started(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        mine = model_server.Served(
            child.pid,
            "127.0.0.1",
            1,
            "1",
            "models:/m/1",
            0.0,
            model_server.process_start(child.pid),
        )
        model_server.write_state(tmp_path, mine)
        assert model_server.read_state(tmp_path) == mine
        reused = replace(mine, proc_start="1")
        model_server.write_state(tmp_path, reused)
        assert model_server.read_state(tmp_path) is None
        model_server.stop(reused)
        assert child.poll() is None
    finally:
        child.kill()
        child.wait()
    model_server.write_state(tmp_path, mine)
    assert model_server.read_state(tmp_path) is None
    assert model_server.process_start(os.getpid()) is not None


def test_a_recorded_spare_server_is_stopped_and_forgotten(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    try:
        spare = model_server.Served(
            child.pid,
            "127.0.0.1",
            1,
            "2",
            "models:/m/2",
            0.0,
            model_server.process_start(child.pid),
        )
        model_server.write_state(tmp_path, spare, model_server.SPARE)
        assert model_server.stop_recorded(tmp_path, model_server.SPARE) == spare
        assert child.wait(timeout=10) is not None
        assert not model_server.state_file(tmp_path, model_server.SPARE).exists()
        assert model_server.stop_recorded(tmp_path, model_server.SPARE) is None
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()

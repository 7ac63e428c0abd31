"""The supervisor's state file against real processes: a reused pid is never taken for ours."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from retrain import server


def test_state_is_trusted_only_for_the_process_that_was_started(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        mine = server.Served(
            child.pid, "127.0.0.1", 1, "1", "models:/m/1", 0.0, server.process_start(child.pid)
        )
        server.write_state(tmp_path, mine)
        assert server.read_state(tmp_path) == mine
        reused = replace(mine, proc_start="1")
        server.write_state(tmp_path, reused)
        assert server.read_state(tmp_path) is None
        server.stop(reused)
        assert child.poll() is None
    finally:
        child.kill()
        child.wait()
    server.write_state(tmp_path, mine)
    assert server.read_state(tmp_path) is None
    assert server.process_start(os.getpid()) is not None

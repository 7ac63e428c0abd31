"""Recovery: seconds from a SIGKILL until the served model answers again, with the supervisor
checking every `--interval` seconds, against a cold `mlflow models serve` start of the same
version (the floor: what a person restarting it by hand would wait at best), in one run.

    ./dev python -m bench.supervise [--interval 5] [--busy]

In a temp RETRAIN_HOME: bundled iris, a champion served behind HAProxy (needs haproxy), then
the model server's processes are killed, then the proxy; `--busy` keeps every core spinning
meanwhile, as a tune does, and for the floor too (both are measured under the same load).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sklearn.ensemble import RandomForestClassifier

from bench.serve import (
    IRIS_ROW,
    plain_server,
    prepare,
    promote_and_deploy,
    quiet_behind_haproxy,
    register,
)
from retrain.config.settings import Settings
from retrain.serving import model_server
from retrain.serving.supervisor import Supervisor
from tests.support.services import stop_model_server, stop_pid


def until_answering(
    settings: Settings, supervisor: Supervisor, interval: float, timeout: float = 300
) -> float:
    """Supervisor rounds every `interval` s until the main port predicts again; seconds."""
    started = time.monotonic()
    next_round = started
    while True:
        if time.monotonic() - started > timeout:
            raise SystemExit(f"the served model did not answer again within {timeout:.0f} s")
        if time.monotonic() >= next_round:
            supervisor.check()
            next_round += interval
        try:
            if model_server.invoke(settings.serve_url, IRIS_ROW, timeout=2):
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--busy", action="store_true")
    args = parser.parse_args()
    quiet_behind_haproxy("bench.supervise")
    with tempfile.TemporaryDirectory(prefix="bench-supervise-") as tmp:
        settings, stores, client = prepare(Path(tmp))
        spin = [sys.executable, "-c", "while True: pass"]
        spinners = []
        try:
            register(settings, stores, client, RandomForestClassifier(50, random_state=0))
            promote_and_deploy(settings, stores, client)
            served = model_server.read_state(settings.home)
            if args.busy:  # the floor is measured under the same load as the recovery
                count = os.cpu_count() or 2
                spinners = [subprocess.Popen(spin, start_new_session=True) for _ in range(count)]
            cold = time.monotonic()
            plain = plain_server(settings, served.version)
            cold = time.monotonic() - cold
            model_server.stop(plain)
            supervisor = Supervisor(settings, notify=lambda alert: None)
            for pid in model_server.session_members(served):
                os.kill(pid, signal.SIGKILL)
            model = until_answering(settings, supervisor, args.interval)
            os.kill(model_server.read_state(settings.home).proxy["pid"], signal.SIGKILL)
            front = until_answering(settings, supervisor, args.interval)
        finally:
            for spinner in spinners:
                stop_pid(spinner)
            stop_model_server(settings.home)
    load = "every core busy" if args.busy else "idle machine"
    print(f"recovery with the supervisor every {args.interval:.0f} s ({load}):")
    print(f"  model server killed: answering again after {model:.1f} s")
    print(f"  HAProxy killed:      answering again after {front:.1f} s")
    print(f"  floor, a cold `mlflow models serve` to /ping ({load}): {cold:.1f} s "
          f"(model ratio {model / cold:.2f})")  # fmt: skip


if __name__ == "__main__":
    main()

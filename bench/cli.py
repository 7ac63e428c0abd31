"""CLI start-up: how long the everyday commands take, each against its floor, in one run.

    ./dev python -m bench.cli [--repeat 3]

In a temp RETRAIN_HOME on the embedded stores: one `retrain run` (three trials) makes a
champion and serves it, then each command runs `--repeat` times as a fresh process and the
median wall time is printed beside its baseline:

- `retrain --help`, `history` and `serve stop` (nothing served) against the interpreter's
  own start-up (`python -c pass`), the floor no Python command can go under (`--help` is
  not a floor: it imports more than the quick commands do);
- `serve status` (a served version, reading @champion from retrain's alias log) against the same
  question through MLflow's client (`MlflowClient().get_model_version_by_alias`), what it
  cost before;
- a stage with nothing to do (`retrain ingest` of a loaded file) with Prefect's temporary
  server (what a command pays without PREFECT_API_URL) against the same with a local
  `prefect server start` already running, which the command now finds and uses.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from tests.support.services import free_port, prefect_server, stop_model_server

BIN = Path(sys.executable).parent
RETRAIN = str(BIN / "retrain")


def timed(command: list[str], env: dict[str, str], repeat: int) -> float:
    """Median wall seconds of `command` as a fresh process (it must succeed)."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        times.append(time.perf_counter() - started)
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed: {result.stderr[-1500:]}")
    return statistics.median(times)


def bench_env(home: Path) -> dict[str, str]:
    """The zero-config iris setup in its own home, with no Prefect server configured."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("RETRAIN_", "MLFLOW_"))}
    inherited.pop("PREFECT_API_URL", None)
    return {
        **inherited,
        "RETRAIN_HOME": str(home),
        "RETRAIN_TRIALS": "3",
        "RETRAIN_SERVE_PORT": str(free_port()),
        # no server of the user's on the default port is taken for the bench's local server
        "PREFECT_SERVER_API_PORT": str(free_port()),
    }


def print_row(name: str, seconds: float, baseline_name: str, baseline: float) -> None:
    print(
        f"{name:<34} {seconds:6.2f} s   {baseline_name:<30} {baseline:6.2f} s   "
        f"x{seconds / baseline:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    repeat = parser.parse_args().repeat
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        home = Path(tmp) / "home"
        env = bench_env(home)
        timed([RETRAIN, "run"], env, 1)
        try:
            run_commands(env, Path(tmp), repeat)
        finally:
            stop_model_server(home)


def run_commands(env: dict[str, str], tmp: Path, repeat: int) -> None:
    python = [sys.executable, "-c"]
    floor = timed([*python, "pass"], env, repeat)
    help_floor = timed([RETRAIN, "--help"], env, repeat)
    uri, model = f"sqlite:///{env['RETRAIN_HOME']}/mlflow.db", "iris_model"
    ask_mlflow = (
        "from mlflow import MlflowClient; "
        f"MlflowClient({uri!r}).get_model_version_by_alias({model!r}, 'champion')"
    )
    mlflow_floor = timed([*python, ask_mlflow], env, repeat)
    print(f"{'command':<34} {'median':>8}   {'baseline':<30} {'median':>8}   ratio")
    print_row("retrain --help", help_floor, "python -c pass", floor)
    print_row("retrain history", timed([RETRAIN, "history"], env, repeat), "python -c pass", floor)
    print_row(
        "retrain serve status",
        timed([RETRAIN, "serve", "status"], env, repeat),
        "the alias through MlflowClient",
        mlflow_floor,
    )
    temporary = timed([RETRAIN, "ingest"], env, repeat)
    (tmp / "prefect").mkdir()
    with prefect_server(tmp / "prefect") as api:
        local = {**env, "PREFECT_SERVER_API_HOST": "127.0.0.1"}
        local["PREFECT_SERVER_API_PORT"] = str(urlsplit(api).port)
        reused = timed([RETRAIN, "ingest"], local, repeat)
    print_row("retrain ingest (local server)", reused, "ingest, temporary server", temporary)
    timed([RETRAIN, "serve", "stop"], env, 1)
    print_row(
        "retrain serve stop (none served)",
        timed([RETRAIN, "serve", "stop"], env, repeat),
        "python -c pass",
        floor,
    )


if __name__ == "__main__":
    main()

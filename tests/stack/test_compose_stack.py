"""The production stack as containers: docker/compose.yaml with tests/stack/compose.standin.yaml
over it (stand-in images from Debian's packages for those a registry would give), up with
`docker compose up --wait`, then a night through the stack's Prefect API, the champion on the
published port, a killed model server that comes back, a restart that loses nothing, and
`docker compose down`. Not part of the suite: `./dev test-stack` runs it (CI, after the suite).
It prints how long each step took."""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.services import basic, bearer, free_port, http_answer, need_service

pytestmark = pytest.mark.stack
ROOT = Path(__file__).parents[2]
FILES = ["-f", "docker/compose.yaml", "-f", "tests/stack/compose.standin.yaml"]
PUBLISHED = ("PREFECT_PORT", "MLFLOW_PORT", "RETRAIN_SERVE_PORT", "PROMETHEUS_PORT", "GRAFANA_PORT")
EMPTY_SETTINGS = ("RETRAIN_SOURCE", "RETRAIN_SCHEMA", "RETRAIN_DATASET", "RETRAIN_MODEL_NAME",
                  "RETRAIN_EXPERIMENT", "RETRAIN_ALERT_URL")  # fmt: skip
IRIS = {"sepal length (cm)": 5.1, "sepal width (cm)": 3.5, "petal length (cm)": 1.4,
        "petal width (cm)": 0.2}  # fmt: skip


@dataclass
class Stack:
    """One compose project of the stack, with the secrets and ports of its env file."""

    project: str
    env_file: Path
    values: dict[str, str]
    timings: dict[str, float] = field(default_factory=dict)

    def compose(self, *args: str, timeout: float = 900) -> str:
        command = ["docker", "compose", "-p", self.project, "--env-file", str(self.env_file),
                   *FILES, *args]  # fmt: skip
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"{' '.join(args)}: {done.stderr[-3000:]}"
        return done.stdout

    def worker(self, *command: str) -> str:
        return self.compose("exec", "-T", "worker", *command, timeout=300)

    def url(self, port_name: str) -> str:
        return f"http://127.0.0.1:{self.values[port_name]}"

    def timed(self, step: str, started: float) -> None:
        self.timings[step] = time.monotonic() - started
        print(f"stack: {step} took {self.timings[step]:.0f} s", flush=True)


def env_file_values(data_dir: Path) -> dict[str, str]:
    """docker/.env.example filled as a person would: every secret random, free ports."""
    values = {}
    for line in (ROOT / "docker/.env.example").read_text().splitlines():
        if not re.match(r"^[A-Z_][A-Z0-9_]*=", line):
            continue
        name, value = line.split("=", 1)
        if not value and name not in EMPTY_SETTINGS:
            value = secrets.token_urlsafe(18)
        values[name] = value
    values["PREFECT_AUTH_STRING"] = f"admin:{secrets.token_urlsafe(18)}"
    values |= {name: str(free_port()) for name in PUBLISHED}
    values["RETRAIN_DATA_DIR"] = str(data_dir)
    return values


def check_docker() -> None:
    """Docker's daemon and Compose v2 answer, else the test fails under CI (skips elsewhere)."""
    if shutil.which("docker") is None:
        need_service("no docker client (apt-get install docker.io)")
    probes = ((["docker", "info"], "start dockerd or set DOCKER_HOST"),
              (["docker", "compose", "version"], "python3 scripts/get_compose.py"))  # fmt: skip
    for probe, fix in probes:
        if subprocess.run(probe, capture_output=True, timeout=60).returncode != 0:
            need_service(f"`{' '.join(probe)}` failed: {fix}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    check_docker()
    folder = tmp_path_factory.mktemp("stack")
    (folder / "data").mkdir()
    values = env_file_values(folder / "data")
    env_file = folder / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    env_file.chmod(0o600)
    stack = Stack(f"retrain-stack-{uuid.uuid4().hex[:6]}", env_file, values)
    started = time.monotonic()
    stack.compose("build", timeout=2400)
    stack.timed("build (stand-ins and the retrain image)", started)
    try:
        started = time.monotonic()
        stack.compose("up", "--detach", "--wait", "--wait-timeout", "900", timeout=1200)
        stack.timed("up --wait", started)
        yield stack
    finally:
        logs = subprocess.run(["docker", "compose", "-p", stack.project, "--env-file",
                               str(env_file), *FILES, "logs", "--no-color"], cwd=ROOT,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        (folder / "compose.log").write_text(logs.stdout + logs.stderr)
        started = time.monotonic()
        stack.compose("down", "--volumes", "--remove-orphans", timeout=600)
        stack.timed("down", started)
        print(f"stack: timings {json.dumps({k: round(v) for k, v in stack.timings.items()})}")


def predict(stack: Stack, token: str | None) -> tuple[int, bytes]:
    body = {"dataframe_records": [IRIS]}
    return http_answer(
        f"{stack.url('RETRAIN_SERVE_PORT')}/invocations", body, headers=bearer(token)
    )


def answers_again(stack: Stack, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predict(stack, stack.values["RETRAIN_SERVE_TOKEN"])[0] == 200:
            return True
        time.sleep(2)
    return False


def run_nightly(stack: Stack) -> str:
    """retrain-nightly, started and awaited through the stack's Prefect API (3 trials)."""
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    api = {PREFECT_API_URL: f"{stack.url('PREFECT_PORT')}/api",
           PREFECT_API_AUTH_STRING: stack.values["PREFECT_AUTH_STRING"]}  # fmt: skip
    with temporary_settings(updates=api):
        run = run_deployment("retrain/retrain-nightly", parameters={"trials": 3, "budget": 120},
                             timeout=1200)  # fmt: skip
    return run.state.type.value


def champion_version(stack: Stack) -> str | None:
    """@champion as MLflow's REST API tells the read-only user."""
    query = "name=iris_model&alias=champion"
    status, body = http_answer(
        f"{stack.url('MLFLOW_PORT')}/api/2.0/mlflow/registered-models/alias?{query}",
        headers=basic("reader", stack.values["MLFLOW_READER_PASSWORD"]),
    )
    return json.loads(body)["model_version"]["version"] if status == 200 else None


def what_survives(stack: Stack) -> tuple[str | None, list[str], int]:
    """The champion, the promotions audit's decisions, and the rows the prediction log holds
    (the `rows` column of `retrain predictions`, summed over its days)."""
    history = stack.worker("retrain", "history").splitlines()[1:]
    decisions = [line.split()[2] for line in history if line.strip()]
    days = stack.worker("retrain", "predictions").splitlines()
    rows = sum(int(line.split()[2]) for line in days[1:] if re.match(r"^\d{4}-", line))
    return champion_version(stack), decisions, rows


@pytest.mark.timeout(1500)  # its own budget: the images' first build, then about 6 minutes
def test_the_stack_runs_a_night_serves_it_and_loses_nothing_on_restarts(stack: Stack) -> None:
    values = stack.values
    anonymous = {
        "mlflow": http_answer(f"{stack.url('MLFLOW_PORT')}/api/2.0/mlflow/experiments/search")[0],
        "prefect": http_answer(f"{stack.url('PREFECT_PORT')}/api/version")[0],
    }
    started = time.monotonic()
    assert run_nightly(stack) == "COMPLETED"
    stack.timed("the nightly run through the Prefect API", started)
    anonymous["model"] = predict(stack, None)[0]
    print(f"stack: anonymous requests answered {anonymous}")
    assert anonymous == {"mlflow": 401, "prefect": 401, "model": 401}
    status, body = predict(stack, values["RETRAIN_SERVE_TOKEN"])
    assert status == 200 and len(json.loads(body)["predictions"]) == 1

    served = json.loads(stack.worker("cat", "/home/retrain/state/serving.json"))
    started = time.monotonic()
    kill = f"import os, signal; os.killpg({served['pid']}, signal.SIGKILL)"  # all its processes
    stack.worker("python", "-c", kill)
    assert answers_again(stack, timeout=240), "the model server did not come back"
    stack.timed("a killed model server answering again", started)
    again = json.loads(stack.worker("cat", "/home/retrain/state/serving.json"))
    assert again["pid"] != served["pid"] and again["version"] == served["version"]

    before = what_survives(stack)
    assert before[0] == served["version"] and "promoted" in before[1] and before[2] >= 2
    started = time.monotonic()
    stateful = [
        "mysql",
        "prefect-db",
        "prefect-server",
        "mlflow",
        "pushgateway",
        "prometheus",
        "worker",
    ]  # all but the object store, whose stand-in keeps objects in memory
    stack.compose("restart", *stateful, timeout=900)
    stack.compose("up", "--detach", "--wait", "--wait-timeout", "900", timeout=1200)
    assert answers_again(stack, timeout=300), "the champion did not answer after the restart"
    stack.timed("restart of every service but the object store", started)
    after = what_survives(stack)
    print(f"stack: champion, decisions, logged rows before {before}, after {after}")
    assert after[:2] == before[:2] and after[2] >= before[2]

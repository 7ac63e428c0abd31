"""Real services for tests and benchmarks, each started in a temp dir and stopped by its pid."""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pymysql
import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need_service(reason: str) -> None:
    """Fail under CI (a service or tool we need is missing), skip elsewhere."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: a missing service is a failure)")
    pytest.skip(f"{reason}; install it or set the URL (under CI=true this fails)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(check: Callable[[], object], timeout: float, what: str, every: float = 0.5):
    """Poll `check()` until it returns something truthy and return that; fail saying that
    `what` did not happen within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"{what} within {timeout:.0f} s")


def find_mysql_server() -> str | None:
    """The mariadbd/mysqld binary, on PATH or in Debian's /usr/sbin."""
    for name in ("mariadbd", "mysqld"):
        found = shutil.which(name) or (
            f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None
        )
        if found:
            return found
    return None


def stop_pid(proc: subprocess.Popen, timeout: float = 30) -> None:
    """Stop a process we started (its session too), by pid: TERM, then KILL."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def _wait(check, what: str, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            check()
            return
        except Exception:
            time.sleep(0.25)
    raise RuntimeError(f"{what} did not answer within {timeout:.0f}s: {log.read_text()[-2000:]}")


@contextmanager
def mariadb_server(workdir: Path, extra_args: tuple[str, ...] = ()) -> Iterator[str]:
    """A throwaway MariaDB/MySQL server on a free loopback port; yields a mysql+pymysql URL."""
    binary = find_mysql_server()
    if binary is None:
        raise FileNotFoundError("no mariadbd/mysqld binary: apt-get install mariadb-server")
    datadir, sock, log = workdir / "data", workdir / "mysql.sock", workdir / "mysqld.log"
    user = ["--user=root"] if os.geteuid() == 0 else []
    install = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
    setup = subprocess.run(
        [
            install,
            "--no-defaults",
            f"--datadir={datadir}",
            "--skip-test-db",
            "--force",
            "--skip-name-resolve",
            "--auth-root-authentication-method=normal",
            *user,
        ],
        capture_output=True,
        text=True,
    )
    if setup.returncode != 0:
        raise RuntimeError(f"{install} failed: {(setup.stdout + setup.stderr)[-1500:]}")
    port = free_port()
    args = [
        binary,
        "--no-defaults",
        f"--datadir={datadir}",
        f"--port={port}",
        "--bind-address=127.0.0.1",
        f"--socket={sock}",
        f"--pid-file={workdir / 'pid'}",
        "--local-infile=1",
        "--skip-name-resolve",
        "--max-allowed-packet=64M",
        "--innodb-buffer-pool-size=512M",
        "--innodb-log-file-size=256M",
        # a throwaway server: no fsync per commit (a crash loses the test's data, nothing else)
        "--innodb-flush-log-at-trx-commit=0",
        "--innodb-doublewrite=0",
        "--sync-binlog=0",
        *user,
        *extra_args,
    ]
    proc = subprocess.Popen(
        args, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        _wait(
            lambda: pymysql.connect(unix_socket=str(sock), user="root").close(),
            "mariadbd",
            proc,
            log,
            60,
        )
        password = secrets.token_hex(8)
        root = pymysql.connect(unix_socket=str(sock), user="root", autocommit=True)
        with root.cursor() as cur:
            cur.execute("CREATE DATABASE retrain CHARACTER SET utf8mb4")
            cur.execute("CREATE USER 'retrain'@'127.0.0.1' IDENTIFIED BY %s", (password,))
            cur.execute("GRANT ALL ON *.* TO 'retrain'@'127.0.0.1' WITH GRANT OPTION")
        root.close()
        yield f"mysql+pymysql://retrain:{password}@127.0.0.1:{port}/retrain"
    finally:
        stop_pid(proc)


@contextmanager
def running(
    command: list[str], env: dict[str, str], log: Path, ready: Callable[[], None], timeout: float
) -> Iterator[subprocess.Popen]:
    """A process in its own session, yielded once `ready()` stops raising; stopped by pid."""
    proc = subprocess.Popen(
        command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        _wait(ready, Path(command[0]).name, proc, log, timeout)
        yield proc
    finally:
        stop_pid(proc)


def post_invocations(url: str, body: dict) -> list:
    """POST a JSON body to a model server's /invocations; its `predictions`."""
    request = urllib.request.Request(
        f"{url}/invocations",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())["predictions"]


def http_ok(url: str, timeout: float = 2) -> None:
    """Raise unless GET `url` answers 200 (a readiness check for `running`)."""
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        if answer.status != 200:
            raise RuntimeError(answer.status)


def http_answer(
    url: str, body: dict | None = None, method: str | None = None,
    headers: dict[str, str] | None = None, timeout: float = 30,
) -> tuple[int, bytes]:  # fmt: skip
    """The status and body of a GET (or, with `body`, a JSON POST) to `url`; 0 and the
    error when nothing answers."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json", **(headers or {})}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except OSError as err:
        return 0, str(err).encode()


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def basic(user: str, password: str) -> dict[str, str]:
    pair = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {pair}"}


@contextmanager
def prefect_server(workdir: Path, auth: str | None = None) -> Iterator[str]:
    """A real `prefect server start` on a free loopback port; yields its API URL. With
    `auth`, the server refuses every API request but the health checks without that
    string (PREFECT_SERVER_API_AUTH_STRING; clients send PREFECT_API_AUTH_STRING)."""
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(workdir / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{workdir / 'prefect.db'}",
        "PREFECT_UI_API_URL": api,  # the UI in a browser asks this API, not :4200's
    }
    env.pop("PREFECT_API_URL", None)
    if auth:
        env["PREFECT_SERVER_API_AUTH_STRING"] = auth
    prefect = str(Path(sys.executable).parent / "prefect")
    command = [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    log = workdir / "prefect-server.log"
    with running(command, env, log, lambda: http_ok(f"{api}/health"), timeout=120):
        yield api


@contextmanager
def s3_server(workdir: Path) -> Iterator[str]:
    """A real S3 API (moto's server mode, from PyPI; objects kept in memory) on a free
    loopback port; yields its endpoint URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    ready = lambda: http_ok(f"{url}/moto-api/")  # noqa: E731
    with running(command, dict(os.environ), workdir / "s3.log", ready, timeout=60):
        yield url


def s3_client(endpoint: str, variables: dict[str, str]) -> Any:
    """A boto3 S3 client of the API at `endpoint`, with the keys and region the AWS_*
    `variables` name (as a process given them would use)."""
    import boto3

    return boto3.client(
        "s3", endpoint_url=endpoint, region_name=variables.get("AWS_DEFAULT_REGION", "us-east-1"),
        aws_access_key_id=variables["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=variables["AWS_SECRET_ACCESS_KEY"],
    )  # fmt: skip


def monitoring_binary(name: str) -> str:
    """A Prometheus binary from Debian's packages (prometheus, prometheus-pushgateway)."""
    binary = shutil.which(name)
    if binary is None:
        need_service(f"no {name} binary (apt-get install {name.split('-')[0]} or {name})")
    return binary


@contextmanager
def pushgateway_server(workdir: Path) -> Iterator[str]:
    """A real Prometheus Pushgateway on a free loopback port; yields its URL."""
    url = f"http://127.0.0.1:{free_port()}"
    command = [monitoring_binary("prometheus-pushgateway"), f"--web.listen-address={url[7:]}"]
    log = workdir / "pushgateway.log"
    with running(command, dict(os.environ), log, lambda: http_ok(f"{url}/-/ready"), timeout=30):
        yield url


@contextmanager
def prometheus_server(
    workdir: Path, jobs: dict[str, tuple[str, str, str | None]], rules: Path
) -> Iterator[str]:
    """A real Prometheus scraping each job's (metrics path, host:port, bearer token or None)
    every second and evaluating `rules`; yields its URL."""
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {"job_name": job, "metrics_path": path, "honor_labels": True,
             "static_configs": [{"targets": [target]}],
             **({"authorization": {"type": "Bearer", "credentials": token}} if token else {})}
            for job, (path, target, token) in jobs.items()
        ],
    }  # fmt: skip
    (workdir / "prometheus.yml").write_text(json.dumps(config))
    url = f"http://127.0.0.1:{free_port()}"
    command = [
        monitoring_binary("prometheus"), f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={workdir / 'tsdb'}", f"--web.listen-address={url[7:]}",
    ]  # fmt: skip
    log = workdir / "prometheus.log"
    with running(command, dict(os.environ), log, lambda: http_ok(f"{url}/-/ready"), timeout=60):
        yield url


def stop_model_server(home: Path) -> None:
    """Stop the supervisor, the model server and its proxy recorded under `home`, if a test
    left them running (by pid; the supervisor first, so it restarts nothing)."""
    from retrain.serving import haproxy, model_server

    model_server.stop_supervisor(home)
    front, left = haproxy.recorded(home), model_server.read_state(home)
    if front:
        haproxy.stop(front)
    if left:
        model_server.stop(left)


@contextmanager
def prefect_worker(pool: str, env: dict[str, str], workdir: Path) -> Iterator[None]:
    """A real `prefect worker start` on `pool`; flow runs inherit `env`. Stopped by pid."""
    log = workdir / "prefect-worker.log"
    prefect = str(Path(sys.executable).parent / "prefect")
    proc = subprocess.Popen(
        [prefect, "worker", "start", "--pool", pool, "--type", "process"],
        env={**env, "PREFECT_WORKER_QUERY_SECONDS": "2", "PREFECT_WORKER_PREFETCH_SECONDS": "5"},
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield
    finally:
        stop_pid(proc)


def model_events(model: str, since: datetime | None = None) -> dict[str, list]:
    """The `retrain.model.*` events about a registered model on the Prefect server (those
    that occurred since `since`), by what happened: promoted, kept, rolled_back."""
    from prefect import get_client
    from prefect.events.filters import EventFilter, EventOccurredFilter, EventResourceFilter

    occurred = EventOccurredFilter(since=since) if since else EventOccurredFilter()
    wanted = EventFilter(resource=EventResourceFilter(id=[f"retrain.model.{model}"]),
                         occurred=occurred)  # fmt: skip
    with get_client(sync_client=True) as client:
        events = client.read_events(wanted, limit=50).events
    found: dict[str, list] = {}
    for event in events:
        found.setdefault(event.event.removeprefix("retrain.model."), []).append(event)
    return found

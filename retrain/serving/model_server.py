"""The model servers: starts, checks, records and stops `mlflow models serve` processes.

A server runs detached in its own session so it outlives the flow that started it. What runs
on the main port is written to `<RETRAIN_HOME>/serving.json` with the process's start time
from /proc, so a pid reused by another program is never taken for ours and never signalled.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from retrain.errors import StageFailed

if TYPE_CHECKING:
    import pandas as pd


class ServeFailed(StageFailed):
    """A model server did not start, answer or stop as it should."""


@dataclass(frozen=True)
class Served:
    """One model-server process this supervisor started."""

    pid: int
    host: str
    port: int
    version: str
    model_uri: str
    started_at: float
    proc_start: str
    metrics_port: int | None = None
    proxy: dict | None = None  # the HAProxy in front of it (retrain.proxy.Proxy), if any
    supervisor: dict | None = None  # pid and proc_start of the supervisor watching it

    @property
    def url(self) -> str:
        """The model server's own address."""
        return f"http://{self.host}:{self.port}"

    @property
    def public_url(self) -> str:
        """Where clients reach it: the proxy on the main port, else the server itself."""
        if self.proxy:
            return f"http://{self.proxy['host']}:{self.proxy['port']}"
        return self.url

    @property
    def metrics_url(self) -> str | None:
        return f"http://127.0.0.1:{self.metrics_port}/metrics" if self.metrics_port else None


MAIN, SPARE = "serving.json", "serving-spare.json"
CANDIDATE = "serving-candidate.json"  # the second version a rollout serves beside the champion
ROLLOUT = "rollout.json"  # the running rollout (retrain.serving.rollout writes it)


def state_file(home: Path, role: str = MAIN) -> Path:
    """Where the main server (or the spare-port candidate of a deploy) is recorded."""
    return home / role


def log_file(home: Path, port: int) -> Path:
    """Where the server on `port` writes its output."""
    return home / f"serving-{port}.log"


def stat_fields(pid: int | str) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first, then ppid, pgrp,
    session, ...; the start time is index 19), None when the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()


def process_start(pid: int) -> str | None:
    """The kernel's start time of `pid` (field 22 of /proc/<pid>/stat), None when gone."""
    fields = stat_fields(pid)
    return None if fields is None or fields[0] == "Z" else fields[19]


def is_running(served: Served) -> bool:
    """True only if the process is alive and is the one we started (same start time)."""
    return process_start(served.pid) == served.proc_start


@contextlib.contextmanager
def serving_lock(home: Path, blocking: bool = True) -> Iterator[bool]:
    """The serving lock of `home` (an flock, released when its holder dies): deploys, starts
    and stops hold it; the supervisor only tries it. Yields whether it is held."""
    with file_lock(home / "serving.lock", blocking) as held:
        yield held


@contextlib.contextmanager
def supervisor_lock(home: Path, blocking: bool = True) -> Iterator[bool]:
    """Held by the one supervisor of `home` for as long as it lives (the kernel drops it when
    the process dies), so a second one, started by a deploy, a worker or systemd, never
    supervises beside it. Yields whether it is held."""
    with file_lock(home / "supervisor.lock", blocking) as held:
        yield held


@contextlib.contextmanager
def file_lock(path: Path, blocking: bool) -> Iterator[bool]:
    """An exclusive flock on `path`; yields whether it was obtained."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_record(home: Path, role: str = MAIN) -> Served | None:
    """What is recorded, alive or not (a dead server's record still names its proxy)."""
    try:
        return Served(**json.loads(state_file(home, role).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def read_state(home: Path, role: str = MAIN) -> Served | None:
    """The recorded server, if its process is still the one we started."""
    served = read_record(home, role)
    return served if served and is_running(served) else None


def rollout_record(home: Path, name: str = ROLLOUT) -> dict | None:
    """The rollout recorded under `name` (the running one by default) as a plain dict, None
    when there is none: `retrain.serving.rollout` reads it into its Rollout; `serve status`
    and the supervisor read it here, without that module's MLflow imports."""
    try:
        return json.loads((home / name).read_text())
    except (OSError, ValueError):
        return None


def write_state(home: Path, served: Served | None, role: str = MAIN) -> None:
    """Record (or clear) a server; written whole then renamed. A new main record keeps the
    supervisor the old one named: a deploy swaps the server, not who watches it."""
    path = state_file(home, role)
    if served is None:
        path.unlink(missing_ok=True)
        return
    if role == MAIN and served.supervisor is None:
        before = read_record(home)
        served = replace(served, supervisor=before.supervisor if before else None)
    home.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(served), indent=2))
    tmp.replace(path)


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel calls free now, drawn from its ephemeral range."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def spare_port(avoid: Collection[int], draw: Callable[[], int] = free_port, tries: int = 50) -> int:
    """A free port for a candidate or a metrics listener that is none of `avoid` (the main
    port and every port retrain has recorded): a main port that is free for a moment, before
    the proxy binds it, is still not a spare."""
    for _ in range(tries):
        port = draw()
        if port not in avoid:
            return port
    raise ServeFailed(f"no free port outside {sorted(avoid)} after {tries} draws")


def recorded_ports(home: Path) -> set[int]:
    """Every port the state files of `home` name: servers, their metrics, the proxy."""
    ports: set[int] = set()
    for role in (MAIN, SPARE, CANDIDATE):
        record = read_record(home, role)
        if record:
            ports |= {record.port, record.metrics_port or 0}
            ports |= {int(record.proxy["port"])} if record.proxy else set()
    return ports - {0}


def start(
    home: Path,
    tracking_uri: str,
    model_uri: str,
    version: str,
    host: str,
    port: int,
    metrics_port: int | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> Served:
    """Start `mlflow models serve` detached; its output goes to `serving-<port>.log`. The
    environment's bin directory leads PATH: the server execs `uvicorn` from PATH and exits 127
    without it. `extra_env` reaches the served model (its metrics port and prediction log)."""
    home.mkdir(parents=True, exist_ok=True)
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_REGISTRY_URI": tracking_uri,
        **(extra_env or {}),
    }
    command = [
        str(Path(bin_dir) / "mlflow"), "models", "serve", "-m", model_uri,
        "--env-manager", "local", "--host", host, "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    with open(log_file(home, port), "ab") as log:
        proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=env, start_new_session=True,
        )  # fmt: skip
    started = process_start(proc.pid) or ""
    return Served(proc.pid, host, port, version, model_uri, time.time(), started, metrics_port)


def log_tail(home: Path, served: Served, lines: int = 3) -> str:
    try:
        text = log_file(home, served.port).read_text(errors="replace")
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


def wait_healthy(home: Path, served: Served, timeout: float) -> float:
    """Poll `/ping` until it answers 200; returns the seconds it took. Fails at once when the
    process exits, with the end of its log."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if not is_running(served):
            raise ServeFailed(
                f"model server for version {served.version} exited before answering: "
                f"{log_tail(home, served)[-400:]}"
            )
        if ping(served):
            return time.monotonic() - started
        time.sleep(0.1)
    raise ServeFailed(
        f"model server for version {served.version} on port {served.port} did not answer "
        f"/ping within {timeout:.0f} s; see {log_file(home, served.port)}"
    )


def ping(served: Served) -> bool:
    """Whether the model server itself answers `/ping`."""
    return ping_url(served.url)


def ping_url(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=1) as answer:
            return answer.status == 200
    except (OSError, urllib.error.URLError):
        return False


def token_accepted(url: str, token: str | None) -> bool | None:
    """Whether the endpoint at `url` takes `token` (a GET of MLflow's `/version` through the
    proxy); None when it asks for no token at all."""
    request = urllib.request.Request(f"{url}/version")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=2):
            return True if token else None
    except urllib.error.HTTPError as err:
        return False if err.code == 401 else None
    except OSError:
        return None


def read_metrics(served: Served, timeout: float = 2) -> str:
    """The served model's Prometheus text, or "" when it has none or does not answer."""
    if not served.metrics_url:
        return ""
    try:
        with urllib.request.urlopen(served.metrics_url, timeout=timeout) as answer:
            return answer.read().decode()
    except (OSError, urllib.error.URLError):
        return ""


def log_drops(served: Served) -> int:
    """Rows the served model's prediction log dropped so far (0 when unknown)."""
    for line in read_metrics(served).splitlines():
        if line.startswith("retrain_prediction_log_dropped_total "):
            return int(float(line.split()[1]))
    return 0


def invoke(url: str, frame: pd.DataFrame, timeout: float = 30, token: str | None = None) -> list:
    """POST rows as `dataframe_split` to `/invocations` (with the bearer `token` the proxy
    asks for, if any); returns the predictions."""
    body = json.dumps({"dataframe_split": json.loads(frame.to_json(orient="split"))}).encode()
    request = urllib.request.Request(
        f"{url}/invocations", data=body, headers={"Content-Type": "application/json"}
    )
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return json.loads(answer.read())["predictions"]


def stop(served: Served, timeout: float = 15) -> None:
    """Stop a server we started: its whole process session, also when its leader (the
    `mlflow models serve` command) was killed and left its uvicorn behind; never signal a
    process outside that session."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5)):
        members = session_members(served)
        if not members:
            return
        for pid in members:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
                os.kill(pid, signal.SIGCONT)  # a stopped (hung on purpose) process takes TERM
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            reap(served.pid)
            if not session_members(served) and not port_in_use(served.host, served.port):
                return
            time.sleep(0.05)
    raise ServeFailed(f"model server pid {served.pid} did not stop")


def session_members(served: Served) -> list[int]:
    """Live processes of the session the server was started in (its session id is the
    leader's pid) that started no earlier than the leader: the leader and its children, even
    orphaned ones. While one of them lives the kernel does not hand the leader's pid out
    again; if that pid now belongs to a later process, nothing here is ours."""
    leader = process_start(served.pid)
    if leader is not None and leader != served.proc_start:
        return []
    members = []
    for proc in Path("/proc").iterdir():
        fields = stat_fields(proc.name) if proc.name.isdigit() else None
        if fields is None:
            continue
        state, session, started = fields[0], int(fields[3]), fields[19]
        if state != "Z" and session == served.pid and int(started) >= int(served.proc_start or 0):
            members.append(int(proc.name))
    return members


def reap(pid: int) -> None:
    """Collect the exit status when the server is our own child (else it stays a zombie)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def stop_recorded(home: Path, role: str) -> Served | None:
    """Stop the server recorded under `role` if it is still ours, and clear the record."""
    served = read_state(home, role)
    if served:
        stop(served)
    write_state(home, None, role)
    return served


def own_identity() -> dict:
    """This process as a record names it: pid and kernel start time."""
    return {"pid": os.getpid(), "proc_start": process_start(os.getpid())}


def record_supervisor(home: Path, identity: dict) -> None:
    """Name `identity` as the supervisor in the main record, if there is one."""
    with serving_lock(home):
        record = read_record(home)
        if record and record.supervisor != identity:
            write_state(home, replace(record, supervisor=identity))


def live_supervisor(home: Path) -> dict | None:
    """The supervisor the main record names, if that very process still runs."""
    record = read_record(home)
    found = record.supervisor if record else None
    if found and process_start(found["pid"]) == found["proc_start"]:
        return found
    return None


def start_supervisor(home: Path) -> int | None:
    """Leave `retrain serve supervise --if-none` running detached beside what is served (its
    log: `supervisor.log`); None when the recorded one still runs. A second one started in a
    race finds the supervisor lock taken and exits at once."""
    running = live_supervisor(home)
    if running:
        return running["pid"]
    home.mkdir(parents=True, exist_ok=True)
    command = [str(Path(sys.executable).parent / "retrain"), "serve", "supervise", "--if-none"]
    with open(home / "supervisor.log", "ab") as log:
        proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    return recorded_supervisor(home, proc)


def recorded_supervisor(home: Path, proc: subprocess.Popen, timeout: float = 20) -> int | None:
    """The pid of the supervisor that runs once `proc` has recorded itself or exited (a
    second one finds the lock taken), so the pid a deploy prints is one that lives."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = live_supervisor(home)
        if running or proc.poll() is not None:  # exited (reaped): the lock holder recorded
            return running["pid"] if running else None
        time.sleep(0.1)
    return proc.pid if proc.poll() is None else None


def stop_supervisor(home: Path, timeout: float = 15) -> dict | None:
    """Stop the supervisor the record names (SIGTERM, then SIGKILL), by its recorded pid and
    start time only; returns it, or None when none runs."""
    running = live_supervisor(home)
    if running is None:
        return None
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(running["pid"], sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            reap(running["pid"])
            if process_start(running["pid"]) != running["proc_start"]:
                return running
            time.sleep(0.05)
    raise ServeFailed(f"supervisor pid {running['pid']} did not stop")

"""HAProxy in front of the model servers (adapter): retrain starts it on the main port, owns
its configuration, and switches it from one model server to the next through HAProxy's runtime
API on a unix socket, without a reload, so that a swap fails no request.

The backend `models` has two server slots, `a` and `b`; the `metrics` backend mirrors them with
each model server's metrics port. A swap points the idle slot at the verified new server, makes
it ready and drains the old slot in one runtime-API call, waits for the old slot's requests to
finish, then puts it in maintenance. `/metrics` reaches the served model's own metrics,
`/metrics/proxy` HAProxy's Prometheus exporter (requests by status code, for every request).
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from retrain.serving.model_server import ServeFailed, port_in_use, process_start, read_record, reap

SLOTS = ("a", "b")
FULL_WEIGHT = 100  # a slot's weight when it alone serves; a split shares it
CONFIG = """\
global
    stats socket {socket} mode 600 level admin
    stats timeout 10s
    maxconn 4096
    # a request is retried on the other server only if it fits in one buffer
    tune.bufsize 65536

defaults
    mode http
    timeout connect 2s
    timeout client 120s
    timeout server 120s
    timeout http-keep-alive 30s
    retries 3
    option redispatch 1
    # a model failure (500) is retried on the other server too: a canary's failures reach no
    # client; a bad request (400) is never retried
    retry-on conn-failure empty-response 500 502 503 504
    option http-buffer-request

frontend main
    bind {host}:{port}
{auth}    http-request use-service prometheus-exporter if {{ path /metrics/proxy }}
    use_backend metrics if {{ path /metrics }}
    use_backend metrics_a if {{ path /metrics/a }}
    use_backend metrics_b if {{ path /metrics/b }}
    default_backend models

backend models
    server a 127.0.0.1:{idle} disabled
    server b 127.0.0.1:{idle} disabled

backend metrics
    server a 127.0.0.1:{idle} disabled
    server b 127.0.0.1:{idle} disabled

# each slot's own metrics, for Prometheus to scrape both versions while a rollout splits
backend metrics_a
    server a 127.0.0.1:{idle} disabled

backend metrics_b
    server b 127.0.0.1:{idle} disabled
"""

# With a token, every path but the health checks asks for `Authorization: Bearer <token>`;
# the metrics paths also take the metrics token (Prometheus's own credential). The tokens
# reach HAProxy through its environment ("${...}" is expanded there), never its config file.
REFUSE = (
    '    http-request return status 401 content-type text/plain string "send Authorization: '
    'Bearer <{token}>\\n" hdr WWW-Authenticate "Bearer realm=retrain" if {when}\n'
)
AUTH = (
    "    acl health path /ping /health\n"
    "    acl metrics path /metrics /metrics/proxy /metrics/a /metrics/b\n"
    '    acl served_token req.hdr(authorization) -m str "Bearer ${RETRAIN_SERVE_TOKEN}"\n'
    '    acl metrics_token req.hdr(authorization) -m str "Bearer ${RETRAIN_METRICS_TOKEN}"\n'
    + REFUSE.format(token="RETRAIN_SERVE_TOKEN", when="!health !metrics !served_token")
    + REFUSE.format(token="RETRAIN_METRICS_TOKEN", when="metrics !metrics_token !served_token")
)


@dataclass(frozen=True)
class Tokens:
    """What the proxy asks of a request: the serve token, and the metrics-only token."""

    serve: str
    metrics: str | None = None

    def fingerprint(self) -> str:
        """A digest of both tokens, recorded with the proxy: a token changed since the proxy
        started is noticed without the tokens being written anywhere."""
        return hashlib.sha256(f"{self.serve}\0{self.metrics or ''}".encode()).hexdigest()[:16]

    def environment(self) -> dict[str, str]:
        return {
            "RETRAIN_SERVE_TOKEN": self.serve,
            "RETRAIN_METRICS_TOKEN": self.metrics or self.serve,
        }


def tokens_of(serve: str | None, metrics: str | None) -> Tokens | None:
    """The tokens a proxy asks for (RETRAIN_SERVE_TOKEN, RETRAIN_METRICS_TOKEN); None: none."""
    return Tokens(serve, metrics) if serve else None


def guard_of(tokens: Tokens | None) -> str:
    """What a proxy records of the tokens it asks for (Proxy.guard): "" when it asks none."""
    return tokens.fingerprint() if tokens else ""


@dataclass(frozen=True)
class Proxy:
    """The HAProxy process retrain started, and which slot serves."""

    pid: int
    proc_start: str
    host: str
    port: int
    socket: str
    slot: str | None = None
    guard: str = ""  # Tokens.fingerprint() of the tokens it asks for; "" when it asks none

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def as_dict(self) -> dict:
        return asdict(self)


def binary() -> str | None:
    """The haproxy executable (PATH, or Debian's /usr/sbin), None when it is not installed."""
    return shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin")


def is_running(proxy: Proxy) -> bool:
    return process_start(proxy.pid) == proxy.proc_start


def recorded(home: Path) -> Proxy | None:
    """The proxy recorded with the main model server, if it still runs (even when that
    model server has died)."""
    record = read_record(home)
    if record is None or not record.proxy:
        return None
    proxy = Proxy(**record.proxy)
    return proxy if is_running(proxy) else None


def start(
    home: Path, host: str, port: int, tokens: Tokens | None = None, timeout: float = 10
) -> Proxy:
    """Write the configuration and start HAProxy in the foreground of its own session (it
    outlives the flow, like the model servers); its output goes to `proxy.log`. With
    `tokens`, it answers 401 to a request without the bearer token (health checks aside)."""
    executable = binary()
    if executable is None:
        raise ServeFailed("haproxy is not installed: apt-get install haproxy, or RETRAIN_PROXY=off")
    sock, config = home / "haproxy.sock", home / "haproxy.cfg"
    sock.unlink(missing_ok=True)
    auth = AUTH if tokens else ""
    config.write_text(CONFIG.format(socket=sock, host=host, port=port, idle=1, auth=auth))
    environment = {**os.environ, **(tokens.environment() if tokens else {})}
    with open(home / "proxy.log", "ab") as log:
        proc = subprocess.Popen(
            [executable, "-W", "-db", "-f", str(config)], stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=environment,
        )  # fmt: skip
    proxy = Proxy(
        proc.pid, process_start(proc.pid) or "", host, port, str(sock), guard=guard_of(tokens)
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServeFailed(f"haproxy exited at start; see {home / 'proxy.log'}")
        if sock.exists() and port_in_use(host, port):
            return proxy
        time.sleep(0.05)
    stop(proxy)
    raise ServeFailed(f"haproxy did not listen on {host}:{port} within {timeout:.0f} s")


def command(proxy: Proxy, line: str) -> str:
    """Send runtime-API commands (`;`-separated) and return HAProxy's answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(5)
        conn.connect(proxy.socket)
        conn.sendall(line.encode() + b"\n")
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    answer = b"".join(chunks).decode(errors="replace").strip()
    if not line.startswith("show") and refusals(answer):
        raise ServeFailed(f"haproxy refused `{line[:120]}`: {'; '.join(refusals(answer))[:300]}")
    return answer


def refusals(answer: str) -> list[str]:
    """The lines of a `set` answer that are not success notes (a state change answers nothing,
    an address change says what changed)."""
    notes = ("changed from", "no need to change")
    return [
        line for line in answer.splitlines() if line.strip() and not any(n in line for n in notes)
    ]


def idle_slot(proxy: Proxy) -> str:
    return SLOTS[1] if proxy.slot == SLOTS[0] else SLOTS[0]


def metrics_steps(slot: str, state: str) -> list[str]:
    """Runtime-API steps that set `slot`'s metrics server, in both backends that hold it (the
    serving version's `/metrics` and the slot's own), to `state`."""
    return [f"set server {backend}/{slot} state {state}"
            for backend in ("metrics", f"metrics_{slot}")]  # fmt: skip


def point_slot(slot: str, port: int, metrics_port: int | None, weight: int) -> list[str]:
    """Runtime-API steps that point `slot` at a model server, with its weight, and ready it."""
    steps = [f"set server models/{slot} addr 127.0.0.1 port {port}",
             f"set weight models/{slot} {weight}"]  # fmt: skip
    if metrics_port:
        for backend in ("metrics", f"metrics_{slot}"):
            steps.append(f"set server {backend}/{slot} addr 127.0.0.1 port {metrics_port}")
    steps.append(f"set server models/{slot} state ready")
    if metrics_port:
        steps += metrics_steps(slot, "ready")
    return steps


def switch(proxy: Proxy, port: int, metrics_port: int | None) -> Proxy:
    """Point the idle slot at a verified model server, make it ready and drain the serving
    slot, in one runtime-API call; returns the proxy with its new slot."""
    new, old = idle_slot(proxy), proxy.slot
    steps = point_slot(new, port, metrics_port, FULL_WEIGHT)
    if old:
        steps += [f"set server models/{old} state drain", *metrics_steps(old, "maint")]
    command(proxy, "; ".join(steps))
    return replace(proxy, slot=new)


def split(proxy: Proxy, port: int, metrics_port: int | None, percent: float) -> Proxy:
    """Give a second model server `percent` of the requests in the idle slot, the serving slot
    keeping the rest (weighted round robin: exactly that share, request by request). The
    proxy's slot stays the serving one; `unsplit` ends it, `switch` hands over."""
    if not proxy.slot or not 0 < percent < 100:
        raise ServeFailed(f"a split needs a serving slot and 0 < percent < 100 (got {percent})")
    share = round(FULL_WEIGHT * percent / 100)
    steps = point_slot(idle_slot(proxy), port, metrics_port, max(share, 1))
    steps.append(f"set weight models/{proxy.slot} {FULL_WEIGHT - share}")
    command(proxy, "; ".join(steps))
    return proxy


def unsplit(proxy: Proxy) -> None:
    """All requests to the serving slot again; the other slot drains (its requests finish)."""
    other = idle_slot(proxy)
    steps = [f"set weight models/{proxy.slot} {FULL_WEIGHT}",
             f"set server models/{other} state drain", *metrics_steps(other, "maint")]  # fmt: skip
    command(proxy, "; ".join(steps))


def requests_by_slot(proxy: Proxy) -> dict[str, int]:
    """Requests each slot of `models` has answered since the proxy started (`stot`)."""
    table = command(proxy, "show stat").lstrip("# ")
    rows = csv.DictReader(io.StringIO(table))
    return {r["svname"]: int(r.get("stot") or 0) for r in rows
            if r.get("pxname") == "models" and r.get("svname") in SLOTS}  # fmt: skip


def restore(proxy: Proxy) -> None:
    """Undo a switch that failed part-way: the proxy's recorded slot serves, the other idles."""
    old, idle = proxy.slot, idle_slot(proxy)
    steps = [f"set weight models/{old} {FULL_WEIGHT}", f"set server models/{old} state ready",
             *metrics_steps(old, "ready"), f"set server models/{idle} state maint",
             *metrics_steps(idle, "maint")]  # fmt: skip
    command(proxy, "; ".join(steps))


def active_sessions(proxy: Proxy, slot: str) -> int:
    """Requests the `models` backend's `slot` is answering now (HAProxy's `scur`)."""
    table = command(proxy, "show stat").lstrip("# ")
    for row in csv.DictReader(io.StringIO(table)):
        if row.get("pxname") == "models" and row.get("svname") == slot:
            return int(row.get("scur") or 0)
    return 0


def retire(proxy: Proxy, slot: str, timeout: float = 30) -> None:
    """Wait until the drained slot has answered its last request, then put it in maintenance."""
    deadline = time.monotonic() + timeout
    while active_sessions(proxy, slot) and time.monotonic() < deadline:
        time.sleep(0.05)
    command(proxy, f"set server models/{slot} state maint")


def stop(proxy: Proxy, timeout: float = 10) -> None:
    """Stop the HAProxy retrain started (its process group); nothing else is signalled."""
    if not is_running(proxy):
        return
    os.killpg(proxy.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while is_running(proxy) and time.monotonic() < deadline:
        reap(proxy.pid)
        time.sleep(0.05)
    if is_running(proxy):
        os.killpg(proxy.pid, signal.SIGKILL)

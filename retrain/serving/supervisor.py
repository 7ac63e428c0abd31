"""The serving supervisor: keeps what `serving.json` records answering, without a person.

Each round it looks at the recorded model server and its proxy. A proxy that died is started
again and pointed at the model server; a model server that does not answer `/ping` and whose
processes are gone, or that missed `misses` rounds in a row, is started again with the same
version (behind the proxy when there is one). Every restart is logged and alerted. More
than `max_restarts` restarts within `window` seconds is a crash loop (the model cannot load,
say): the supervisor stops trying, alerts once, and waits for the next deploy to record
something new.

A deploy holds the serving lock while it swaps, so the supervisor never restarts a server a
deploy is replacing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from retrain.config.settings import Settings
from retrain.io.alerts import Alert, send_alert
from retrain.serving import haproxy, model_server
from retrain.serving.model_server import Served, ServeFailed

log = logging.getLogger(__name__)


@dataclass
class Supervisor:
    """One supervisor's memory across rounds (misses, restart times, whether it gave up)."""

    settings: Settings
    misses: int = 2
    max_restarts: int = 3
    window: float = 600.0
    notify: Callable[[Alert], str | None] | None = None
    missed: int = 0
    restarts: list[float] = field(default_factory=list)
    gave_up_on: float | None = None
    watching: float | None = None  # started_at of the record looked at last
    own: set[float] = field(default_factory=set)  # records this supervisor's restarts wrote
    identity: dict | None = None  # pid and start time, written into the record it watches

    def check(self) -> str | None:
        """One round; returns what it did, in words, or None when all was well."""
        with model_server.serving_lock(self.settings.home, blocking=False) as held:
            if not held:
                return None  # a deploy is swapping; it knows what it does
            record = model_server.read_record(self.settings.home)
            if record is None or record.started_at == self.gave_up_on:
                return None
            if record.started_at != self.watching and record.started_at not in self.own:
                self.restarts, self.missed = [], 0  # a deploy's new server: a fresh count
            self.watching = record.started_at
            if self.identity and record.supervisor != self.identity:
                record = replace(record, supervisor=self.identity)
                model_server.write_state(self.settings.home, record)  # `serve stop` finds it there
            return self.check_record(record)

    def check_record(self, record: Served) -> str | None:
        answering = model_server.ping(record)
        self.missed = 0 if answering else self.missed + 1
        if answering:
            if not record.proxy or haproxy.recorded(self.settings.home):
                return None
            return self.report("proxy", self.restart_proxy(record))
        if model_server.session_members(record) and self.missed < self.misses:
            return None  # alive but slow under load is not yet a dead server
        if self.crash_looping():
            self.gave_up_on = record.started_at
            return self.report("crash loop", self.give_up(record), kind="failure")
        return self.report("model server", self.restart_model(record))

    def crash_looping(self) -> bool:
        now = time.monotonic()
        self.restarts = [t for t in self.restarts if now - t < self.window]
        return len(self.restarts) >= self.max_restarts

    def restart_model(self, record: Served) -> str:
        """Serve the recorded version again: behind the proxy the new server is up before the
        old one's remains are stopped; on its own port they must go first."""
        self.restarts.append(time.monotonic())
        if not record.proxy:
            model_server.stop(record)
        try:
            served = restart_recorded(self.settings, record)
        except ServeFailed as err:
            return f"version {record.version} did not start again: {err}"
        model_server.stop(record)
        self.missed = 0
        self.own.add(served.started_at)
        return (
            f"version {record.version} stopped answering; serving it again at "
            f"{served.public_url}{keep_split(self.settings.home)}"
        )

    def restart_proxy(self, record: Served) -> str:
        """A new HAProxy pointed at the recorded server (stopped again if that fails)."""
        self.restarts.append(time.monotonic())
        tokens = haproxy.tokens_of(self.settings.serve_token, self.settings.metrics_token)
        front = haproxy.start(
            self.settings.home, record.proxy["host"], record.proxy["port"], tokens
        )
        try:
            front = haproxy.switch(front, record.port, record.metrics_port)
        except (ServeFailed, OSError) as err:
            haproxy.stop(front)
            return f"haproxy died and did not take the model server again: {err}"
        updated = replace(record, proxy=front.as_dict())
        model_server.write_state(self.settings.home, updated)
        self.own.add(updated.started_at)
        kept = keep_split(self.settings.home)
        return (f"haproxy died; started it again on port {front.port} for version "
                f"{record.version}{kept}")  # fmt: skip

    def give_up(self, record: Served) -> str:
        return (
            f"version {record.version} was restarted {len(self.restarts)} times in "
            f"{self.window:.0f} s and still does not answer; not retrying. Fix the cause, then "
            "`retrain serve start` or `retrain deploy`"
        )

    def report(self, what: str, message: str, kind: str = "warning") -> str:
        (log.error if kind == "failure" else log.warning)(f"supervisor: {message}")
        alert = Alert(kind, "serve", message, extra={"restarted": what})
        problem = (self.notify or self.send)(alert)
        return message + (f" [{problem}]" if problem else " [alert sent]")

    def send(self, alert: Alert) -> str | None:
        return send_alert(self.settings.alert_url, alert)


def keep_split(home: Path) -> str:
    """After a restart pointed the proxy at the champion alone: a running canary's or A/B
    split gets its share again (its own server never stopped). Returns words for the report
    ("" when no split runs)."""
    plan = model_server.rollout_record(home)
    candidate = model_server.read_state(home, model_server.CANDIDATE)
    front = haproxy.recorded(home)
    if plan is None or candidate is None or front is None or not front.slot:
        return ""
    if plan["mode"] == "shadow":
        return ""
    try:
        haproxy.split(front, candidate.port, candidate.metrics_port, plan["percent"])
    except (ServeFailed, OSError) as err:
        return f"; the {plan['mode']} of version {candidate.version} lost its share: {err}"
    return f"; the {plan['mode']} of version {candidate.version} has its {plan['percent']:g}% again"


def restart_recorded(settings: Settings, record: Served) -> Served:
    """The recorded version, served the way it was (behind the proxy, or on its port)."""
    from retrain.serving import (
        deploy,  # MLflow: imported on a restart, not at the supervisor's start
    )

    timeout = settings.health_timeout
    if record.proxy:
        return deploy.start_behind_proxy(settings, record.model_uri, record.version, timeout)
    return deploy.start_main(
        settings, record.model_uri, record.version, record.host, record.port, timeout
    )


def supervise_forever(
    settings: Settings,
    interval: float = 5.0,
    keep_going: Callable[[], bool] = lambda: True,
    wait: bool = True,
) -> bool:
    """Check every `interval` seconds while `keep_going()` says so, as the one supervisor of
    RETRAIN_HOME. With another one running, return False at once, or with `wait` try again
    every interval and take over when it stops."""
    waiting = False
    while keep_going():
        with model_server.supervisor_lock(settings.home, blocking=False) as held:
            if held:
                identity = model_server.own_identity()
                model_server.record_supervisor(settings.home, identity)  # `serve stop` finds it now
                watch(Supervisor(settings, identity=identity), interval, keep_going)
                return True
        if not wait or not waiting:
            log.info(f"supervisor: another one already watches {settings.home}")
        if not wait:
            return False
        waiting = True
        time.sleep(interval)
    return False


def watch(supervisor: Supervisor, interval: float, keep_going: Callable[[], bool]) -> None:
    home = supervisor.settings.home
    log.info(f"supervisor: watching {model_server.state_file(home)} every {interval:.0f} s")
    while keep_going():
        try:
            supervisor.check()
        except Exception:  # a round that fails must not end supervision
            log.exception("supervisor: a round failed")
        time.sleep(interval)

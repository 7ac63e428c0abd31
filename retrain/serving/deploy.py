"""Deploy: serve a registered version on the main port, verified before the old one goes, and
undo everything a failed deploy moved (aliases, tags, the audit row); manual rollback.

The candidate first runs on a spare loopback port and must answer `/ping` and give, for the
logged input example, the same predictions as the version loaded in this process. Only then
is the old server stopped and the new one started on the main port and checked again. If any
step fails, the old version is serving on the main port again before the error is raised.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from retrain.config.settings import Settings
from retrain.errors import BadInput, StageFailed
from retrain.io import audit, store, tracking
from retrain.io.audit import Attempt
from retrain.model import logged_model
from retrain.model.aliases import aliases_for
from retrain.model.instruments import ServingContext
from retrain.promotion.promote import PromotionReport, note_decision
from retrain.promotion.rules import Decision
from retrain.serving import haproxy, model_server
from retrain.serving.model_server import Served, ServeFailed

AnswerCheck = Callable[[list, list], str | None]
log = logging.getLogger(__name__)


def compare_answers(expected: list, served: list) -> str | None:
    """None when the server answered what the in-process model predicts, else what differs."""
    if len(expected) != len(served) or any(
        str(a) != str(b) for a, b in zip(expected, served, strict=True)
    ):
        return f"served predictions {served[:5]} differ from the model's own {expected[:5]}"
    return None


@dataclass(frozen=True)
class DeployReport:
    """What a deploy did; `down_from`/`down_until` (time.monotonic) bound the main port's
    downtime, so a client can tell failures inside the window from failures outside it."""

    version: str
    previous_version: str | None
    url: str
    downtime_seconds: float
    changed: bool
    down_from: float = 0.0
    down_until: float = 0.0
    proxied: bool = False
    supervisor: int | None = None  # pid of the supervisor left watching it

    def describe(self) -> str:
        watched = f", supervisor pid {self.supervisor}" if self.supervisor else ""
        return self.describe_swap() + watched

    def describe_swap(self) -> str:
        if not self.changed:
            return f"version {self.version} already serving at {self.url}"
        before = f" (was {self.previous_version})" if self.previous_version else ""
        how = (
            "switched behind HAProxy"
            if self.proxied
            else "no proxy (install haproxy for swaps without downtime)"
        )
        return (  # nothing touches the URL: a log viewer would take it into the link
            f"serving version {self.version}{before} at {self.url} with the main port down "
            f"{self.downtime_seconds:.1f} s, {how}"
        )


@dataclass(frozen=True)
class Candidate:
    version: str
    model_uri: str
    example: object
    expected: list


def load_candidate(settings: Settings, version: str) -> Candidate:
    """The version, its input example and the labels the same wrapper gives it in this
    process (what the server must answer); a version that cannot load is a ServeFailed."""
    try:
        model, example = logged_model.load_version_and_example(
            settings.tracking_uri, settings.model_name, version
        )
    except Exception as err:  # any loader error means the version cannot be served
        raise ServeFailed(f"version {version} cannot be loaded: {str(err)[:300]}") from err
    expected = np.asarray(model.predict_labels(example)).tolist()
    return Candidate(version, tracking.model_uri(settings.model_name, version), example, expected)


def check_server(
    home: Path, served: Served, candidate: Candidate, timeout: float, check: AnswerCheck
) -> None:
    """Health, then the smoke test: the input example answered as in-process."""
    model_server.wait_healthy(home, served, timeout)
    try:
        answers = model_server.invoke(served.url, candidate.example)
    except OSError as err:
        raise ServeFailed(f"version {served.version} failed the smoke request: {err}") from err
    problem = check(candidate.expected, answers)
    if problem:
        raise ServeFailed(f"version {served.version} failed the smoke test: {problem}")


def serve_verified(
    settings: Settings,
    version: str,
    health_timeout: float = 120,
    check: AnswerCheck = compare_answers,
) -> DeployReport:
    """Swap the main-port server to `version`, or leave the old one serving and raise; a
    supervisor is left watching it (RETRAIN_SUPERVISE)."""
    with model_server.serving_lock(settings.home):
        report = swap_to(settings, version, health_timeout, check)
    return replace(report, supervisor=keep_supervised(settings))


def keep_supervised(settings: Settings) -> int | None:
    """The pid of the one supervisor of RETRAIN_HOME, started detached when none runs (and
    RETRAIN_SUPERVISE is on), so that whatever started serving leaves it watched."""
    return model_server.start_supervisor(settings.home) if settings.supervise else None


def swap_to(
    settings: Settings, version: str, health_timeout: float, check: AnswerCheck
) -> DeployReport:
    """serve_verified's body, under the serving lock."""
    home, host, port = settings.home, settings.serve_host, settings.serve_port
    if model_server.state_file(home, model_server.ROLLOUT).exists():
        raise ServeFailed(
            "a rollout splits the traffic now; end it first with `retrain rollout promote` or "
            "`retrain rollout abort` (`retrain rollout status` shows it)"
        )
    old = model_server.read_state(home)
    url = f"http://{host}:{port}"
    if old and old.version == version and old.public_url == url and model_server.ping_url(url):
        return DeployReport(version, version, url, 0.0, changed=False)
    ours = (old and old.public_url == url) or haproxy.recorded(home)
    if model_server.port_in_use(host, port) and not ours:
        raise ServeFailed(
            f"port {port} on {host} is held by a process retrain did not start; stop it or "
            "set RETRAIN_SERVE_PORT"
        )
    candidate = load_candidate(settings, version)
    if uses_proxy(settings) or haproxy.recorded(home):
        return swap_behind_proxy(settings, candidate, old, health_timeout, check)
    try_on_spare_port(settings, candidate, health_timeout, check)
    return swap_main_port(settings, candidate, old, health_timeout, check)


def uses_proxy(settings: Settings) -> bool:
    """HAProxy owns the main port unless RETRAIN_PROXY=off or (with auto) it is not installed.
    A token, or a host beyond loopback (which needs one), requires the proxy: it checks it."""
    guarded = guard_reason(settings)
    if settings.proxy == "off":
        if guarded:
            raise ServeFailed(f"{guarded} needs the proxy, which checks the token; unset "
                              "RETRAIN_PROXY=off")  # fmt: skip
        return False
    if haproxy.binary():
        return True
    if settings.proxy == "haproxy" or guarded:
        why = "RETRAIN_PROXY=haproxy" if settings.proxy == "haproxy" else guarded
        raise ServeFailed(f"{why} but haproxy is not installed: apt-get install haproxy")
    return False


def guard_reason(settings: Settings) -> str | None:
    """Why the main port must ask for a bearer token (None when it need not); a host beyond
    loopback without RETRAIN_SERVE_TOKEN is refused outright."""
    if not is_loopback(settings.serve_host):
        if not settings.serve_token:
            raise ServeFailed(
                f"RETRAIN_SERVE_HOST={settings.serve_host} serves beyond this machine: set "
                "RETRAIN_SERVE_TOKEN (16+ characters), which the proxy then asks every request "
                "for, or serve on 127.0.0.1"
            )
        return f"RETRAIN_SERVE_HOST={settings.serve_host}"
    return "RETRAIN_SERVE_TOKEN" if settings.serve_token else None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def start_proxy(settings: Settings) -> haproxy.Proxy:
    return haproxy.start(
        settings.home,
        settings.serve_host,
        settings.serve_port,
        haproxy.tokens_of(settings.serve_token, settings.metrics_token),
    )


def running_proxy(settings: Settings) -> haproxy.Proxy | None:
    """The recorded proxy of the main port, if it asks for the tokens the settings name now;
    one that asks for others (a token set, changed or removed since) is refused."""
    front = haproxy.recorded(settings.home)
    tokens = haproxy.tokens_of(settings.serve_token, settings.metrics_token)
    if front is None or front.guard == haproxy.guard_of(tokens):
        return front
    raise ServeFailed(
        "the running proxy asks for other tokens than RETRAIN_SERVE_TOKEN and "
        "RETRAIN_METRICS_TOKEN now name; restart serving for the new ones: `retrain serve "
        "stop`, then `retrain serve start`"
    )


def swap_behind_proxy(
    settings: Settings,
    candidate: Candidate,
    old: Served | None,
    timeout: float,
    check: AnswerCheck,
) -> DeployReport:
    """Start and verify the candidate on a free port, switch the proxy to it, let the old
    server answer its last requests, stop it. A candidate that fails its check is stopped and
    the old one never stopped serving."""
    home = settings.home
    new = start_checked(settings, candidate, model_server.SPARE, timeout, check)
    front, started = None, False
    try:
        front, down_from, started = front_proxy(settings, old)
        switched = haproxy.switch(front, new.port, new.metrics_port)
    except Exception:
        undo_switch(settings, front, started, old, timeout)
        raise
    up_again = time.monotonic()
    model_server.write_state(home, replace(new, proxy=switched.as_dict()))
    model_server.write_state(home, None, model_server.SPARE)
    retire_old(switched, front.slot, old)
    downtime = up_again - down_from if down_from else 0.0
    return DeployReport(
        candidate.version, old.version if old else None, switched.url, downtime, True,
        down_from or up_again, up_again, proxied=True,
    )  # fmt: skip


def undo_switch(
    settings: Settings,
    front: haproxy.Proxy | None,
    started: bool,
    old: Served | None,
    timeout: float,
) -> None:
    """A swap that failed before it was recorded: the old slot serves again, the candidate
    and a proxy this swap started stop, and a server that held the main port is restarted."""
    if front and front.slot:
        with contextlib.suppress(ServeFailed, OSError):
            haproxy.restore(front)
    model_server.stop_recorded(settings.home, model_server.SPARE)
    if front and started:
        haproxy.stop(front)
    if old and not old.proxy and not model_server.is_running(old):
        restart(settings, old, timeout)


def retire_old(switched: haproxy.Proxy, slot: str | None, old: Served | None) -> None:
    """After the switch: the old slot answers its last requests, then the old server stops.
    A failure here is logged; it never undoes the verified switch."""
    try:
        if slot:
            haproxy.retire(switched, slot)
        if old:
            model_server.stop(old)
    except (ServeFailed, OSError) as err:
        log.warning(f"the new version serves, but the old server did not stop cleanly: {err}")


def front_proxy(settings: Settings, old: Served | None) -> tuple[haproxy.Proxy, float, bool]:
    """The running proxy of the main port, started when there is none; a model server that
    held the main port itself is stopped first (the one swap with downtime). Returns the
    proxy, when the main port went down (0.0 when it did not), and whether it was started."""
    front = running_proxy(settings)
    if front:
        return front, 0.0, False
    down_from = 0.0
    if old and not old.proxy:
        down_from = time.monotonic()
        model_server.stop(old)
    started = start_proxy(settings)
    return started, down_from, True


def try_on_spare_port(
    settings: Settings, candidate: Candidate, timeout: float, check: AnswerCheck
) -> None:
    """Run the candidate on a free loopback port, check it, stop it (whatever happens)."""
    try:
        start_checked(settings, candidate, model_server.SPARE, timeout, check)
    finally:
        model_server.stop_recorded(settings.home, model_server.SPARE)


def start_checked(
    settings: Settings,
    candidate: Candidate,
    record: str,
    timeout: float,
    check: AnswerCheck,
    role: str = "champion",
) -> Served:
    """The candidate's server on a free loopback port, recorded under `record` while it runs
    (so a cancelled or crashed run can still stop it, and the next one stops what a killed
    one left behind), then checked; stopped and cleared when the check fails."""
    home = settings.home
    model_server.stop_recorded(home, record)
    served = start_server(settings, candidate.model_uri, candidate.version, "127.0.0.1",
                          spare_port(settings), role)  # fmt: skip
    model_server.write_state(home, served, record)
    try:
        check_server(home, served, candidate, timeout, check)
    except Exception:
        model_server.stop_recorded(home, record)
        raise
    return served


def swap_main_port(
    settings: Settings,
    candidate: Candidate,
    old: Served | None,
    timeout: float,
    check: AnswerCheck,
) -> DeployReport:
    """Stop the old server, start the candidate on the main port and check it; on failure
    start the old version there again."""
    home, host, port = settings.home, settings.serve_host, settings.serve_port
    down_since = time.monotonic()
    if old:
        model_server.stop(old)
    new = start_server(settings, candidate.model_uri, candidate.version, host, port)
    try:
        check_server(home, new, candidate, timeout, check)
    except ServeFailed as err:
        model_server.stop(new)
        model_server.write_state(home, None)
        if old:
            try:
                restart(settings, old, timeout)
            except ServeFailed as again:
                raise ServeFailed(f"{err}; restarting version {old.version}: {again}") from err
        raise
    up_again = time.monotonic()
    model_server.write_state(home, new)
    return DeployReport(
        candidate.version, old.version if old else None, f"http://{host}:{port}",
        up_again - down_since, True, down_since, up_again,
    )  # fmt: skip


def spare_port(settings: Settings, also: tuple[int, ...] = ()) -> int:
    """A free loopback port that is not the main port nor any port retrain has recorded."""
    avoid = {settings.serve_port, *also} | model_server.recorded_ports(settings.home)
    return model_server.spare_port(avoid)


def start_server(
    settings: Settings, model_uri: str, version: str, host: str, port: int, role: str = "champion"
) -> Served:
    """A model server with its metrics on a free loopback port and, unless
    RETRAIN_PREDICTION_LOG=off, its prediction log writing to the data store (each row with
    the server's `role`: champion, or canary/ab while a rollout runs)."""
    metrics_port = spare_port(settings, also=(port,))
    context = ServingContext(
        settings.dataset, settings.model_name, version,
        settings.database_url if settings.prediction_log else None, "127.0.0.1", metrics_port,
        settings.prediction_buffer, settings.load_schema().roles.ids, role=role,
    )  # fmt: skip
    return model_server.start(
        settings.home, settings.tracking_uri, model_uri, version, host, port,
        metrics_port, context.to_environment(),
    )  # fmt: skip


def start_main(
    settings: Settings, model_uri: str, version: str, host: str, port: int, timeout: float
) -> Served:
    """Start a server, wait for `/ping` and record it as the main server (a server that does
    not answer in time is stopped, not left behind)."""
    served = start_server(settings, model_uri, version, host, port)
    try:
        model_server.wait_healthy(settings.home, served, timeout)
    except ServeFailed:
        model_server.stop(served)
        raise
    model_server.write_state(settings.home, served)
    return served


def restart(settings: Settings, old: Served, timeout: float) -> Served:
    """Serve the previous version on its port again (after a failed swap)."""
    return start_main(settings, old.model_uri, old.version, old.host, old.port, timeout)


def serve_start(
    settings: Settings, version: str, timeout: float = 120, supervised: bool = True
) -> Served:
    """Start serving `version` on the main port without the spare-port check (after a
    reboot, say); refuses when something already serves there. Unless `supervised` is off
    (the worker runs its own), a supervisor is left watching; the answer names its pid."""
    with model_server.serving_lock(settings.home):
        served = start_unless_served(settings, version, timeout)
    pid = keep_supervised(settings) if supervised else None
    return replace(served, supervisor={"pid": pid}) if pid else served


def start_unless_served(settings: Settings, version: str, timeout: float) -> Served:
    """serve_start's body, under the serving lock."""
    front = haproxy.recorded(settings.home)
    if model_server.read_state(settings.home) or (
        not front and model_server.port_in_use(settings.serve_host, settings.serve_port)
    ):
        raise ServeFailed(
            f"port {settings.serve_port} is already in use; `retrain serve status` shows what "
            "serves there, `retrain deploy` swaps it"
        )
    uri = tracking.model_uri(settings.model_name, version)
    if uses_proxy(settings) or front:
        return start_behind_proxy(settings, uri, version, timeout)
    return start_main(settings, uri, version, settings.serve_host, settings.serve_port, timeout)


def start_behind_proxy(settings: Settings, model_uri: str, version: str, timeout: float) -> Served:
    """A model server on a free port, healthy, then the proxy (reused or started) pointed at
    it; nothing is left running when a step fails."""
    front = running_proxy(settings)
    served = start_server(settings, model_uri, version, "127.0.0.1", spare_port(settings))
    started = None
    try:
        model_server.wait_healthy(settings.home, served, timeout)
        if front is None:
            front = started = start_proxy(settings)
        front = haproxy.switch(front, served.port, served.metrics_port)
    except Exception:
        model_server.stop(served)
        if started:
            haproxy.stop(started)
        raise
    served = replace(served, proxy=front.as_dict())
    model_server.write_state(settings.home, served)
    return served


def deploy_champion(
    engine: store.Engine,
    client: tracking.MlflowClient,
    settings: Settings,
    promotion: PromotionReport | None = None,
    flow_run_id: str | None = None,
    health_timeout: float = 120,
    check: AnswerCheck = compare_answers,
) -> DeployReport:
    """Serve the version the promotion crowned (else `@champion`) the verified way; on
    failure put aliases, tags and the audit row as DESIGN.md's rollback contract says, and
    raise."""
    version = (
        promotion.challenger if promotion is not None and promotion.promoted
        else tracking.alias_version(client, settings.model_name, "champion")
    )  # fmt: skip
    if version is None:
        raise StageFailed("there is no champion to serve yet; run `retrain run` first")
    try:
        return serve_verified(settings, version, health_timeout, check)
    except ServeFailed as err:
        reason = f"deploy of version {version} failed: {err}"
        undo_deploy(engine, client, settings, version, promotion, reason, flow_run_id)
        raise ServeFailed(f"{reason}; rolled back: {serving_now(settings)}") from err


def serving_now(settings: Settings) -> str:
    """What answers on the main port after a rollback, checked, in words for the message."""
    served = model_server.read_state(settings.home)
    if served is not None and model_server.ping_url(served.public_url):
        return f"version {served.version} answers /ping at {served.public_url}"
    return (
        f"no version answers /ping on port {settings.serve_port}; serve the champion with "
        "`retrain serve start` once the cause is fixed"
    )


def undo_deploy(
    engine: store.Engine,
    client: tracking.MlflowClient,
    settings: Settings,
    version: str,
    promotion: PromotionReport | None,
    reason: str,
    flow_run_id: str | None,
) -> None:
    """Aliases back where they were before the attempt, the version tagged failed, and the
    attempt's row `rolled_back` (or a `deploy_failed` row for a deploy with no promotion)."""
    if promotion and promotion.promoted and promotion.challenger == version:
        aliases = aliases_for(client, engine, settings, flow_run_id)
        aliases.restore(promotion.aliases_before, f"rolled back: {reason}")
        audit.mark_attempt(engine, promotion.attempt_id, "rolled_back", reason)
        tracking.log_promotion(client, settings.model_name, version, "rolled_back")
        note_decision(client, settings.model_name, version, "rolled_back")
    else:
        attempt = Attempt(
            settings.dataset, version, None, None, None, "deploy_failed", reason, flow_run_id
        )
        audit.record_attempt(engine, attempt)
    tracking.set_validation(client, settings.model_name, version, "failed", reason)


def rollback_champion(
    engine: store.Engine,
    client: tracking.MlflowClient,
    settings: Settings,
    to_version: str | None = None,
    flow_run_id: str | None = None,
) -> tuple[PromotionReport, DeployReport]:
    """Move `champion` back (to `previous_champion` unless a version is given) and serve it
    the verified way; a failed deploy restores the aliases as they were."""
    aliases = aliases_for(client, engine, settings, flow_run_id)
    before = aliases.read()
    target = to_version or before["previous_champion"]
    if target is None:
        raise StageFailed("no previous champion to roll back to; give one with --to VERSION")
    current = before["champion"]
    if not tracking.version_exists(client, settings.model_name, target):
        raise BadInput(f"{settings.model_name} has no version {target}")
    decision = Decision(True, f"rolled back by hand from version {current} to {target}")
    aliases.crown(target, decision.reason)
    attempt = Attempt(
        settings.dataset, target, current, None, None, "rolled_back", decision.reason, flow_run_id
    )
    report = PromotionReport(
        decision, target, current, None, None, audit.record_attempt(engine, attempt), before
    )
    return report, deploy_champion(engine, client, settings, report, flow_run_id)


def serve_champion_again(settings: Settings, client: tracking.MlflowClient) -> str:
    """Serve @champion when no model server of ours runs (a worker's start, after a reboot);
    a champion that cannot be served is reported, never raised."""
    served = model_server.read_state(settings.home)
    if served is not None:
        return f"version {served.version} is already served at {served.public_url}"
    try:
        version = tracking.alias_version(client, settings.model_name, "champion")
        if version is None:
            return "no champion yet; the first promotion will serve one"
        served = serve_start(settings, version, settings.health_timeout, supervised=False)
    except Exception as err:  # any failure: the worker starts anyway and says why
        return f"could not serve the champion ({err}); starting anyway"
    return f"serving champion version {served.version} at {served.public_url} (pid {served.pid})"

"""A rollout's traffic split (adapter): a second version served beside the champion behind
HAProxy, recorded in `<RETRAIN_HOME>/rollout.json` while it runs.

`start_split` starts the candidate on a free loopback port with its role (`canary` or `ab`),
checks it like a deploy does (health, then the input example answered as in-process), then
gives it its share of the requests through HAProxy's runtime API. `end_split` gives every
request back to the champion, lets the candidate answer its last ones, and stops it. Whether
the candidate then becomes champion is `retrain.serving.bake`'s business.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from retrain.config.settings import Settings
from retrain.errors import StageFailed
from retrain.promotion.guards import Counts
from retrain.serving import deploy, haproxy, model_server
from retrain.serving.model_server import CANDIDATE, Served

STATE, LAST = model_server.ROLLOUT, "rollout-last.json"
MODES = ("canary", "ab", "shadow")


@dataclass(frozen=True)
class Rollout:
    """A running split: who serves beside whom, at what share, since and until when (UTC)."""

    mode: str  # canary, shadow (a bake decides) or ab (a comparison that promotes nobody)
    version: str
    champion: str
    percent: float
    started_at: str  # ISO, naive UTC as the prediction log writes it
    ends_at: str
    attempt_id: int | None = None  # the `promotions` row a canary's bake decides
    aliases_before: dict | None = None
    champion_counts: list[int] | None = None  # its predict calls (ok, errors) at the start
    outcome: str | None = None  # once finished: promoted, rolled_back, ended, aborted
    reason: str | None = None
    finished_at: str | None = None
    candidate_counts: list[int] | None = None  # its predict calls (ok, errors) at the end
    replayed_id: int = 0  # a shadow's: the last prediction-log row replayed to it
    compared: int = 0  # rows a shadow answered beside the champion's logged answer
    differing: int = 0  # of them, rows it answered differently

    @property
    def started(self) -> datetime:
        return datetime.fromisoformat(self.started_at)

    @property
    def ends(self) -> datetime:
        return datetime.fromisoformat(self.ends_at)

    def remaining(self, now: datetime) -> float:
        """Seconds until the bake ends (0 when it is over)."""
        return max((self.ends - now).total_seconds(), 0.0)

    def describe(self) -> str:
        what = {"canary": "canary", "ab": "A/B split", "shadow": "shadow"}[self.mode]
        share = ("the champion's logged requests replayed" if self.mode == "shadow"
                 else f"{self.percent:g}% of requests")  # fmt: skip
        head = (f"{what} of version {self.version} beside champion {self.champion}: "
                f"{share} since {self.started_at[:19]} UTC")  # fmt: skip
        if self.outcome:
            return f"{head}; {self.outcome}: {self.reason}"
        return f"{head}, until {self.ends_at[:19]} UTC"


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def read_rollout(home: Path, name: str = STATE) -> Rollout | None:
    """The running rollout (or with LAST, the one that finished last), None when none."""
    record = model_server.rollout_record(home, name)
    try:
        return Rollout(**record) if record is not None else None
    except TypeError:
        return None


def write_rollout(home: Path, rollout: Rollout | None, name: str = STATE) -> None:
    path = home / name
    if rollout is None:
        path.unlink(missing_ok=True)
        return
    home.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(rollout), indent=2))
    tmp.replace(path)


def in_progress(home: Path) -> str | None:
    """Why a promotion must wait ("rollout of version N in progress"), None when none runs."""
    running = read_rollout(home)
    return f"rollout of version {running.version} in progress" if running else None


def candidate(home: Path) -> Served | None:
    return model_server.read_state(home, CANDIDATE)


def start_split(
    settings: Settings,
    version: str,
    mode: str,
    percent: float,
    minutes: float,
    attempt_id: int | None = None,
    aliases_before: dict | None = None,
) -> Rollout:
    """Serve `version` beside the champion with `percent` of the requests; refuses when a
    rollout runs already or no champion is served behind the proxy."""
    if mode not in MODES:
        raise StageFailed(f"rollout mode {mode!r} is not one of {', '.join(MODES)}")
    home = settings.home
    with model_server.serving_lock(home):
        champion, front = split_ready(settings, version, needs_proxy=mode != "shadow")
        served = start_candidate(settings, version, mode)
        try:
            if mode != "shadow":  # a shadow answers replayed requests, no client's
                haproxy.split(front, served.port, served.metrics_port, percent)
        except Exception:
            model_server.stop_recorded(home, CANDIDATE)
            raise
        now, counts = utc_now(), served_counts(champion)
        rollout = Rollout(
            mode, version, champion.version, percent, now.isoformat(),
            (now + timedelta(minutes=minutes)).isoformat(), attempt_id, aliases_before,
            [counts.ok, counts.errors],
        )  # fmt: skip
        write_rollout(home, rollout)
    return rollout


def split_ready(
    settings: Settings, version: str, needs_proxy: bool = True
) -> tuple[Served, haproxy.Proxy | None]:
    """The served champion and its proxy, when a split can start; else why not, and what
    to do (a shadow needs no proxy: no client reaches it)."""
    home = settings.home
    running = read_rollout(home)
    if running:
        raise StageFailed(f"a rollout runs already ({running.describe()}); end it first with "
                          "`retrain rollout promote` or `retrain rollout abort`")  # fmt: skip
    champion = model_server.read_state(home)
    if champion is None:
        raise StageFailed("no model is served to split traffic with; `retrain serve start` first")
    front = deploy.running_proxy(settings)
    if needs_proxy and (not champion.proxy or front is None or not front.slot):
        raise StageFailed("a split needs HAProxy in front of the model servers: apt-get install "
                          "haproxy, unset RETRAIN_PROXY=off, then `retrain deploy`")  # fmt: skip
    if champion.version == version:
        raise StageFailed(f"version {version} is the one served already")
    return champion, front


def start_candidate(settings: Settings, version: str, role: str) -> Served:
    """The candidate's server on a free loopback port, recorded, checked like a deploy's; a
    candidate that fails its check is stopped before the error is raised."""
    loaded = deploy.load_candidate(settings, version)
    return deploy.start_checked(settings, loaded, CANDIDATE, settings.health_timeout,
                                deploy.compare_answers, role)  # fmt: skip


def end_split(settings: Settings, outcome: str, reason: str) -> Rollout | None:
    """Every request to the champion again, the candidate's last requests answered, the
    candidate stopped; the rollout is kept as the last one with its outcome."""
    home = settings.home
    with model_server.serving_lock(home):
        front = haproxy.recorded(home)
        if front is not None and front.slot:
            haproxy.unsplit(front)
            haproxy.retire(front, haproxy.idle_slot(front))
        return close(home, outcome, reason)


def close(home: Path, outcome: str, reason: str) -> Rollout | None:
    """Stop the candidate and file the rollout as the last one (the caller holds the serving
    lock and has given the champion its traffic back, or stops serving altogether)."""
    rollout = read_rollout(home)
    counts = served_counts(candidate(home))
    model_server.stop_recorded(home, CANDIDATE)
    if rollout is None:
        return None
    finished = replace(
        rollout, outcome=outcome, reason=reason, finished_at=utc_now().isoformat(),
        candidate_counts=[counts.ok, counts.errors],
    )  # fmt: skip
    write_rollout(home, finished, LAST)
    write_rollout(home, None)
    return finished


def served_counts(served: Served | None) -> Counts:
    """A server's predict calls by outcome, from its own metrics (zeros when it does not
    answer)."""
    if served is None:
        return Counts()
    text = model_server.read_metrics(served)
    found = {"ok": 0, "error": 0}
    for family in text_string_to_metric_families(text):
        if family.name != "retrain_model_requests":
            continue
        for sample in family.samples:
            status = sample.labels.get("status")
            if sample.name.endswith("_total") and status in found:
                found[status] = int(sample.value)
    return Counts(found["ok"], found["error"])


def current_or_last(home: Path) -> Rollout:
    """The running rollout, else the one that finished last; says what to do when none ran."""
    found = read_rollout(home) or read_rollout(home, LAST)
    if found is None:
        raise StageFailed("no rollout has run yet; start one with `retrain rollout ab --version "
                          "N --percent P --hours H` or RETRAIN_ROLLOUT=canary")  # fmt: skip
    return found

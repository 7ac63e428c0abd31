"""The bake of a rollout (adapter): what both versions answered since the split began, the
guards judged on it, and the end: a canary that held its guards becomes champion (aliases
moved, served the verified way, its `promotions` row `promoted`); one that breached a guard
is rolled back at once (every request to the champion, the candidate stopped, aliases
untouched, the row `rolled_back` with the metric and its values). An A/B split promotes
nobody: it ends, and its report stays readable.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import datetime

import pandas as pd

from retrain.config.settings import Settings
from retrain.errors import StageFailed
from retrain.io import audit, labels, prediction_log, store, tracking
from retrain.io.audit import Attempt
from retrain.model.aliases import aliases_for
from retrain.promotion.guards import (
    Counts,
    GuardLimits,
    Reading,
    VersionSummary,
    difference_interval,
    read_guards,
    summarize,
)
from retrain.promotion.promote import PromotionReport, note_decision
from retrain.promotion.rules import Decision
from retrain.serving import deploy, model_server, rollout
from retrain.serving.deploy import DeployReport
from retrain.serving.rollout import Rollout


def limits_of(settings: Settings) -> GuardLimits:
    return GuardLimits(
        settings.guard_max_error_rate, settings.guard_max_p95_ratio, settings.guard_p95_slack_ms,
        settings.guard_max_psi, settings.guard_max_auroc_drop, settings.guard_min_requests,
        settings.guard_max_disagreement,
    )  # fmt: skip


@dataclass(frozen=True)
class BakeReading:
    """One look at a running rollout: the guards, and each version's traffic so far."""

    rollout: Rollout
    at: datetime
    readings: list[Reading]
    champion: VersionSummary
    candidate: VersionSummary
    difference: tuple[float, float, float] | None  # realized AUROC, candidate - champion

    @property
    def breach(self) -> Reading | None:
        return next((r for r in self.readings if r.breached), None)

    @property
    def share(self) -> float | None:
        """The candidate's share of the answered requests so far."""
        total = self.champion.requests + self.candidate.requests
        return self.candidate.requests / total if total else None

    def line(self) -> str:
        """One progress line: time left, traffic per version, each guard."""
        left = self.rollout.remaining(self.at) / 60
        share = "n/a" if self.share is None else f"{self.share:.1%}"
        guards = "; ".join(r.describe() for r in self.readings)
        return (f"{self.rollout.mode} v{self.rollout.version}: {left:.1f} min left, requests "
                f"v{self.champion.version} {self.champion.requests} / v{self.candidate.version} "
                f"{self.candidate.requests} (share {share}); {guards}")  # fmt: skip

    def figures(self) -> dict[str, float]:
        """Each version's figures as `<champion|candidate>_<figure>`, for an MLflow run."""
        out: dict[str, float] = {}
        for role, summary in (("champion", self.champion), ("candidate", self.candidate)):
            for key in ("requests", "rows", "p50_ms", "p95_ms", "error_rate", "labelled", "auroc"):
                value = getattr(summary, key)
                if value is not None:
                    out[f"{role}_{key}"] = float(value)
        if self.difference:
            point, low, high = self.difference
            out |= {"auroc_difference": point, "auroc_difference_low": low,
                    "auroc_difference_high": high}  # fmt: skip
        return out

    def tags(self) -> dict[str, str]:
        plan = self.rollout
        return {"retrain.rollout_version": plan.version, "retrain.rollout_champion": plan.champion,
                "retrain.rollout_mode": plan.mode, "retrain.rollout_started": plan.started_at,
                "retrain.rollout_outcome": plan.outcome or "running"}  # fmt: skip

    def markdown(self) -> str:
        """The progress artifact: traffic and each metric against its limit."""
        lines = [f"**{self.rollout.describe()}**", "", REPORT_HEAD, "|---" * 9 + "|"]
        lines += [summary_row(s) for s in (self.champion, self.candidate)]
        lines += ["", "| guard | value | limit | state |", "|---|---|---|---|"]
        for r in self.readings:
            value = "n/a" if r.value is None else f"{r.value:.4g}"
            state = "breached" if r.breached else "ok" if r.judged else "waiting"
            lines.append(f"| {r.metric} | {value} | {r.limit:g} | {state} {r.detail} |")
        if self.difference:
            point, low, high = self.difference
            lines += ["", f"Realized AUROC difference (candidate - champion): {point:+.4f} "
                      f"[{low:+.4f}, {high:+.4f}]"]  # fmt: skip
        return "\n".join(lines)


REPORT_HEAD = (
    "| version | role | requests | rows | p50 ms | p95 ms | error rate | labelled | "
    "realized AUROC |"
)


def shown(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def summary_row(s: VersionSummary) -> str:
    auroc = (
        "n/a"
        if s.auroc is None
        else f"{s.auroc:.4f} [{shown(s.auroc_low, 3)}, {shown(s.auroc_high, 3)}]"
    )
    rate = "n/a" if s.error_rate is None else f"{s.error_rate:.2%}"
    return (f"| v{s.version} | {s.role} | {s.requests} | {s.rows} | {shown(s.p50_ms)} | "
            f"{shown(s.p95_ms)} | {rate} | {s.labelled} | {auroc} |")  # fmt: skip


def answered_during(engine: store.Engine, dataset: str, plan: Rollout) -> pd.DataFrame:
    """The log's rows since the split began (until it ended, for a finished one)."""
    until = datetime.fromisoformat(plan.finished_at) if plan.finished_at else None
    rows = labels.read_answers(engine, dataset, plan.started, until)
    return pd.DataFrame(rows, columns=list(labels.ANSWER_COLUMNS))


def split_rows(rows: pd.DataFrame, plan: Rollout) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The champion's rows (role champion, or none from an older release) and the candidate's
    (its version in the rollout's role)."""
    version = rows["model_version"].astype(str)
    champion = rows[(version == plan.champion) & rows["role"].fillna("champion").eq("champion")]
    return champion, rows[(version == plan.version) & (rows["role"] == plan.mode)]


REPLAY_ROWS = 5000  # rows of the champion's log replayed to a shadow per check, at most


def replay(settings: Settings, engine: store.Engine, plan: Rollout) -> Rollout:
    """Send a shadow the requests the champion answered since the last check, each logged
    request as one request (its own log records its answers, role `shadow`), and count the
    rows it answers unlike the champion did. HAProxy cannot mirror traffic; the log holds
    every answered request, so the shadow sees the same rows, a few seconds later."""
    served = rollout.candidate(settings.home)
    logged = prediction_log.read_answered_after(
        engine, settings.dataset, plan.champion, plan.replayed_id, REPLAY_ROWS
    )
    if served is None or not logged:
        return plan
    compared, differing = plan.compared, plan.differing
    for _, group in itertools.groupby(logged, key=lambda row: row[1]):
        rows = list(group)
        frame = pd.DataFrame([json.loads(row[2]) for row in rows])
        try:
            answers = model_server.invoke(served.url, frame)
        except OSError:  # a failure: its own counters count it for the error-rate guard
            continue
        compared += len(rows)
        differing += sum(str(a) != row[3] for a, row in zip(answers, rows, strict=False))
    updated = replace(plan, replayed_id=logged[-1][0], compared=compared, differing=differing)
    with model_server.serving_lock(settings.home):
        if rollout.read_rollout(settings.home) is not None:  # not ended by hand meanwhile
            rollout.write_rollout(settings.home, updated)
    return updated


def observe(settings: Settings, engine: store.Engine, plan: Rollout) -> BakeReading:
    """Read the guards of a running rollout from the prediction log and the servers."""
    champion_rows, candidate_rows = split_rows(
        answered_during(engine, settings.dataset, plan), plan
    )
    served = rollout.candidate(settings.home)
    counts = (Counts(*plan.candidate_counts) if plan.candidate_counts
              else rollout.served_counts(served))  # fmt: skip
    positive = settings.load_schema().positive_class
    agreement = (plan.compared, plan.differing) if plan.mode == "shadow" else None
    readings = read_guards(champion_rows, candidate_rows, counts, limits_of(settings), positive,
                           agreement)  # fmt: skip
    if served is None and plan.finished_at is None:
        readings.insert(0, Reading("candidate_down", 1.0, 0.0, True, "its server stopped"))
    champion_counts = since_start(
        rollout.served_counts(model_server.read_state(settings.home)), plan
    )
    return BakeReading(
        plan, rollout.utc_now(), readings,
        summarize(champion_rows, plan.champion, "champion", champion_counts, positive),
        summarize(candidate_rows, plan.version, plan.mode, counts, positive),
        difference_interval(champion_rows, candidate_rows, positive),
    )  # fmt: skip


def since_start(counts: Counts, plan: Rollout) -> Counts:
    """The champion's counters since the split began (it served before)."""
    ok, errors = plan.champion_counts or (0, 0)
    return Counts(max(counts.ok - ok, 0), max(counts.errors - errors, 0))


def roll_back(
    engine: store.Engine,
    client: tracking.MlflowClient,
    settings: Settings,
    breach: Reading,
    flow_run_id: str | None = None,
) -> Rollout | None:
    """End the split and record why: the candidate stopped, the aliases as they were."""
    reason = (f"{breach.metric} {breach.value:.4g} over its limit {breach.limit:g}"
              f"{' (' + breach.detail + ')' if breach.detail else ''} during the bake")  # fmt: skip
    finished = rollout.end_split(settings, "rolled_back", reason)
    if finished is not None:
        settle_attempt(engine, settings, finished, "rolled_back", reason, flow_run_id)
        tracking.set_validation(client, settings.model_name, finished.version, "failed", reason)
        note_decision(client, settings.model_name, finished.version, "rolled_back")
    return finished


def settle_attempt(
    engine: store.Engine,
    settings: Settings,
    plan: Rollout,
    decision: str,
    reason: str,
    flow_run_id: str | None,
) -> int:
    """The rollout's `promotions` row gets its final decision (a row is added for a rollout
    no promotion started, an A/B promoted by hand)."""
    if plan.attempt_id is not None:
        audit.mark_attempt(engine, plan.attempt_id, decision, reason)
        return plan.attempt_id
    attempt = Attempt(settings.dataset, plan.version, plan.champion, None, None, decision,
                      reason, flow_run_id)  # fmt: skip
    return audit.record_attempt(engine, attempt)


def promote_candidate(
    engine: store.Engine,
    client: tracking.MlflowClient,
    settings: Settings,
    reason: str,
    flow_run_id: str | None = None,
) -> tuple[PromotionReport, DeployReport]:
    """The candidate becomes champion: the split ends, the aliases move, and the version is
    served the verified way (a deploy that fails puts the aliases back and says so)."""
    finished = rollout.end_split(settings, "promoted", reason)
    if finished is None:
        raise StageFailed("no rollout runs; `retrain rollout status` shows the last one")
    attempt_id = settle_attempt(engine, settings, finished, "promoted", reason, flow_run_id)
    return crown_and_serve(engine, client, settings, finished.version, attempt_id, reason,
                           flow_run_id)  # fmt: skip


def crown_and_serve(
    engine: store.Engine,
    client: tracking.MlflowClient,
    settings: Settings,
    version: str,
    attempt_id: int,
    reason: str,
    flow_run_id: str | None,
) -> tuple[PromotionReport, DeployReport]:
    """`champion` -> `version` (its row already says promoted), then the verified deploy,
    which puts the aliases and the row back if the version cannot be served."""
    aliases = aliases_for(client, engine, settings, flow_run_id)
    before = aliases.read()
    aliases.crown(version, f"promoted: {reason}")
    tracking.set_validation(client, settings.model_name, version, "passed", reason)
    note_decision(client, settings.model_name, version, "promoted")
    report = PromotionReport(
        Decision(True, reason), version, before["champion"], None, None, attempt_id, before
    )
    return report, deploy.deploy_champion(engine, client, settings, report, flow_run_id)


def abort(
    engine: store.Engine, settings: Settings, reason: str, flow_run_id: str | None = None
) -> Rollout:
    """End the split by hand; the champion keeps serving (a canary's or a shadow's row
    becomes `kept`; an A/B split has none)."""
    finished = rollout.end_split(settings, "aborted", reason)
    if finished is None:
        raise StageFailed("no rollout runs; `retrain rollout status` shows the last one")
    if finished.mode != "ab":
        settle_attempt(engine, settings, finished, "kept", reason, flow_run_id)
    return finished


@dataclass(frozen=True)
class BakeEnd:
    """How a bake ended: promoted, rolled_back, kept (too few requests to judge), approval
    (held, and RETRAIN_APPROVAL=required: a person decides), ended (an A/B's time is up), or
    gone (ended by hand while it watched)."""

    outcome: str
    reason: str
    reading: BakeReading | None
    rollout: Rollout | None = None
    breach: Reading | None = None
    promotion: PromotionReport | None = None
    deployed: DeployReport | None = None

    def describe(self) -> str:
        return f"{self.outcome}: {self.reason}"


def bake(
    engine: store.Engine,
    client: tracking.MlflowClient,
    settings: Settings,
    progress: Callable[[BakeReading], None],
    finishing: Callable[[], AbstractContextManager] = contextlib.nullcontext,
    flow_run_id: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> BakeEnd:
    """Watch the running rollout every RETRAIN_BAKE_CHECK_SECONDS until its end (a shadow is
    first sent the requests logged since the last check); a canary's or a shadow's breach
    ends it at once (rolled back), one that held is promoted, an A/B ends. The verdict is
    taken inside `finishing` (the promotion section)."""
    reading = None
    while True:
        plan = rollout.read_rollout(settings.home)
        if plan is None:
            return BakeEnd("gone", "the rollout was ended by hand", reading)
        if plan.mode == "shadow":
            plan = replay(settings, engine, plan)
        reading = observe(settings, engine, plan)
        progress(reading)
        breach = reading.breach if plan.mode != "ab" else None
        if breach is not None or reading.at >= plan.ends:
            with finishing():
                return finish(engine, client, settings, reading, breach, flow_run_id)
        sleep(min(settings.bake_check_seconds, max(plan.remaining(reading.at), 0.1)))


def finish(
    engine: store.Engine,
    client: tracking.MlflowClient,
    settings: Settings,
    reading: BakeReading,
    breach: Reading | None,
    flow_run_id: str | None,
) -> BakeEnd:
    """A breach rolls back; at the end, a canary is promoted and an A/B split ends."""
    plan = reading.rollout
    if rollout.read_rollout(settings.home) is None:  # ended by hand meanwhile
        return BakeEnd("gone", "the rollout was ended by hand", reading)
    if breach is not None:
        finished = roll_back(engine, client, settings, breach, flow_run_id)
        return BakeEnd("rolled_back", finished.reason or "" if finished else "", reading,
                       finished, breach)  # fmt: skip
    minutes = (plan.ends - plan.started).total_seconds() / 60
    if plan.mode == "ab":
        finished = rollout.end_split(settings, "ended", f"its {minutes:g} minutes are over")
        return BakeEnd("ended", finished.reason if finished else "", reading, finished)
    seen = reading.candidate.requests
    if seen < settings.guard_min_requests:
        reason = (f"the {plan.mode} answered {seen} requests in its {minutes:g}-minute bake, "
                  f"too few to judge (RETRAIN_GUARD_MIN_REQUESTS="
                  f"{settings.guard_min_requests}); the champion stays")  # fmt: skip
        finished = rollout.end_split(settings, "kept", reason)
        if finished is not None:
            settle_attempt(engine, settings, finished, "kept", reason, flow_run_id)
        return BakeEnd("kept", reason, reading, finished)
    held = f"the {plan.mode} held every guard over its {minutes:g}-minute bake"
    if settings.approval == "required":  # the canary keeps its share while a person decides
        return BakeEnd("approval", f"{held}; awaiting approval", reading, plan)
    promotion, deployed = promote_candidate(engine, client, settings, held, flow_run_id)
    return BakeEnd(
        "promoted", held, reading, replace(plan, outcome="promoted"), None, promotion, deployed
    )


@dataclass(frozen=True)
class Answer:
    """A person's answer to an approval form (Prefect OSS has no users: the name is typed)."""

    approve: bool
    name: str
    comment: str = ""


def comparison(
    engine: store.Engine, settings: Settings, version: str, attempt_id: int | None
) -> str:
    """What a person approves: the holdout AUROCs and the decision's reason (its bootstrap
    interval when one was required), and the running canary's traffic and guards."""
    row = audit.read_attempt(engine, attempt_id) if attempt_id is not None else None
    lines = [f"**Promote version {version} of {settings.model_name}?**", ""]
    if row is not None:
        lines += [f"Holdout AUROC: challenger v{version} {shown(row.challenger_auroc, 4)}, "
                  f"champion v{row.champion_version} {shown(row.champion_auroc, 4)}.",
                  f"Decision: {row.reason}"]  # fmt: skip
    plan = rollout.read_rollout(settings.home)
    if plan is not None and plan.version == version:
        lines += ["", observe(settings, engine, plan).markdown()]
    return "\n".join(lines)


def settle_approval(
    engine: store.Engine,
    client: tracking.MlflowClient,
    settings: Settings,
    version: str,
    attempt_id: int | None,
    answer: Answer | None,
    flow_run_id: str | None = None,
) -> BakeEnd:
    """Approved: the version becomes champion (a canary's split ends first). Rejected, or no
    answer within RETRAIN_APPROVAL_HOURS (`answer` None): the champion stays, a canary is
    stopped, and the row says `kept` with who decided and why (no failure: nothing failed)."""
    if answer is None:
        outcome, reason = "kept", f"no approval within {settings.approval_hours:g} h"
    elif answer.approve:
        outcome, reason = "promoted", f"approved by {answer.name}: {answer.comment or '-'}"
    else:
        outcome, reason = "kept", f"rejected by {answer.name}: {answer.comment or '-'}"
    plan = rollout.read_rollout(settings.home)
    canary = plan is not None and plan.version == version
    if outcome == "promoted" and canary:
        promotion, deployed = promote_candidate(engine, client, settings, reason, flow_run_id)
        return BakeEnd(outcome, reason, None, plan, promotion=promotion, deployed=deployed)
    if outcome == "promoted":
        audit.mark_attempt(engine, attempt_id, outcome, reason)
        promotion, deployed = crown_and_serve(engine, client, settings, version, attempt_id,
                                              reason, flow_run_id)  # fmt: skip
        return BakeEnd(outcome, reason, None, None, promotion=promotion, deployed=deployed)
    finished = rollout.end_split(settings, "kept", reason) if canary else None
    if attempt_id is not None:
        audit.mark_attempt(engine, attempt_id, "kept", reason)
    tracking.set_validation(client, settings.model_name, version, "failed", reason)
    return BakeEnd(outcome, reason, None, finished)

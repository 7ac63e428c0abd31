"""Promote and deploy as services: score challenger and champion on the same holdout, move the
aliases, audit every attempt, serve the champion and undo everything a failed deploy moved.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from retrain import audit, store, tracking
from retrain.audit import Attempt
from retrain.deploy import AnswerCheck, DeployReport, compare_answers, serve_verified
from retrain.errors import BadInput, StageFailed
from retrain.modeling import HOLDOUT_SHARE, align_proba, auroc
from retrain.promotion import Bootstrap, Decision, PromotionRules, decide, paired_bootstrap
from retrain.server import ServeFailed
from retrain.settings import Settings
from retrain.store import DatasetTables
from retrain.tune import Dataset, split_dataset


@dataclass(frozen=True)
class PromotionReport:
    """One promotion attempt: who was compared, on what, and what moved."""

    decision: Decision
    challenger: str
    champion: str | None
    challenger_auroc: float | None
    champion_auroc: float | None
    attempt_id: int
    aliases_before: dict[str, str | None] = field(default_factory=dict)
    bootstrap: Bootstrap | None = None

    @property
    def promoted(self) -> bool:
        return self.decision.promote

    def describe(self) -> str:
        verb = "promoted" if self.promoted else "kept the champion over"
        return f"{verb} challenger version {self.challenger}: {self.decision.reason}"


def holdout_scores(settings: Settings, data: Dataset, versions: list[str]) -> dict[str, np.ndarray]:
    """Each version's probabilities on the holdout rows, one column per known class."""
    scores = {}
    for version in versions:
        try:
            model = tracking.load_version(settings.tracking_uri, settings.model_name, version)
        except Exception as err:  # any loader error: this version cannot be compared
            raise StageFailed(f"version {version} cannot be loaded: {str(err)[:300]}") from err
        proba = model.predict_proba(data.holdout[data.features])
        scores[version] = align_proba(proba, model.classes_, data.known_classes)
    return scores


def promote_if_better(
    engine: store.Engine,
    tables: DatasetTables,
    client: tracking.MlflowClient,
    settings: Settings,
    rules: PromotionRules,
    flow_run_id: str | None = None,
    challenger: str | None = None,
) -> PromotionReport:
    """Compare `challenger` (default: `@challenger`) with `@champion` on the current holdout;
    move aliases and tags. The nightly flow names the version it tuned, so a run that waited
    for another's promotion still judges its own model."""
    before = tracking.read_aliases(client, settings.model_name)
    challenger, champion = challenger or before["challenger"], before["champion"]
    if challenger is None:
        raise StageFailed("no challenger is registered yet; run `retrain tune` first")
    if challenger == champion:
        decision = Decision(False, f"version {challenger} is already the champion")
        return _record(engine, settings, decision, before, challenger, None, None, flow_run_id)
    with store.reporting_errors(engine), engine.connect() as conn:
        data = split_dataset(store.read_cleaned(conn, tables), settings.target, HOLDOUT_SHARE)
    y = data.holdout[data.target].to_numpy()
    scores = holdout_scores(settings, data, [v for v in (challenger, champion) if v])
    classes = data.known_classes
    aurocs = {v: auroc(y, proba, classes) for v, proba in scores.items()}
    boot = None
    if champion and rules.require_significance:
        boot = paired_bootstrap(y, scores[challenger], scores[champion], classes, rules)
    decision = decide(aurocs[challenger], aurocs.get(champion), rules, boot)
    apply_decision(client, settings.model_name, decision, challenger, champion)
    return _record(
        engine, settings, decision, before, challenger, aurocs[challenger],
        aurocs.get(champion), flow_run_id, boot,
    )  # fmt: skip


def apply_decision(
    client: tracking.MlflowClient,
    model_name: str,
    decision: Decision,
    challenger: str,
    champion: str | None,
) -> None:
    """Promoted: `champion` -> challenger, `previous_champion` -> old champion, tag passed.
    Kept: tag the challenger failed with the reason; no alias moves."""
    if not decision.promote:
        tracking.set_validation(client, model_name, challenger, "failed", decision.reason)
        return
    if champion:
        client.set_registered_model_alias(model_name, "previous_champion", champion)
    client.set_registered_model_alias(model_name, "champion", challenger)
    tracking.set_validation(client, model_name, challenger, "passed", decision.reason)


def _record(
    engine: store.Engine,
    settings: Settings,
    decision: Decision,
    before: dict[str, str | None],
    challenger: str,
    challenger_auroc: float | None,
    champion_auroc: float | None,
    flow_run_id: str | None,
    boot: Bootstrap | None = None,
) -> PromotionReport:
    attempt = Attempt(
        settings.dataset, challenger, before["champion"], challenger_auroc,
        champion_auroc, decision.name, decision.reason, flow_run_id,
    )  # fmt: skip
    attempt_id = audit.record_attempt(engine, attempt)
    return PromotionReport(
        decision, challenger, before["champion"], challenger_auroc, champion_auroc,
        attempt_id, before, boot,
    )  # fmt: skip


def deploy_champion(
    engine: store.Engine,
    client: tracking.MlflowClient,
    settings: Settings,
    promotion: PromotionReport | None = None,
    flow_run_id: str | None = None,
    health_timeout: float = 120,
    check: AnswerCheck = compare_answers,
) -> DeployReport:
    """Serve `@champion` the verified way; on failure put aliases, tags and the audit row
    as DESIGN.md's rollback contract says, and raise."""
    version = tracking.alias_version(client, settings.model_name, "champion")
    if version is None:
        raise StageFailed("there is no champion to serve yet; run `retrain run` first")
    try:
        return serve_verified(settings, version, health_timeout, check)
    except ServeFailed as err:
        reason = f"deploy of version {version} failed: {err}"
        undo_deploy(engine, client, settings, version, promotion, reason, flow_run_id)
        raise ServeFailed(f"{reason}; rolled back, the previous version keeps serving") from err


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
        tracking.restore_aliases(client, settings.model_name, promotion.aliases_before)
        audit.mark_attempt(engine, promotion.attempt_id, "rolled_back", reason)
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
    before = tracking.read_aliases(client, settings.model_name)
    target = to_version or before["previous_champion"]
    if target is None:
        raise StageFailed("no previous champion to roll back to; give one with --to VERSION")
    current = before["champion"]
    try:
        client.get_model_version(settings.model_name, target)
    except tracking.MlflowException as err:
        raise BadInput(f"{settings.model_name} has no version {target}") from err
    client.set_registered_model_alias(settings.model_name, "champion", target)
    if current and current != target:
        client.set_registered_model_alias(settings.model_name, "previous_champion", current)
    decision = Decision(True, f"rolled back by hand from version {current} to {target}")
    attempt = Attempt(
        settings.dataset, target, current, None, None, "rolled_back", decision.reason, flow_run_id
    )
    report = PromotionReport(
        decision, target, current, None, None, audit.record_attempt(engine, attempt), before
    )
    return report, deploy_champion(engine, client, settings, report, flow_run_id)

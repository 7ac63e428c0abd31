"""Promote as a service: score challenger and champion on the same holdout, move the aliases
and audit every attempt. Serving the champion, and undoing a failed deploy, is `deploy`."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from retrain.config.settings import Settings
from retrain.data.split import HOLDOUT_SHARE, Dataset, align_proba, dataset_of, holdout_choice_of
from retrain.data.training_rows import read_training_rows
from retrain.errors import StageFailed
from retrain.io import audit, store, tracking
from retrain.io.audit import Attempt
from retrain.io.store import DatasetTables
from retrain.model import logged_model
from retrain.model.aliases import Aliases, aliases_for
from retrain.promotion.rules import (
    Bootstrap,
    Decision,
    PromotionRules,
    check_calibration,
    decide,
    paired_bootstrap,
)
from retrain.training.calibration import brier, expected_calibration_error
from retrain.training.families import auroc
from retrain.training.notes import version_note

PENDING = "pending"  # a promotion whose canary bakes or awaits approval: its end settles it


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
    pending: bool = False  # a canary's bake or a person's approval decides; no alias moved yet

    @property
    def promoted(self) -> bool:
        return self.decision.promote

    def describe(self) -> str:
        if self.pending:
            return (f"challenger version {self.challenger} is better; its rollout decides: "
                    f"{self.decision.reason}")  # fmt: skip
        verb = "promoted" if self.promoted else "kept the champion over"
        return f"{verb} challenger version {self.challenger}: {self.decision.reason}"


def holdout_scores(settings: Settings, data: Dataset, versions: list[str]) -> dict[str, np.ndarray]:
    """Each version's probabilities on the holdout rows, one column per known class. A version
    refit on its holdout after its decision is scored by the Pipeline that holdout judged
    (`judged.joblib`): the challenger's refit has seen today's holdout, so it cannot be judged
    on it, and judging the champion the same way compares like with like (each as it stood
    before its own refit). Other versions are scored as served."""
    scores = {}
    for version in versions:
        try:
            model = logged_model.load_version(
                settings.tracking_uri, settings.model_name, version, judged=True
            )
        except Exception as err:  # any loader error: this version cannot be compared
            raise StageFailed(f"version {version} cannot be loaded: {str(err)[:300]}") from err
        proba = model.predict_proba(data.holdout[data.features])
        scores[version] = align_proba(proba, model.classes, data.known_classes)
    return scores


def promote_if_better(
    engine: store.Engine,
    tables: DatasetTables,
    client: tracking.MlflowClient,
    settings: Settings,
    rules: PromotionRules,
    flow_run_id: str | None = None,
    challenger: str | None = None,
    busy: str | None = None,
    hold: bool = False,
) -> PromotionReport:
    """Compare `challenger` (default: `@challenger`) with `@champion` on the current holdout;
    move aliases and tags. The nightly flow names the version it tuned, so a run that waited
    for another's promotion still judges its own model. `busy` (a rollout in progress) keeps
    the champion with that reason; `hold` (a canary rollout) decides without moving an
    alias: the row says `pending` until the bake or the approval settles it."""
    before = tracking.read_aliases(client, settings.model_name)
    challenger, champion = challenger or before["challenger"], before["champion"]
    if challenger is None:
        raise StageFailed("no challenger is registered yet; run `retrain tune` first")
    if challenger == champion or busy:
        decision = Decision(False, busy or f"version {challenger} is already the champion")
        return _record(engine, settings, decision, before, challenger, None, None, flow_run_id)
    cleaned = read_training_rows(engine, tables, settings)[0]  # the window tuning judged on
    schema = settings.load_schema()
    data = dataset_of(cleaned, schema, HOLDOUT_SHARE, holdout_choice_of(settings, schema))
    aurocs, boot, calibration = compare_on_holdout(settings, data, rules, challenger, champion)
    decision = decide(aurocs[challenger], aurocs.get(champion), rules, boot)
    briers = {v: c[0] for v, c in calibration.items()}
    decision = check_calibration(decision, briers[challenger], briers.get(champion), rules)
    pending = hold and decision.promote and champion is not None
    if not pending:
        apply_decision(aliases_for(client, engine, settings, flow_run_id), decision, challenger)
    name = PENDING if pending else decision.name
    tracking.log_promotion(
        client, settings.model_name, challenger, name, aurocs[challenger],
        aurocs.get(champion), calibration_metrics(calibration, challenger, champion),
    )  # fmt: skip
    note_decision(client, settings.model_name, challenger, name, aurocs.get(champion))
    return _record(
        engine, settings, decision, before, challenger, aurocs[challenger],
        aurocs.get(champion), flow_run_id, boot, name,
    )  # fmt: skip


def compare_on_holdout(
    settings: Settings,
    data: Dataset,
    rules: PromotionRules,
    challenger: str,
    champion: str | None,
) -> tuple[dict[str, float], Bootstrap | None, dict[str, tuple[float, float]]]:
    """Each version's holdout AUROC, the paired bootstrap when the rules require it, and each
    version's (Brier score, ECE) on the same rows."""
    y = data.holdout[data.target].to_numpy()
    scores = holdout_scores(settings, data, [v for v in (challenger, champion) if v])
    classes, positive = data.known_classes, data.positive
    aurocs = {v: auroc(y, proba, classes, positive) for v, proba in scores.items()}
    calibration = {
        v: (brier(y, p, classes, positive), expected_calibration_error(y, p, classes, positive))
        for v, p in scores.items()
    }
    if not (champion and rules.require_significance):
        return aurocs, None, calibration
    boot = paired_bootstrap(y, scores[challenger], scores[champion], classes, rules, positive)
    return aurocs, boot, calibration


def calibration_metrics(
    calibration: dict[str, tuple[float, float]], challenger: str, champion: str | None
) -> dict[str, float | None]:
    """`promotion_<model>_brier` and `_ece` beside the AUROCs on the challenger's run."""
    out: dict[str, float | None] = {}
    for role, version in (("challenger", challenger), ("champion", champion)):
        if version in calibration:
            out[f"promotion_{role}_brier"], out[f"promotion_{role}_ece"] = calibration[version]
    return out


def note_decision(
    client: tracking.MlflowClient,
    model_name: str,
    version: str,
    decision: str,
    champion_auroc: float | None = None,
) -> None:
    """The version's MLflow description: its Prefect run, holdout AUROC and the decision."""
    tags, test_auroc = tracking.version_facts(client, model_name, version)
    versus = f", against the champion's {champion_auroc:.4f}" if champion_auroc is not None else ""
    words = decision.replace("_", " ")
    tracking.describe_version(
        client, model_name, version, version_note(tags, test_auroc, words, versus)
    )


def apply_decision(aliases: Aliases, decision: Decision, challenger: str) -> None:
    """Promoted: `champion` -> challenger, `previous_champion` -> old champion, tag passed.
    Kept: tag the challenger failed with the reason; no alias moves."""
    client, model_name = aliases.client, aliases.model_name
    if not decision.promote:
        tracking.set_validation(client, model_name, challenger, "failed", decision.reason)
        return
    aliases.crown(challenger, f"promoted: {decision.reason}")
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
    name: str | None = None,
) -> PromotionReport:
    attempt = Attempt(
        settings.dataset, challenger, before["champion"], challenger_auroc,
        champion_auroc, name or decision.name, decision.reason, flow_run_id,
    )  # fmt: skip
    attempt_id = audit.record_attempt(engine, attempt)
    return PromotionReport(
        decision, challenger, before["champion"], challenger_auroc, champion_auroc,
        attempt_id, before, boot, name == PENDING,
    )  # fmt: skip

"""The nightly flow: every stage, in order, each a subflow."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypeVar

from prefect import flow, get_run_logger, tags
from pydantic import Field

from flows.approval import ask_approval
from flows.clean import clean
from flows.deploy import deploy
from flows.hooks import (
    FAILURE_HOOKS,
    announce_promotion,
    keep_schedule_named,
    mark_stage,
    mlflow_places,
    publish_summary,
    run_name,
    shown,
)
from flows.ingest import ingest
from flows.locking import promotion_section
from flows.performance import label_batches, performance
from flows.promote import promote
from flows.rollout import hand_over, start_canary
from flows.tune import tune
from retrain.config.settings import FAMILIES, Settings, load_settings
from retrain.data.clean import BatchReport
from retrain.data.ingest import LoadReport
from retrain.io.nightly_metrics import NightlyFigures
from retrain.monitoring.performance import Degradation
from retrain.promotion.promote import PromotionReport
from retrain.serving.deploy import DeployReport
from retrain.serving.model_server import ServeFailed
from retrain.training.tuning import TuneReport
from tasks.serving import push_nightly_metrics, report_yesterday

T = TypeVar("T")


@dataclass(frozen=True)
class Stage:
    name: str
    seconds: float
    outcome: str

    @property
    def headline(self) -> str:
        """The outcome cut to its first clause, short enough for a table cell."""
        first = self.outcome.split("; ")[0]
        return first if len(first) <= 60 else first[:57] + "..."


@dataclass
class RunSummary:
    """What one nightly run changed, for the closing lines of `retrain run`."""

    loaded: list[LoadReport] = field(default_factory=list)
    cleaned: list[BatchReport] = field(default_factory=list)
    tuned: TuneReport | None = None
    promotion: PromotionReport | None = None
    deployed: DeployReport | None = None
    serve_url: str | None = None
    stages: list[Stage] = field(default_factory=list)
    performance: Degradation | None = None

    def lines(self) -> list[str]:
        out = [r.describe() for r in self.loaded] + [r.describe() for r in self.cleaned]
        out += [r.describe() for r in (self.tuned, self.promotion, self.deployed) if r]
        if self.promotion:
            out.append(self.champion_line())
        return out or ["nothing changed"]

    def markdown(self, settings: Settings) -> list[str]:
        """The nightly run's summary artifact: each stage with its outcome and duration, the
        decision, both AUROCs, where the MLflow run and version are, and the serving URL."""
        lines = ["| stage | seconds | outcome |", "|---|---|---|"]
        lines += [f"| {s.name} | {s.seconds:.1f} | {s.headline} |" for s in self.stages]
        lines += ["", "Details:", ""] + [f"- {s.name}: {s.outcome[:1000]}" for s in self.stages]
        if self.tuned:
            run, version = mlflow_places(settings, self.tuned)
            lines += ["", f"Tuned: {run}; registered {version}."]
            if self.tuned.leaks:
                named = "; ".join(self.tuned.leaks)
                lines += ["", f"**Suspected leaks** (a feature that gives the label away; "
                          f"check it, then `retrain schema ignore COLUMN`): {named}"]  # fmt: skip
        if self.promotion:
            p = self.promotion
            rolled = any(s.name == "deploy" and s.outcome.startswith("failed") for s in self.stages)
            decision = "rolled back" if rolled else decision_of(p)
            champion = (
                f"champion v{p.champion} {shown(p.champion_auroc)}" if p.champion
                else "no champion yet"
            )  # fmt: skip
            lines += [
                "", f"**Decision: {decision}**. {p.decision.reason}",
                f"Holdout AUROC on today's holdout rows (`promotion_challenger_auroc`, "
                f"`promotion_champion_auroc`): challenger v{p.challenger} "
                f"{shown(p.challenger_auroc)}, {champion}.",
            ]  # fmt: skip
        served = self.deployed.url if self.deployed else settings.serve_url
        lines += ["", f"Serving: {served}" + ("" if self.deployed else " (not restarted)")]
        return lines

    def figures(self, dataset: str, succeeded: bool) -> NightlyFigures:
        """The run in numbers, for the nightly metrics."""
        rolled = any(s.name == "deploy" and s.outcome.startswith("failed") for s in self.stages)
        p = self.promotion
        decision = "rolled_back" if rolled else decision_of(p) if p else "none"
        return NightlyFigures(
            dataset, succeeded, decision if succeeded or rolled else "failed",
            sum(r.rows for r in self.loaded if not r.already_loaded),
            sum(r.cleaned for r in self.cleaned), sum(r.rejected for r in self.cleaned),
            p.challenger_auroc if p else None, p.champion_auroc if p else None,
            {s.name: s.seconds for s in self.stages},
            *self.realized_figures(),
        )  # fmt: skip

    def realized_figures(self) -> tuple[tuple, bool | None]:
        """Each version's latest labelled day, and the verdict, for the nightly gauges."""
        verdict = self.performance
        if verdict is None:
            return (), None
        latest = {d.version: (d.version, d.auroc, d.holdout_auroc) for d in verdict.judged}
        return tuple(latest.values()), verdict.degraded if verdict.counted else None

    def champion_line(self) -> str:
        p = self.promotion
        if p.pending:
            return (f"champion: version {p.champion}, still; version {p.challenger} is in its "
                    "rollout (`retrain rollout status`)")  # fmt: skip
        version = p.challenger if p.promoted else p.champion
        score = p.challenger_auroc if p.promoted else p.champion_auroc
        shown = f"{score:.4f}" if score is not None else "n/a"
        where = self.deployed.url if self.deployed else "not restarted (--no-serve or kept)"
        return f"champion: version {version}, holdout AUROC {shown}; serving: {where}"


def decision_of(report: PromotionReport) -> str:
    """The promotion's decision as its audit row says it (`pending` while its rollout runs)."""
    return "pending" if report.pending else report.decision.name


NAMES = "|".join(FAMILIES)  # the families are named once, in the settings
FAMILY_LIST = rf"^(auto|({NAMES})(,({NAMES}))*)$"


def setting_type(name: str) -> Any:
    """A flow parameter's type and bounds, as the setting of the same meaning declares them
    (a bound is written once, in Settings; the run form in the UI shows it)."""
    info = Settings.model_fields[name]
    return Annotated[(info.annotation, *info.metadata)]


Source = Annotated[str, Field(max_length=4096)]
Trials = setting_type("trials")
Workers = setting_type("workers")
Margin = setting_type("min_improvement")
Budget = setting_type("tune_budget")
Family = Annotated[str, Field(pattern=FAMILY_LIST)]


# The settings' built-in defaults: the nightly flow's parameters start from the same values
# (the bootstrap then writes the current settings into each deployment, so the run form shows
# what a run would really use).
DEFAULT = {name: info.default for name, info in Settings.model_fields.items()}


def nightly_parameters(settings: Settings, source: str | None = None) -> dict[str, Any]:
    """The nightly flow's parameters as the settings give them (the CLI's and the
    deployments' defaults); `source` empty means RETRAIN_SOURCE."""
    return {
        "source": source or "",
        "trials": settings.trials,
        "workers": settings.workers,
        "budget": settings.tune_budget,
        "family": settings.family,
        "objective": settings.objective,
        "min_improvement": settings.min_improvement,
        "require_significance": settings.require_significance,
        "serve": True,
        "rollout": settings.rollout,
    }


@flow(name="retrain", flow_run_name=run_name("retrain"), timeout_seconds=4 * 3600, **FAILURE_HOOKS)
def retrain(
    source: Source = "",
    trials: Trials = DEFAULT["trials"],
    workers: Workers = DEFAULT["workers"],
    budget: Budget = DEFAULT["tune_budget"],
    family: Family = DEFAULT["family"],
    objective: Literal["auroc", "accuracy"] = DEFAULT["objective"],
    min_improvement: Margin = DEFAULT["min_improvement"],
    require_significance: bool = DEFAULT["require_significance"],
    serve: bool = True,
    rollout: Literal["direct", "canary", "shadow"] = DEFAULT["rollout"],
) -> RunSummary:
    """Ingest new source data, clean it, measure its drift, tune a challenger, promote it if
    better, serve it; then log yesterday's prediction log as one MLflow run.

    Args:
        source: CSV file, folder or glob to load; empty: RETRAIN_SOURCE (the bundled iris
            data for the zero-config iris dataset).
        trials: most Optuna trials (a cap when the budget ends the study first).
        workers: trial workers on one study (more than 1 needs MySQL).
        budget: seconds the whole tuning study may take.
        family: model families to search: auto (lightgbm, or hgb where LightGBM cannot
            load), or one or a comma list of random_forest, logreg, hgb, lightgbm.
        objective: metric the study maximises; both are logged.
        min_improvement: AUROC margin a challenger must beat the champion by.
        require_significance: also require a paired bootstrap to find the challenger better.
        serve: restart the model server when a challenger is promoted.
        rollout: how a promoted challenger reaches traffic: direct (the verified swap) or
            canary (RETRAIN_CANARY_PERCENT of the requests through a bake of
            RETRAIN_BAKE_MINUTES that promotes it or rolls it back), shadow (the same bake on
            the champion's logged requests replayed to it; no client sees its answers).
    """
    settings = load_settings()
    summary, succeeded, canary = RunSummary(), False, None
    try:
        summary.loaded = staged(summary, "ingest", lambda: ingest(source=source or None))
        # the drift event's origin keeps retrain-on-drift from starting a second retrain
        summary.cleaned = staged(summary, "clean", lambda: clean(drift_origin="nightly"))
        new_batches = [r.batch_id for r in summary.cleaned if r.cleaned]
        informational(summary, "labels", lambda: label_batches(settings, new_batches))
        summary.tuned = staged(
            summary,
            "tune",
            lambda: tune(
                trials=trials, workers=workers, family=family, objective=objective, budget=budget
            ),
        )
        with promotion_section(settings):
            summary.promotion = staged(
                summary,
                "promote",
                lambda: promote(
                    min_improvement=min_improvement,
                    require_significance=require_significance,
                    challenger=summary.tuned.version,
                    announce=False,
                    hold=serve and rollout_decides(settings, rollout),
                ),
            )
            if serve and summary.promotion.pending:
                announce_promotion(settings, summary.promotion)
                if canary_rollout(rollout):
                    p = summary.promotion
                    canary = staged(summary, rollout, lambda: start_canary(settings, p, rollout))
            elif serve and summary.promotion.promoted:
                summary.deployed = deploy_then_announce(settings, summary)
            else:
                announce_promotion(settings, summary.promotion)
        # outside the promotion section: the bake, or the approval, takes it to decide
        if canary is not None:
            staged(summary, "bake", lambda: hand_over(settings, canary))
        elif serve and summary.promotion.pending:  # a direct rollout a person approves
            p = summary.promotion
            staged(summary, "approval", lambda: ask_approval(settings, p.challenger, p.attempt_id))
        succeeded = True
        informational(summary, "predictions", lambda: report_yesterday(settings))
        summary.performance = informational(summary, "performance", lambda: performance(days=14))
    finally:
        publish_summary(settings, summary.markdown(settings))
        keep_schedule_named(settings)
        try:
            push_nightly_metrics(settings, summary.figures(settings.dataset, succeeded))
        except Exception as err:  # the night's own error, if any, must be the one raised
            get_run_logger().warning(f"nightly metrics not written: {err}")
    return summary


def rollout_decides(settings: Settings, mode: str) -> bool:
    """Whether a better challenger waits for its rollout (a canary's bake, a person's
    approval) before the aliases move."""
    return canary_rollout(mode) or settings.approval == "required"


def canary_rollout(mode: str) -> bool:
    """RETRAIN_ROLLOUT=canary or shadow: a better challenger goes through a bake."""
    return mode in ("canary", "shadow")


def deploy_then_announce(settings: Settings, summary: RunSummary) -> DeployReport:
    """Serve the new champion; the promotion is announced only once the deploy is verified
    (a rolled-back one is shown as rolled back, and the failure alert follows)."""
    try:
        deployed = staged(summary, "deploy", lambda: deploy(promotion=summary.promotion))
    except ServeFailed as err:
        announce_promotion(settings, summary.promotion, rolled_back=str(err))
        raise
    announce_promotion(settings, summary.promotion)
    return deployed


def staged(summary: RunSummary, stage: str, run: Callable[[], T]) -> T:
    """Run one stage subflow, timed; its outcome is logged in this (the nightly) run, and its
    failure carries the stage name to the alert."""
    logger = get_run_logger()
    started = time.monotonic()
    try:
        with tags(f"stage-{stage}"):
            result = run()
    except BaseException as err:
        mark_stage(err, stage)
        summary.stages.append(Stage(stage, time.monotonic() - started, f"failed: {err}"))
        raise
    outcome = describe(result)
    summary.stages.append(Stage(stage, time.monotonic() - started, outcome))
    logger.info(f"{stage}: {outcome}")
    return result


def informational(summary: RunSummary, stage: str, run: Callable[[], T]) -> T | None:
    """A stage that informs (drift, the served day): its failure is logged and shown in the
    summary, and the night goes on (None)."""
    try:
        return staged(summary, stage, run)
    except Exception as err:
        get_run_logger().warning(f"{stage} failed; the night goes on: {err}")
        return None


def describe(result: object) -> str:
    """A stage's result in one line (ingest and clean return one report per batch)."""
    if isinstance(result, list):
        return "; ".join(r.describe() for r in result) or "nothing new"
    return "nothing to do" if result is None else result.describe()

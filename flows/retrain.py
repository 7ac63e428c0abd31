"""The nightly flow: every stage, in order, each a subflow."""

from __future__ import annotations

from dataclasses import dataclass, field

from prefect import flow

from flows.clean import clean
from flows.deploy import deploy
from flows.ingest import ingest
from flows.promote import promote
from flows.tune import tune
from retrain.clean import BatchReport
from retrain.deploy import DeployReport
from retrain.ingest import LoadReport
from retrain.promote import PromotionReport
from retrain.tune import TuneReport


@dataclass
class RunSummary:
    """What one nightly run changed, for the closing lines of `retrain run`."""

    loaded: list[LoadReport] = field(default_factory=list)
    cleaned: list[BatchReport] = field(default_factory=list)
    tuned: TuneReport | None = None
    promotion: PromotionReport | None = None
    deployed: DeployReport | None = None
    serve_url: str | None = None

    def lines(self) -> list[str]:
        out = [r.describe() for r in self.loaded] + [r.describe() for r in self.cleaned]
        out += [r.describe() for r in (self.tuned, self.promotion, self.deployed) if r]
        if self.promotion:
            out.append(self.champion_line())
        return out or ["nothing changed"]

    def champion_line(self) -> str:
        p = self.promotion
        version = p.challenger if p.promoted else p.champion
        score = p.challenger_auroc if p.promoted else p.champion_auroc
        shown = f"{score:.4f}" if score is not None else "n/a"
        where = self.deployed.url if self.deployed else "not restarted (--no-serve or kept)"
        return f"champion: version {version}, holdout AUROC {shown}; serving: {where}"


@flow(name="retrain", timeout_seconds=4 * 3600)
def retrain(
    source: str | None = None,
    trials: int | None = None,
    workers: int | None = None,
    family: str | None = None,
    objective: str | None = None,
    min_improvement: float | None = None,
    require_significance: bool | None = None,
    serve: bool = True,
) -> RunSummary:
    """Ingest new source data, clean it, tune a challenger, promote it if better, serve it."""
    summary = RunSummary()
    summary.loaded = ingest(source=source)
    summary.cleaned = clean()
    summary.tuned = tune(trials=trials, workers=workers, family=family, objective=objective)
    summary.promotion = promote(
        min_improvement=min_improvement, require_significance=require_significance
    )
    if serve and summary.promotion.promoted:
        summary.deployed = deploy(promotion=summary.promotion)
    return summary

"""The nightly flow: every stage, in order, each a subflow."""

from __future__ import annotations

from dataclasses import dataclass, field

from prefect import flow

from flows.clean import clean
from flows.ingest import ingest
from flows.tune import tune
from retrain.clean import BatchReport
from retrain.ingest import LoadReport
from retrain.tune import TuneReport


@dataclass
class RunSummary:
    """What one nightly run changed, for the closing lines of `retrain run`."""

    loaded: list[LoadReport] = field(default_factory=list)
    cleaned: list[BatchReport] = field(default_factory=list)
    tuned: TuneReport | None = None

    def lines(self) -> list[str]:
        out = [r.describe() for r in self.loaded] + [r.describe() for r in self.cleaned]
        if self.tuned:
            out.append(self.tuned.describe())
        return out or ["nothing changed"]


@flow(name="retrain", timeout_seconds=4 * 3600)
def retrain(
    source: str | None = None,
    trials: int | None = None,
    workers: int | None = None,
    family: str | None = None,
    objective: str | None = None,
) -> RunSummary:
    """Ingest new source data, clean it, tune a challenger."""
    summary = RunSummary()
    summary.loaded = ingest(source=source)
    summary.cleaned = clean()
    summary.tuned = tune(trials=trials, workers=workers, family=family, objective=objective)
    return summary

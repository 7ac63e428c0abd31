"""The nightly flow: every stage, in order, each a subflow."""

from __future__ import annotations

from dataclasses import dataclass, field

from prefect import flow

from flows.clean import clean
from flows.ingest import ingest
from retrain.clean import BatchReport
from retrain.ingest import LoadReport


@dataclass
class RunSummary:
    """What one nightly run changed, for the closing lines of `retrain run`."""

    loaded: list[LoadReport] = field(default_factory=list)
    cleaned: list[BatchReport] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [r.describe() for r in self.loaded] + [r.describe() for r in self.cleaned]
        return out or ["nothing changed"]


@flow(name="retrain", timeout_seconds=4 * 3600)
def retrain(source: str | None = None) -> RunSummary:
    """Ingest new source data, then clean it."""
    summary = RunSummary()
    summary.loaded = ingest(source=source)
    summary.cleaned = clean()
    return summary

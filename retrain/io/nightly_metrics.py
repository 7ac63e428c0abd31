"""The nightly run's own Prometheus metrics (prometheus-client adapter): written to
`$RETRAIN_HOME/metrics/nightly.prom` after every run (node_exporter's textfile format) and, with
RETRAIN_PUSHGATEWAY_URL, pushed to a Pushgateway, where Prometheus scrapes a batch job's
figures. The stack's alert rules read them (a failed promotion, a night that did not run).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway, write_to_textfile

DECISIONS = ("promoted", "kept", "rolled_back", "failed", "none", "pending")


@dataclass(frozen=True)
class NightlyFigures:
    """What one nightly run did, in numbers."""

    dataset: str
    succeeded: bool
    decision: str = "none"
    rows_loaded: int = 0
    rows_cleaned: int = 0
    rows_rejected: int = 0
    challenger_auroc: float | None = None
    champion_auroc: float | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)
    # per served version, its latest labelled day: (version, realized AUROC, holdout AUROC)
    realized: tuple[tuple[str, float, float | None], ...] = ()
    degraded: bool | None = None  # None: no verdict (no labelled day counted)

    @property
    def rejected_share(self) -> float:
        seen = self.rows_cleaned + self.rows_rejected
        return self.rows_rejected / seen if seen else 0.0


def nightly_registry(figures: NightlyFigures, now: float | None = None) -> CollectorRegistry:
    """The figures as gauges labelled by dataset (one decision gauge per possible decision, 1
    for the night's, so an alert rule can match it)."""
    registry, labels = CollectorRegistry(), ["dataset"]

    def gauge(name: str, what: str, value: float, extra: dict[str, str] | None = None) -> None:
        names = labels + list(extra or {})
        metric = Gauge(f"retrain_nightly_{name}", what, names, registry=registry)
        metric.labels(figures.dataset, *(extra or {}).values()).set(value)

    gauge("last_run_timestamp_seconds", "when the nightly run ended", now or time.time())
    gauge("succeeded", "1 when every stage of the run succeeded", float(figures.succeeded))
    gauge("rows_loaded", "rows the run loaded", figures.rows_loaded)
    gauge("rows_cleaned", "rows cleaned", figures.rows_cleaned)
    gauge("rejected_share", "rejected rows / rows cleaned or rejected", figures.rejected_share)
    for name, value in (("challenger", figures.challenger_auroc),
                        ("champion", figures.champion_auroc)):  # fmt: skip
        if value is not None:
            gauge(f"{name}_auroc", f"holdout AUROC of the {name}", value)
    decision = Gauge("retrain_nightly_decision", "1 for the night's decision",
                     ["dataset", "decision"], registry=registry)  # fmt: skip
    for name in DECISIONS:
        decision.labels(figures.dataset, name).set(float(name == figures.decision))
    seconds = Gauge("retrain_nightly_stage_seconds", "seconds each stage took",
                    ["dataset", "stage"], registry=registry)  # fmt: skip
    for stage, value in figures.stage_seconds.items():
        seconds.labels(figures.dataset, stage).set(value)
    if figures.realized:
        realized_gauges(registry, figures)
    return registry


def realized_gauges(registry: CollectorRegistry, figures: NightlyFigures) -> None:
    """Per version: the realized AUROC of its latest labelled day and the holdout AUROC it
    promised; and whether the served model has degraded."""
    names = ["dataset", "version"]
    realized = Gauge("retrain_nightly_realized_auroc", "AUROC of the served version on its "
                     "latest labelled day", names, registry=registry)  # fmt: skip
    promised = Gauge("retrain_nightly_holdout_auroc", "holdout AUROC the served version "
                     "logged when tuned", names, registry=registry)  # fmt: skip
    for version, value, holdout in figures.realized:
        realized.labels(figures.dataset, version).set(value)
        if holdout is not None:
            promised.labels(figures.dataset, version).set(holdout)
    if figures.degraded is not None:
        what = "1 when the realized AUROC stayed below the holdout's minus the margin"
        degraded = Gauge("retrain_nightly_degraded", what, ["dataset"], registry=registry)
        degraded.labels(figures.dataset).set(float(figures.degraded))


def publish_nightly(figures: NightlyFigures, home: Path, pushgateway: str | None) -> str | None:
    """Write the textfile, push when a Pushgateway is set; returns why a push failed (never
    raises: the night's metrics must not fail the night)."""
    registry = nightly_registry(figures)
    folder = home / "metrics"
    folder.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(folder / "nightly.prom"), registry)
    if not pushgateway:
        return None
    try:
        push_to_gateway(pushgateway, job="retrain", grouping_key={"dataset": figures.dataset},
                        registry=registry, timeout=10)  # fmt: skip
    except OSError as err:
        return f"could not push the nightly metrics to {pushgateway}: {err}"
    return None

"""What the served model answered, per day: the summary `retrain predictions` prints and the
nightly run logs to MLflow. Pure pandas: rows of the prediction log in, summaries out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import pandas as pd

LOG_COLUMNS = ["predicted_at", "request_id", "prediction", "latency_ms"]


@dataclass(frozen=True)
class DaySummary:
    """One UTC day of the prediction log."""

    day: date
    requests: int
    rows: int
    latency_p50_ms: float
    latency_p95_ms: float
    classes: dict[str, int]

    def line(self) -> str:
        shares = ", ".join(
            f"{label} {count / self.rows:.0%}" for label, count in self.classes.items()
        )
        return (
            f"{self.day.isoformat()}  {self.requests:>8} {self.rows:>9}  "
            f"{self.latency_p50_ms:>8.1f} {self.latency_p95_ms:>8.1f}  {shares}"
        )

    def metrics(self) -> dict[str, float]:
        """The day as MLflow metrics: counts, latency percentiles, one share per class."""
        shares = {f"share_{label}": count / self.rows for label, count in self.classes.items()}
        return {
            "requests": float(self.requests),
            "rows": float(self.rows),
            "latency_p50_ms": self.latency_p50_ms,
            "latency_p95_ms": self.latency_p95_ms,
            **shares,
        }


HEADER = f"{'day':<10}  {'requests':>8} {'rows':>9}  {'p50 ms':>8} {'p95 ms':>8}  classes"


def daily_summaries(log: pd.DataFrame) -> list[DaySummary]:
    """One summary per day present in `log` (columns LOG_COLUMNS), oldest first. Latency is
    per request (every row of a request shares it), class shares per row."""
    if log.empty:
        return []
    days = pd.to_datetime(log["predicted_at"]).dt.date
    summaries = []
    for day, rows in log.groupby(days, sort=True):
        per_request = rows.groupby("request_id")["latency_ms"].first()
        counts = rows["prediction"].astype(str).value_counts().sort_index()
        summaries.append(
            DaySummary(
                day,
                len(per_request),
                len(rows),
                float(per_request.quantile(0.5)),
                float(per_request.quantile(0.95)),
                {str(k): int(v) for k, v in counts.items()},
            )
        )
    return summaries

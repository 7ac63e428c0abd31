"""Rollout guards, pure: what two versions answered side by side in, guard readings out.

A canary (or an A/B split) serves a share of the real requests with a second version. These
functions turn what the prediction log and the servers' counters recorded about each version
into the figures a bake judges (error rate, p95 latency against the champion's, the shift of
the predicted probabilities, realized AUROC where labels came) and a per-version report.
No store, registry or server here: `retrain.serving.bake` reads the inputs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from retrain.monitoring.performance import probability_matrix, realized_auroc
from retrain.training.families import auroc

BINS = 5  # of the probability shift: wider bins, less noise on a few hundred rows
SMOOTHING = 0.5  # rows added to every bin of either side
MIN_SHIFT_ROWS = 100  # rows each side before the probability shift is judged: two forests of
# the same data measure 0.1 to 0.3 on 60 rows, under 0.11 on 100 or more
RESAMPLES = 200


@dataclass(frozen=True)
class GuardLimits:
    """How far a candidate may stray before the bake rolls it back (RETRAIN_GUARD_*)."""

    max_error_rate: float = 0.05
    max_p95_ratio: float = 2.0
    p95_slack_ms: float = 25.0  # milliseconds of p95 a candidate may add beyond the ratio
    max_psi: float = 0.2
    max_auroc_drop: float = 0.02
    min_requests: int = 20
    max_disagreement: float = 0.2  # a shadow's: share of rows answered unlike the champion


@dataclass(frozen=True)
class Counts:
    """A server's own predict-call counters since the rollout began."""

    ok: int = 0
    errors: int = 0

    @property
    def error_rate(self) -> float | None:
        total = self.ok + self.errors
        return self.errors / total if total else None


@dataclass(frozen=True)
class Reading:
    """One guard metric against its limit; `judged` is False until there is enough traffic."""

    metric: str
    value: float | None
    limit: float
    judged: bool
    detail: str = ""

    @property
    def breached(self) -> bool:
        return self.judged and self.value is not None and self.value > self.limit

    def describe(self) -> str:
        shown = "n/a" if self.value is None else f"{self.value:.4g}"
        state = "BREACHED" if self.breached else "ok" if self.judged else "waiting"
        extra = f" ({self.detail})" if self.detail else ""
        return f"{self.metric} {shown} (limit {self.limit:g}): {state}{extra}"


@dataclass(frozen=True)
class VersionSummary:
    """One version's traffic during a rollout, for the report and the progress artifact."""

    version: str
    role: str
    requests: int
    rows: int
    p50_ms: float | None
    p95_ms: float | None
    class_shares: dict[str, float]
    error_rate: float | None
    labelled: int
    auroc: float | None
    auroc_low: float | None
    auroc_high: float | None

    def as_dict(self) -> dict:
        return asdict(self)


def latencies(rows: pd.DataFrame) -> np.ndarray:
    """One latency per request (the log repeats a request's latency on each of its rows)."""
    if rows.empty:
        return np.array([])
    return rows.drop_duplicates("request_id")["latency_ms"].to_numpy(dtype=float)


def quantile(values: np.ndarray, q: float) -> float | None:
    return float(np.quantile(values, q)) if len(values) else None


def summarize(
    rows: pd.DataFrame, version: str, role: str, counts: Counts | None, positive: object = None
) -> VersionSummary:
    """`rows`: the version's logged rows (request_id, latency_ms, prediction, probabilities,
    label: NaN where none came yet)."""
    times = latencies(rows)
    shares = rows["prediction"].astype(str).value_counts(normalize=True).sort_index()
    labelled = labelled_rows(rows)
    score, low, high = (realized_auroc(labelled, positive, 0)[:3] if len(labelled)
                        else (None, None, None))  # fmt: skip
    return VersionSummary(
        version, role, len(times), len(rows), quantile(times, 0.5), quantile(times, 0.95),
        {str(k): round(float(v), 4) for k, v in shares.items()},
        counts.error_rate if counts else None, len(labelled), score, low, high,
    )  # fmt: skip


def labelled_rows(rows: pd.DataFrame) -> pd.DataFrame:
    if "label" not in rows:
        return rows.iloc[:0]
    return rows[rows["label"].notna() & rows["probabilities"].notna()]


def psi(expected: np.ndarray, actual: np.ndarray, bins: int = BINS) -> float:
    """Population stability index of `actual` against `expected` probabilities: the sum of
    (a - e) * ln(a / e) over the bins' shares. Equal-width bins of [0, 1], not the expected
    values' quantiles (a forest's probabilities are steps: quantile edges on tied values
    call two forests of the same data a shift), and half a row added to every bin (an empty
    bin would otherwise weigh like a shift)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    edges[0], edges[-1] = -np.inf, np.inf
    counts = [np.histogram(values, edges)[0] for values in (expected, actual)]
    e, a = ((c + SMOOTHING) / (c.sum() + SMOOTHING * bins) for c in counts)
    return float(np.sum((a - e) * np.log(a / e)))


def class_probabilities(rows: pd.DataFrame) -> pd.DataFrame:
    """One column per class of the logged probabilities (rows without them left out)."""
    texts = rows["probabilities"].dropna()
    return pd.DataFrame([json.loads(t) for t in texts]) if len(texts) else pd.DataFrame()


def probability_shift(champion: pd.DataFrame, candidate: pd.DataFrame) -> tuple[float, str] | None:
    """The largest PSI over the classes' probabilities (the class named), None while either
    side has fewer than MIN_SHIFT_ROWS rows with probabilities."""
    before, after = class_probabilities(champion), class_probabilities(candidate)
    if min(len(before), len(after)) < MIN_SHIFT_ROWS:
        return None
    shifts = {c: psi(before[c].fillna(0).to_numpy(), after[c].fillna(0).to_numpy())
              for c in before.columns if c in after.columns}  # fmt: skip
    worst = max(shifts, key=shifts.get)
    return shifts[worst], f"class {worst}"


def read_guards(
    champion: pd.DataFrame,
    candidate: pd.DataFrame,
    counts: Counts,
    limits: GuardLimits,
    positive: object = None,
    agreement: tuple[int, int] | None = None,
) -> list[Reading]:
    """Every guard of a bake, from both versions' rows over the same period and the
    candidate's own counters; a shadow's (rows compared, rows answered differently) adds
    the disagreement guard."""
    enough = counts.ok + counts.errors >= limits.min_requests
    rate = counts.error_rate
    readings = [Reading("error_rate", rate, limits.max_error_rate, enough,
                        f"{counts.errors} of {counts.ok + counts.errors} requests")]  # fmt: skip
    readings.append(latency_reading(champion, candidate, limits))
    shift = probability_shift(champion, candidate)
    readings.append(Reading("psi", shift[0] if shift else None, limits.max_psi,
                            shift is not None, shift[1] if shift else ""))  # fmt: skip
    readings.append(auroc_reading(champion, candidate, limits, positive))
    if agreement is not None:
        compared, differing = agreement
        share = differing / compared if compared else None
        enough, detail = compared >= MIN_SHIFT_ROWS, f"{differing} of {compared} rows"
        readings.append(Reading("disagreement", share, limits.max_disagreement, enough, detail))
    return readings


def latency_reading(
    champion: pd.DataFrame, candidate: pd.DataFrame, limits: GuardLimits
) -> Reading:
    """The candidate's p95 latency against ratio x the champion's p95 + a slack: a model of a
    few milliseconds varies by more than 2x between requests."""
    before, after = latencies(champion), latencies(candidate)
    if min(len(before), len(after)) < limits.min_requests:
        return Reading("p95_ms", None, 0.0, False)
    p95_before, p95_after = quantile(before, 0.95), quantile(after, 0.95)
    limit = limits.max_p95_ratio * p95_before + limits.p95_slack_ms
    detail = f"the champion's p95 {p95_before:.1f} ms"
    return Reading("p95_ms", p95_after, limit, True, detail)


def auroc_reading(
    champion: pd.DataFrame, candidate: pd.DataFrame, limits: GuardLimits, positive: object
) -> Reading:
    """Realized AUROC of the champion minus the candidate's, judged once each side has the
    labelled rows a performance day needs."""
    before = realized_auroc(labelled_rows(champion), positive, 0)
    after = realized_auroc(labelled_rows(candidate), positive, 0)
    if not (before[3] and after[3]):
        return Reading("auroc_drop", None, limits.max_auroc_drop, False, "waiting for labels")
    detail = f"realized AUROC {after[0]:.4f} against the champion's {before[0]:.4f}"
    return Reading("auroc_drop", before[0] - after[0], limits.max_auroc_drop, True, detail)


def difference_interval(
    first: pd.DataFrame, second: pd.DataFrame, positive: object = None, seed: int = 0
) -> tuple[float, float, float] | None:
    """AUROC(second) - AUROC(first) on their labelled rows, with a 95 % bootstrap interval
    (each side resampled on its own: the versions answered different rows). None until both
    sides hold every class."""
    sides = [labelled_rows(frame) for frame in (first, second)]
    if any(len(side) == 0 for side in sides):
        return None
    (y1, p1, c1), (y2, p2, c2) = (probability_matrix(side) for side in sides)
    if len(np.unique(y1)) < 2 or len(np.unique(y2)) < 2:
        return None
    key = None if positive is None else str(positive)
    rng, differences = np.random.default_rng(seed), []
    for _ in range(RESAMPLES):
        a, b = rng.integers(0, len(y1), len(y1)), rng.integers(0, len(y2), len(y2))
        if len(np.unique(y1[a])) == len(np.unique(y1)) and len(np.unique(y2[b])) == len(
            np.unique(y2)
        ):
            differences.append(auroc(y2[b], p2[b], c2, key) - auroc(y1[a], p1[a], c1, key))
    if not differences:
        return None
    point = auroc(y2, p2, c2, key) - auroc(y1, p1, c1, key)
    low, high = np.quantile(differences, [0.025, 0.975])
    return float(point), float(low), float(high)

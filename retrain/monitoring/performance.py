"""The served model's realized performance, from its answers and the labels that came later:
per day and model version, the share of answers labelled and the realized AUROC with a
bootstrap interval, beside the AUROC the version promised on its holdout; and the verdict
whether it has degraded. Pure: DataFrames in, dataclasses out."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from retrain.data.features import row_keys, to_categories
from retrain.errors import BadInput
from retrain.training.families import auroc, enough_to_judge

LABELLED_AT = "labelled_at"
REQUEST_ID = "request_id"
RESAMPLES = 200


@dataclass(frozen=True)
class LabelFile:
    """A labels file made ready for the labels table, and what was left out of it."""

    rows: pd.DataFrame  # key, label, labelled_at: one row per key, the latest label
    repeated: int  # rows of the file that a later row for the same key replaced
    incomplete: int  # rows without a key or a label, which cannot be kept

    def describe(self) -> str:
        extra = [f"{self.repeated} repeated keys (the latest label kept)"] if self.repeated else []
        if self.incomplete:
            extra.append(f"{self.incomplete} rows without an id or a label left out")
        return f"{len(self.rows)} labels" + (f" ({'; '.join(extra)})" if extra else "")


def label_file_rows(
    frame: pd.DataFrame, ids: tuple[str, ...], target: str, now: datetime
) -> LabelFile:
    """The key, label and labelling time of each row of a labels file: keyed by the schema's
    id column(s), or by `request_id` (a one-row request of the prediction log); the time from
    its `labelled_at` column when it has one (naive UTC), else `now`; the last row per key
    wins."""
    keys = label_keys(frame, ids, target)
    at = labelled_times(frame, now)
    # labels as the log's text of a class (a whole float reads as its integer)
    rows = pd.DataFrame({"key": keys, "label": to_categories(frame[target]), LABELLED_AT: at})
    complete = rows["key"].notna() & rows["label"].notna()
    rows = rows[complete].sort_values(LABELLED_AT, kind="stable")
    latest = rows.drop_duplicates("key", keep="last").reset_index(drop=True)
    return LabelFile(latest, len(rows) - len(latest), int((~complete).sum()))


def label_keys(frame: pd.DataFrame, ids: tuple[str, ...], target: str) -> list[str | None]:
    """Each row's key: its id column(s) when the file has them, else its `request_id`."""
    if target not in frame.columns:
        raise BadInput(f"the labels file lacks the target column {target!r}")
    if ids and all(c in frame.columns for c in ids):
        return row_keys(frame, ids)
    if REQUEST_ID in frame.columns:
        return [None if pd.isna(v) else str(v) for v in frame[REQUEST_ID]]
    wanted = f"the id column(s) {list(ids)} or " if ids else ""
    raise BadInput(
        f"the labels file needs {wanted}`{REQUEST_ID}` (from the prediction log) to match "
        "labels to answers; the schema names its ids under metadata.retrain.ids"
    )


def labelled_times(frame: pd.DataFrame, now: datetime) -> pd.Series:
    if LABELLED_AT not in frame.columns:
        return pd.Series(now, index=frame.index)
    try:
        at = pd.to_datetime(frame[LABELLED_AT], utc=True, format="mixed")
    except (ValueError, TypeError) as err:
        raise BadInput(f"column {LABELLED_AT!r} of the labels file holds a value that is not "
                       f"a time: {str(err).splitlines()[0]}") from err  # fmt: skip
    return at.dt.tz_localize(None).fillna(now)


@dataclass(frozen=True)
class DayPerformance:
    """One model version on one day: answers, labelled answers, realized AUROC."""

    day: str
    version: str
    predictions: int
    labelled: int
    auroc: float | None
    low: float | None
    high: float | None
    holdout_auroc: float | None
    enough: bool  # labelled rows and classes enough for the degradation verdict

    @property
    def share_labelled(self) -> float:
        return self.labelled / self.predictions if self.predictions else 0.0

    def line(self) -> str:
        def shown(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.4f}"

        interval = "" if self.low is None else f"[{self.low:.4f}, {self.high:.4f}]"
        return (
            f"{self.day:<10}  {self.version:>7}  {self.predictions:>11}  "
            f"{self.share_labelled:>8.1%}  {shown(self.auroc):>8}  {interval:<18}  "
            f"{shown(self.holdout_auroc):>11}"
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "day": self.day, "version": self.version, "predictions": self.predictions,
            "labelled": self.labelled, "auroc": self.auroc, "auroc_low": self.low,
            "auroc_high": self.high, "holdout_auroc": self.holdout_auroc,
        }  # fmt: skip


HEADER = (
    f"{'day':<10}  {'version':>7}  {'predictions':>11}  {'labelled':>8}  {'AUROC':>8}  "
    f"{'95% interval':<18}  {'holdout AUC':>11}"
)


def daily_performance(
    counts: pd.DataFrame,
    labelled: pd.DataFrame,
    holdout_aurocs: Mapping[str, float | None],
    positive: object | None = None,
    seed: int = 0,
) -> list[DayPerformance]:
    """Per day and model version, oldest first. `counts` has `day` (YYYY-MM-DD),
    `model_version` and `predictions` (rows answered); `labelled` has the answered rows a
    label came for: `predicted_at`, `model_version`, `probabilities` (JSON per class), `label`."""
    days = pd.to_datetime(labelled["predicted_at"]).dt.strftime("%Y-%m-%d")
    groups = dict(iter(labelled.assign(day=days).groupby(["day", "model_version"])))
    out = []
    ordered = counts.sort_values(["day", "model_version"])
    for day, version, answered in ordered.itertuples(index=False):
        rows = groups.get((day, version), labelled.iloc[:0])
        auc, low, high, enough = realized_auroc(rows, positive, seed)
        holdout = holdout_aurocs.get(str(version))
        out.append(
            DayPerformance(str(day), str(version), int(answered), len(rows), auc, low, high,
                           holdout, enough)
        )  # fmt: skip
    return out


def realized_auroc(
    rows: pd.DataFrame, positive: object | None, seed: int
) -> tuple[float | None, float | None, float | None, bool]:
    """(AUROC, interval low, interval high, enough rows for a verdict) of the labelled rows
    whose probabilities were logged; None where the labels hold a single class."""
    labelled = rows[rows["probabilities"].notna()]
    if labelled.empty:
        return None, None, None, False
    y, proba, classes = probability_matrix(labelled)
    known = np.isin(y, classes)
    y, proba = y[known], proba[known]
    counts = pd.Series(y).value_counts()
    if len(counts) < 2:
        return None, None, None, False
    key = None if positive is None else to_categories(pd.Series([positive])).iloc[0]
    score = auroc(y, proba, classes, key)
    low, high = bootstrap_interval(y, proba, classes, key, seed)
    return score, low, high, enough_to_judge(y, classes)


def probability_matrix(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, probabilities, classes) of rows whose `probabilities` hold JSON per class."""
    parsed = [json.loads(text) for text in rows["probabilities"]]
    classes = np.array(sorted(parsed[0]))
    proba = np.array([[p.get(c, 0.0) for c in classes] for p in parsed], dtype=float)
    return rows["label"].astype(str).to_numpy(), proba, classes


def bootstrap_interval(
    y: np.ndarray,
    proba: np.ndarray,
    classes: np.ndarray,
    positive: object | None,
    seed: int,
    confidence: float = 0.95,
) -> tuple[float | None, float | None]:
    """A percentile bootstrap interval of the AUROC (resamples lacking a class are skipped)."""
    rng, scores = np.random.default_rng(seed), []
    present = len(np.unique(y))
    for _ in range(RESAMPLES):
        pick = rng.integers(0, len(y), len(y))
        if len(np.unique(y[pick])) == present:
            scores.append(auroc(y[pick], proba[pick], classes, positive))
    if not scores:
        return None, None
    tail = (1 - confidence) / 2
    low, high = np.quantile(scores, [tail, 1 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class Degradation:
    """The verdict on the served versions' recent labelled days."""

    degraded: bool
    below: list[DayPerformance]
    counted: list[DayPerformance]
    margin: float
    judged: list[DayPerformance] = field(default_factory=list)  # every day with an AUROC

    def describe(self) -> str:
        if not self.counted:
            return "no day has enough labelled answers for a verdict yet"
        days = ", ".join(
            f"{d.day} v{d.version} {d.auroc:.4f} < {d.holdout_auroc:.4f} - {self.margin}"
            for d in self.below
        )  # fmt: skip
        verdict = "degraded" if self.degraded else "holding"
        return (
            f"{verdict}: {len(self.below)} of the last {len(self.counted)} labelled days "
            f"below the holdout AUROC minus the margin" + (f" ({days})" if days else "")
        )


def degradation(
    days: list[DayPerformance], margin: float, need: int = 2, of_last: int = 5
) -> Degradation:
    """Degraded when on `need` of the last `of_last` days that count (enough labelled rows of
    every class, a holdout AUROC known) the realized AUROC is below the holdout's minus
    `margin`."""
    counted = [d for d in days if d.enough and d.holdout_auroc is not None][-of_last:]
    below = [d for d in counted if d.auroc < d.holdout_auroc - margin]
    judged = [d for d in days if d.auroc is not None]
    return Degradation(len(below) >= need, below, counted, margin, judged)

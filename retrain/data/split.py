"""The train/holdout split of the cleaned rows: pure, DataFrames in, a Dataset out.

A row is in the holdout when its `row_hash` falls in the holdout share, so a row never
changes side from one night to the next and identical rows share a side. Champion and
challenger are compared on the holdout rows of the current cleaned data, which neither
trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from retrain.config.dataset_schema import DatasetSchema
from retrain.config.settings import Settings
from retrain.errors import StageFailed

HOLDOUT_BUCKETS = 10_000
BATCH_TIME = "batch_loaded_at"  # the column RETRAIN_HOLDOUT=batch adds: each row's load time
HOLDOUT_SHARE = 0.2


def holdout_mask(row_hashes: pd.Series, share: float = HOLDOUT_SHARE) -> np.ndarray:
    """True for rows in the holdout: decided by the row's content hash alone."""
    buckets = np.array([int(h, 16) % HOLDOUT_BUCKETS for h in row_hashes], dtype=np.int64)
    return buckets < round(share * HOLDOUT_BUCKETS)


def holdout_rule(share: float = HOLDOUT_SHARE) -> str:
    """`holdout_mask` in words, for lineage."""
    return f"int(row_hash, 16) % {HOLDOUT_BUCKETS} < {round(share * HOLDOUT_BUCKETS)}"


@dataclass(frozen=True)
class TimeHoldout:
    """Which rows are the newest: `mask` (True: holdout) and the rule in words for lineage,
    with the time range it covers and whether it had to widen."""

    mask: np.ndarray
    rule: str
    start: pd.Timestamp | None
    end: pd.Timestamp | None
    widened: bool


def time_holdout(
    times: pd.Series,
    labels: np.ndarray,
    days: float | None = None,
    share: float = HOLDOUT_SHARE,
    min_rows: int = 200,
    min_per_class: int = 20,
) -> TimeHoldout:
    """The newest rows by `times` as the holdout: those of the last `days` days before the
    newest time, else the newest `share` of the rows; widened, newest first, until it holds
    `min_rows` rows and `min_per_class` of each class (or all a class has), and cut at a time
    so no timestamp lies on both sides; widening stops at half the rows. Rows without a time
    always train."""
    stamps = pd.to_datetime(times, errors="coerce", utc=True)
    order = newest_first(stamps)
    order = order[stamps.iloc[order].notna().to_numpy()]
    if len(order) == 0:
        return TimeHoldout(np.zeros(len(times), dtype=bool), "no row has a time", None, None, False)
    newest = stamps.iloc[order[0]]
    if days is not None:
        wanted = int((stamps.iloc[order] > newest - pd.Timedelta(days=days)).sum())
    else:
        wanted = int(np.ceil(share * len(order)))
    needed = rows_needed(labels[order], min_rows, min_per_class)
    ceiling = max(wanted, len(order) // 2)  # widening never takes most of the rows
    count = min(max(wanted, min(needed, ceiling), 1), len(order))
    cut = stamps.iloc[order[count - 1]]
    mask = (stamps >= cut).fillna(False).to_numpy(dtype=bool)
    said = f"last {days:g} days" if days is not None else f"newest {share:.0%} of rows"
    widened = needed > wanted
    rule = (
        f"{times.name} >= {cut.isoformat()} ({said}{', widened' if widened else ''}; "
        f"newest {newest.isoformat()})"
    )
    return TimeHoldout(mask, rule, cut, newest, widened)


def rows_needed(newest_first: np.ndarray, min_rows: int, min_per_class: int) -> int:
    """How many of the newest rows hold `min_rows` rows and `min_per_class` of each class
    (all of a class that has fewer)."""
    needed = min(min_rows, len(newest_first))
    for label in np.unique(newest_first):
        where = np.flatnonzero(newest_first == label)
        enough = min(min_per_class, len(where))
        needed = max(needed, int(where[enough - 1]) + 1)
    return needed


AUTO_WINDOWS = (None, 14.0, 7.0, 3.0, 1.0)  # days; None: all history


@dataclass(frozen=True)
class TrainWindow:
    """Which rows the model learns from: those of the last `days` days before the newest
    row (None: all history), at most `max_rows` of them, newest first. `auto`: the tuning
    picks the days among AUTO_WINDOWS, so every row is read."""

    days: float | None = None
    max_rows: int | None = None
    auto: bool = False

    @property
    def everything(self) -> bool:
        return self.auto or (self.days is None and self.max_rows is None)

    def describe(self) -> str:
        if self.auto:
            return "auto"
        days = "all history" if self.days is None else f"last {self.days:g} days"
        return days + (f", newest {self.max_rows} rows" if self.max_rows else "")


def train_window_of(settings: Settings) -> TrainWindow:
    """RETRAIN_TRAIN_WINDOW_DAYS (a number, or auto) and RETRAIN_TRAIN_MAX_ROWS."""
    text = settings.train_window_days
    if text == "auto":
        return TrainWindow(None, settings.train_max_rows, auto=True)
    return TrainWindow(float(text) if text else None, settings.train_max_rows)


def as_times(values: pd.Series) -> pd.Series:
    """A time column as UTC timestamps: numbers as Unix seconds, text parsed; NaT where a
    value is missing or no time."""
    if pd.api.types.is_numeric_dtype(values):
        return pd.to_datetime(values, unit="s", errors="coerce", utc=True)
    return pd.to_datetime(values, errors="coerce", utc=True, format="mixed")


def newest_first(stamps: pd.Series) -> np.ndarray:
    """Row positions by time, newest first, rows without a time last (stable)."""
    keys = stamps.to_numpy(dtype="datetime64[ns]").astype("int64")
    keys = np.where(stamps.isna().to_numpy(), np.iinfo(np.int64).min + 1, keys)
    return np.argsort(-keys, kind="stable")


def window_mask(times: pd.Series, window: TrainWindow) -> np.ndarray:
    """True for the rows inside the window: a time within `days` of the newest (a row
    without a time is outside a window of days), then the newest `max_rows` (stable, so
    equal times keep their order)."""
    stamps = as_times(times)
    inside = np.ones(len(times), dtype=bool)
    if window.days is not None and stamps.notna().any():
        cut = stamps.max() - pd.Timedelta(days=window.days)
        inside = (stamps > cut).fillna(False).to_numpy(dtype=bool)
    if window.max_rows is not None and inside.sum() > window.max_rows:
        kept = [i for i in newest_first(stamps) if inside[i]][: window.max_rows]
        inside = np.zeros(len(times), dtype=bool)
        inside[kept] = True
    return inside


@dataclass(frozen=True)
class Dataset:
    """Training and holdout rows of the current cleaned data, split by row hash; `kinds`
    maps each feature to numeric, integer, boolean or categorical."""

    train: pd.DataFrame
    holdout: pd.DataFrame
    kinds: dict[str, str]
    target: str
    positive: Any = None
    passengers: tuple[str, ...] = ()  # id and timestamp columns: sent along, never features
    holdout_rule: str = ""  # which rows are the holdout, in words (lineage, run params)

    @property
    def features(self) -> list[str]:
        return list(self.kinds)

    @property
    def classes(self) -> np.ndarray:
        """Labels of the training rows, sorted."""
        return np.unique(self.train[self.target].to_numpy())

    @property
    def known_classes(self) -> np.ndarray:
        """Labels of training and holdout rows together (a holdout may hold a new class)."""
        return np.unique(np.concatenate([self.train[self.target], self.holdout[self.target]]))

    def labels(self, part: pd.DataFrame) -> np.ndarray:
        return part[self.target].to_numpy()


@dataclass(frozen=True)
class HoldoutChoice:
    """How the holdout is drawn: `time` (the newest rows by `time_column`: the last `days`,
    else the newest `share`) or `hash` (a fixed `share` by row hash)."""

    kind: str = "hash"
    share: float = HOLDOUT_SHARE
    days: float | None = None
    time_column: str | None = None


def choose_holdout(
    wanted: str, timestamps: tuple[str, ...], time_column: str | None, days: float | None
) -> HoldoutChoice:
    """RETRAIN_HOLDOUT applied to the schema: `auto` is `time` when there is a time column
    (RETRAIN_TIME_COLUMN, else the schema's first timestamp), else `hash`; `batch` is `time`
    along the batches' load time (the column BATCH_TIME the reader adds)."""
    if wanted == "batch":
        return HoldoutChoice("time", HOLDOUT_SHARE, days, BATCH_TIME)
    column = time_column or (timestamps[0] if timestamps else None)
    if wanted == "time" and column is None:
        raise StageFailed(
            "RETRAIN_HOLDOUT=time needs a time column: name one in the schema's `timestamps` "
            "or set RETRAIN_TIME_COLUMN"
        )
    if wanted == "hash" or column is None:
        return HoldoutChoice("hash")
    return HoldoutChoice("time", HOLDOUT_SHARE, days, column)


def holdout_choice_of(settings: Settings, schema: DatasetSchema) -> HoldoutChoice:
    """The holdout the settings ask for, on this dataset's schema."""
    return choose_holdout(
        settings.holdout, schema.roles.timestamps, settings.time_column, settings.holdout_days
    )


def holdout_rows(cleaned: pd.DataFrame, settings: Settings) -> np.ndarray:
    """The holdout mask the settings ask for, on cleaned rows (drift's reference leaves these
    rows out; `retrain predict` sends them)."""
    schema = settings.load_schema()
    return holdout_of(cleaned, schema.target, holdout_choice_of(settings, schema))[0]


def holdout_of(cleaned: pd.DataFrame, target: str, choice: HoldoutChoice) -> tuple[np.ndarray, str]:
    """(holdout mask, its rule in words) of the cleaned rows."""
    if choice.kind == "hash":
        return holdout_mask(cleaned["row_hash"], choice.share), holdout_rule(choice.share)
    if choice.time_column not in cleaned.columns:
        raise StageFailed(
            f"the time column {choice.time_column!r} is not in the cleaned data; check "
            "RETRAIN_TIME_COLUMN and the schema's timestamps"
        )
    times = cleaned[choice.time_column]
    if pd.api.types.is_numeric_dtype(times):
        times = as_times(times).rename(choice.time_column)
    held = time_holdout(times, cleaned[target].to_numpy(), choice.days, choice.share)
    if len(held.mask) and held.mask.all():
        raise StageFailed(
            f"every row shares the newest {choice.time_column}, so no older row is left to "
            "train on; load the data as batches of different times (with RETRAIN_HOLDOUT=batch, "
            "one batch per night), or use RETRAIN_HOLDOUT=hash"
        )
    return held.mask, held.rule


def split_dataset(
    cleaned: pd.DataFrame,
    kinds: dict[str, str],
    target: str,
    share: float = HOLDOUT_SHARE,
    positive: Any = None,
    passengers: tuple[str, ...] = (),
    choice: HoldoutChoice | None = None,
) -> Dataset:
    """Training rows and holdout rows; refuses data too small or with a single class."""
    missing = [c for c in (target, *kinds) if c not in cleaned.columns]
    if missing:
        raise StageFailed(
            f"columns {missing} are not in the cleaned data; check RETRAIN_TARGET and the schema"
        )
    mask, rule = holdout_of(cleaned, target, choice or HoldoutChoice("hash", share))
    data = Dataset(cleaned[~mask], cleaned[mask], kinds, target, positive, passengers, rule)
    if data.train[target].nunique() < 2 or len(data.holdout) == 0:
        raise StageFailed(
            f"not enough cleaned data to tune ({len(cleaned)} rows, "
            f"{data.train[target].nunique()} label(s) among the training rows); ingest and "
            "clean more data first"
        )
    return data


def dataset_of(
    cleaned: pd.DataFrame,
    schema: DatasetSchema,
    share: float = HOLDOUT_SHARE,
    choice: HoldoutChoice | None = None,
) -> Dataset:
    """The train/holdout split of the cleaned rows, with the schema's features and roles
    (`choice` None: the hash holdout of `share`)."""
    return split_dataset(
        cleaned, schema.feature_kinds, schema.target, share, schema.positive_class,
        (*schema.roles.ids, *schema.roles.timestamps), choice,
    )  # fmt: skip


def align_proba(proba: np.ndarray, model_classes: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Probabilities with one column per class of `classes`, in that order; a class the model
    never saw gets 0 (a fold missing a rare class, or a champion trained before a class
    appeared, can still be scored)."""
    out = np.zeros((len(proba), len(classes)))
    index = {label: i for i, label in enumerate(classes)}
    for column, label in enumerate(model_classes):
        if label in index:
            out[:, index[label]] = proba[:, column]
    return out

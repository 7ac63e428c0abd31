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
from retrain.errors import StageFailed

HOLDOUT_BUCKETS = 10_000
HOLDOUT_SHARE = 0.2


def holdout_mask(row_hashes: pd.Series, share: float = HOLDOUT_SHARE) -> np.ndarray:
    """True for rows in the holdout: decided by the row's content hash alone."""
    buckets = np.array([int(h, 16) % HOLDOUT_BUCKETS for h in row_hashes], dtype=np.int64)
    return buckets < round(share * HOLDOUT_BUCKETS)


def holdout_rule(share: float = HOLDOUT_SHARE) -> str:
    """`holdout_mask` in words, for lineage."""
    return f"int(row_hash, 16) % {HOLDOUT_BUCKETS} < {round(share * HOLDOUT_BUCKETS)}"


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


def split_dataset(
    cleaned: pd.DataFrame,
    kinds: dict[str, str],
    target: str,
    share: float = HOLDOUT_SHARE,
    positive: Any = None,
    passengers: tuple[str, ...] = (),
) -> Dataset:
    """Training rows and holdout rows; refuses data too small or with a single class."""
    missing = [c for c in (target, *kinds) if c not in cleaned.columns]
    if missing:
        raise StageFailed(
            f"columns {missing} are not in the cleaned data; check RETRAIN_TARGET and the schema"
        )
    mask = holdout_mask(cleaned["row_hash"], share)
    data = Dataset(cleaned[~mask], cleaned[mask], kinds, target, positive, passengers)
    if data.train[target].nunique() < 2 or len(data.holdout) == 0:
        raise StageFailed(
            f"not enough cleaned data to tune ({len(cleaned)} rows, "
            f"{data.train[target].nunique()} label(s) among the training rows); ingest and "
            "clean more data first"
        )
    return data


def dataset_of(
    cleaned: pd.DataFrame, schema: DatasetSchema, share: float = HOLDOUT_SHARE
) -> Dataset:
    """The train/holdout split of the cleaned rows, with the schema's features and roles."""
    return split_dataset(
        cleaned, schema.feature_kinds, schema.target, share, schema.positive_class,
        (*schema.roles.ids, *schema.roles.timestamps),
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

"""Rows as the Pipelines take them: the one preparation used before fitting and before every
prediction, for typed cleaned rows and raw served rows alike. Pure pandas."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from retrain.config.dataset_schema import KINDS, MISSING_MARKERS

TRUE_TEXT = frozenset(["true", "t", "yes", "y", "1", "1.0"])
FALSE_TEXT = frozenset(["false", "f", "no", "n", "0", "0.0"])


def prepare_features(frame: pd.DataFrame, kinds: Mapping[str, str]) -> pd.DataFrame:
    """The feature columns of raw rows in `kinds`' order, categoricals as object strings and
    the other kinds as float64 (booleans 0/1), every missing value NaN. A feature absent from
    `frame` is all missing here (the served wrapper refuses such rows first, with
    `require_features`); other columns are dropped."""
    columns = {}
    for name, kind in kinds.items():
        if name in frame.columns:
            values = frame[name]
        else:
            values = pd.Series(np.nan, index=frame.index, dtype=object)
        columns[name] = prepare_column(values, kind, name)
    return pd.DataFrame(columns, index=frame.index)


def compact_features(x: pd.DataFrame) -> pd.DataFrame:
    """Prepared features in a training matrix's compact dtypes: numbers as float32 (the
    precision scikit-learn's trees fit in anyway), categories as pandas categoricals (small
    integer codes, each text stored once), so that a million rows stay small and cheap to
    send to fold workers. Rows to predict keep `prepare_features`' dtypes."""
    compact = {
        name: values.astype("float32" if values.dtype.kind == "f" else "category")
        for name, values in x.items()
    }
    return pd.DataFrame(compact, index=x.index)


class FeatureError(ValueError):
    """A value a feature's kind cannot take, or a feature column the rows lack: the caller's
    mistake (the served model answers it with 400), named by column and value."""


def require_features(frame: pd.DataFrame, kinds: Mapping[str, str]) -> None:
    """Refuse rows that lack a feature column (a null value in a present column is fine)."""
    missing = [name for name in kinds if name not in frame.columns]
    if missing:
        raise FeatureError(f"the rows lack the feature columns {missing}; send every one")


def prepare_column(values: pd.Series, kind: str, name: str) -> pd.Series:
    if kind == "categorical":
        return to_categories(values)
    if kind in ("numeric", "integer"):
        return to_numbers(values, name, whole=kind == "integer")
    if kind == "boolean":
        return to_flags(values, name)
    raise ValueError(f"feature {name!r} has kind {kind!r}, not one of {KINDS}")


def missing_mask(values: pd.Series) -> pd.Series:
    """True where a value is null or text the source's reader takes for missing."""
    if values.dtype != object and not pd.api.types.is_string_dtype(values.dtype):
        return values.isna()
    marked = values.map(lambda v: isinstance(v, str) and v.strip() in MISSING_MARKERS)
    return values.isna() | marked.astype(bool)


def to_categories(values: pd.Series) -> pd.Series:
    """Category text; a whole float (a code column that pandas read as float beside a missing
    value) reads as the integer it holds, so `3.0` is the category `3` it was trained as."""
    text = values.map(category_text, na_action="ignore").astype(object)
    return text.where(~missing_mask(values), np.nan)


def category_text(value: Any) -> str:
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def to_numbers(values: pd.Series, name: str, whole: bool = False) -> pd.Series:
    """Numbers as float64, whatever pandas typed them as (int64, nullable Int64, float with
    NaN, text); a value that is not a number (or, for an integer feature, not a whole one) is
    a FeatureError naming it."""
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.astype("float64")
    missing = missing_mask(values)
    if pd.api.types.is_numeric_dtype(values.dtype):
        numbers = values.astype("float64")
    else:
        numbers = pd.to_numeric(values.where(~missing, np.nan), errors="coerce").astype("float64")
    bad = numbers.isna() & ~missing
    if whole:
        bad |= numbers.notna() & (numbers != np.floor(numbers))
    if bad.any():
        what = "a whole number" if whole else "a number"
        raise FeatureError(f"column {name!r}: {first_bad(values, bad)} is not {what}")
    return numbers


def first_bad(values: pd.Series, bad: pd.Series) -> str:
    """The first refused value and its row, for the one-line error."""
    position = int(np.flatnonzero(bad.to_numpy())[0])
    value = values.iloc[position]
    shown = value.item() if isinstance(value, np.generic) else value  # 2.5, not np.float64(2.5)
    return f"value {shown!r} (row {position})"


def to_flags(values: pd.Series, name: str) -> pd.Series:
    """Booleans as float 1.0/0.0, NaN where missing: true/false, 1/0 or their text."""
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.astype("float64")
    missing = missing_mask(values)
    flags = [np.nan if gone else to_flag(v) for v, gone in zip(values, missing, strict=True)]
    result = pd.Series(flags, index=values.index, dtype="float64")
    bad = result.isna() & ~missing
    if bad.any():
        raise FeatureError(f"column {name!r}: {first_bad(values, bad)} is not true or false")
    return result


def to_flag(value: Any) -> float:
    """1.0 / 0.0 for a true / false value or its text (`1.0` reads as `1`), NaN for anything
    else."""
    text = category_text(value).strip().lower()
    if text in TRUE_TEXT:
        return 1.0
    if text in FALSE_TEXT:
        return 0.0
    return np.nan


KEY_SEPARATOR = "|"


def row_keys(frame: pd.DataFrame, ids: tuple[str, ...] | list[str]) -> list[str | None]:
    """Each row's key from its id column(s), as text that reads the same from a request's
    JSON, a CSV file or the cleaned table (`3`, `3.0` and `"3"` are one key); several ids are
    joined by `|`. None where the frame lacks an id column or a row lacks a value."""
    if not ids or any(name not in frame.columns for name in ids):
        return [None] * len(frame)
    parts = [to_categories(frame[name]) for name in ids]
    keys = parts[0].astype(object)
    for part in parts[1:]:
        keys = keys + KEY_SEPARATOR + part.astype(object)
    return [key if isinstance(key, str) else None for key in keys]

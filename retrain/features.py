"""Rows as the Pipelines take them: the one preparation used before fitting and before every
prediction, for typed cleaned rows and raw served rows alike. Pure pandas."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from retrain.schema import KINDS, MISSING_MARKERS

TRUE_TEXT = frozenset(["true", "t", "yes", "y", "1", "1.0"])
FALSE_TEXT = frozenset(["false", "f", "no", "n", "0", "0.0"])


def prepare_features(frame: pd.DataFrame, kinds: Mapping[str, str]) -> pd.DataFrame:
    """The feature columns of raw rows in `kinds`' order, categoricals as object strings and
    the other kinds as float64 (booleans 0/1), every missing value NaN. A feature absent from
    `frame` is all missing (the signature lets optional columns be left out); other columns
    are dropped."""
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


def prepare_column(values: pd.Series, kind: str, name: str) -> pd.Series:
    if kind == "categorical":
        return to_categories(values)
    if kind in ("numeric", "integer"):
        return to_numbers(values, name)
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
    text = values.map(str, na_action="ignore").astype(object)
    return text.where(~missing_mask(values), np.nan)


def to_numbers(values: pd.Series, name: str) -> pd.Series:
    if pd.api.types.is_numeric_dtype(values.dtype):
        return values.astype("float64")
    try:
        return pd.to_numeric(values.where(~missing_mask(values), np.nan)).astype("float64")
    except (TypeError, ValueError) as err:
        raise ValueError(f"feature {name!r} is numeric: {err}") from err


def to_flags(values: pd.Series, name: str) -> pd.Series:
    """Booleans as float 1.0/0.0, NaN where missing: true/false, 1/0 or their text."""
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.astype("float64")
    missing = missing_mask(values)
    flags = [np.nan if gone else to_flag(v, name) for v, gone in zip(values, missing, strict=True)]
    return pd.Series(flags, index=values.index, dtype="float64")


def to_flag(value: Any, name: str) -> float:
    text = str(value).strip().lower()
    if text in TRUE_TEXT:
        return 1.0
    if text in FALSE_TEXT:
        return 0.0
    raise ValueError(f"feature {name!r} is boolean, got {value!r}")

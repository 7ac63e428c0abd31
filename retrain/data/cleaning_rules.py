"""Pure cleaning rules: a pandera schema splits raw text rows into cleaned and rejected rows.

No I/O here: DataFrames in, DataFrames out. A raw frame holds the schema's columns as text plus
the bookkeeping columns (`batch_id`, `line_no`, `row_hash`, `n_fields`, `extra_fields`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from retrain.config.dataset_schema import MISSING_MARKERS, ROW_KEYS, DatasetSchema, parse_integer
from retrain.data.features import FALSE_TEXT, TRUE_TEXT

QUARANTINE_PREFIX = "batch quarantined"


@dataclass(frozen=True)
class Split:
    """The outcome of cleaning one batch."""

    cleaned: pd.DataFrame
    rejected: pd.DataFrame
    failed: int
    quarantined: bool = False

    def commonest_reasons(self, n: int = 3) -> list[tuple[str, int]]:
        """The most frequent single reasons among rejected rows (one row may give several)."""
        return self.reason_counts().most_common(n)

    def reason_counts(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for reasons in self.rejected["reason"]:
            if not reasons.startswith(QUARANTINE_PREFIX):
                counts.update(_reason_kind(part) for part in reasons.split("; "))
        return counts


def _reason_kind(reason: str) -> str:
    """'col: out of bounds ... (got 99.0)' -> 'col: out of bounds ...' for counting."""
    return reason.split(" (got ", 1)[0]


PARSE_REASONS = {
    "numeric": "not a number",
    "integer": "not an integer (or beyond 64 bits)",
    "boolean": "not true or false",
    "finite": "not a finite number",
}


def describe_check(check: str) -> str:
    """Turn a pandera check name into words a person reads in the rejected table."""
    if check == "not_nullable":
        return "missing value"
    if check.startswith(("isin", "notin")):
        return f"unknown label [{check}]"
    if check.startswith(("greater", "less", "in_range", "equal", "not_equal")):
        return f"out of bounds [{check}]"
    return f"failed check [{check}]"


def text_cells(text: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(each cell stripped, in pandas' string dtype; True where the cell is missing: empty, or
    one of pandas' missing markers such as NA). Vectorised: a batch may hold millions."""
    stripped = text.astype("str").str.strip()
    missing = stripped.isna() | stripped.isin(MISSING_MARKERS)
    return stripped, missing.to_numpy(dtype=bool)


def parse_cells(text: pd.Series, kind: str) -> tuple[pd.Series, pd.Series]:
    """(typed values, why each cell that does not parse as `kind` failed; '' where fine).

    Missing cells become nulls; whether a null is allowed is the schema's `nullable`, checked
    afterwards."""
    stripped, missing = text_cells(text)
    no_reason = pd.Series("", index=text.index, dtype=object)
    if kind == "categorical":
        return text.where(~missing).astype(object), no_reason
    if kind == "boolean":
        return parse_booleans(stripped, missing, no_reason)
    if kind == "integer":
        return parse_integers(stripped, missing, no_reason)
    numbers = pd.to_numeric(stripped.where(~missing), errors="coerce").astype("float64")
    reasons = no_reason.mask(~missing & numbers.isna().to_numpy(), PARSE_REASONS[kind])
    infinite = np.isinf(numbers)
    reasons = reasons.mask(infinite, PARSE_REASONS["finite"])
    return numbers.mask(infinite), reasons


def parse_booleans(
    stripped: pd.Series, missing: np.ndarray, no_reason: pd.Series
) -> tuple[pd.Series, pd.Series]:
    words = stripped.str.lower()
    true = words.isin(TRUE_TEXT).to_numpy(dtype=bool)
    false = words.isin(FALSE_TEXT).to_numpy(dtype=bool)
    values = pd.Series(pd.NA, index=stripped.index, dtype="boolean")
    values[true] = True
    values[false] = False
    return values, no_reason.mask(~missing & ~true & ~false, PARSE_REASONS["boolean"])


DIGITS = r"[+-]?\d{1,18}"  # fits in 64 bits for sure; anything else goes the exact slow way


def parse_integers(
    stripped: pd.Series, missing: np.ndarray, no_reason: pd.Series
) -> tuple[pd.Series, pd.Series]:
    """Integers exactly (no trip through float): plain digit strings are cast at once, the
    rare rest (`3.0`, 19 digits, garbage) one by one through `parse_integer`."""
    typed = pd.Series(pd.NA, index=stripped.index, dtype="Int64")
    plain = stripped.str.fullmatch(DIGITS).fillna(False).to_numpy(dtype=bool) & ~missing
    typed[plain] = stripped[plain].astype("int64").to_numpy()
    other = ~plain & ~missing
    parsed = [parse_integer(t) for t in stripped[other]]
    typed[other] = pd.array(parsed, dtype="Int64")
    bad = np.zeros(len(typed), dtype=bool)
    bad[np.flatnonzero(other)[[v is None for v in parsed]]] = True
    return typed, no_reason.mask(bad, PARSE_REASONS["integer"])


def parse_frame(data: pd.DataFrame, schema: DatasetSchema) -> tuple[pd.DataFrame, dict]:
    """Every column parsed as its kind, and {row: {column: reason}} for cells that did not."""
    typed, reasons = {}, {}
    for column in schema.columns:
        typed[column], why = parse_cells(data[column], schema.kind(column))
        for idx, words in why[why != ""].items():
            got = _short(data.at[idx, column])
            reasons.setdefault(int(idx), {})[column] = f"{column}: {words} (got {got})"
    return pd.DataFrame(typed, index=data.index), reasons


def value_rules(schema: DatasetSchema) -> pa.DataFrameSchema:
    """The schema's checks and nullability alone: the values are already typed."""
    rules = schema.rules.update_columns(
        {c: {"dtype": None, "coerce": False} for c in schema.columns}
    )
    rules.coerce = False
    return rules


def find_cell_reasons(schema: DatasetSchema, data: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """(typed frame, every reason each row fails, keyed by the frame's index).

    Values that do not parse as their column's kind are reported and blanked first, so the
    schema's checks then run on typed columns and report every other failing cell."""
    typed, per_row = parse_frame(data, schema)
    try:
        value_rules(schema).validate(typed, lazy=True)
    except SchemaErrors as err:
        cases = err.failure_cases
        for case in cases[cases["index"].notna()].itertuples():
            per_column = per_row.setdefault(int(case.index), {})
            if case.column not in per_column:
                words = f"{case.column}: {describe_check(case.check)}"
                if case.check != "not_nullable":
                    words += f" (got {_short(case.failure_case)})"
                per_column[case.column] = words
    return typed, {idx: list(cols.values()) for idx, cols in per_row.items()}


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "...'"


def shape_reasons(raw: pd.DataFrame, expected_fields: int) -> dict[int, list[str]]:
    """Rows whose field count differs from the header's (ragged rows)."""
    bad = raw[raw["n_fields"] != expected_fields]
    return {
        int(idx): [f"wrong number of fields: expected {expected_fields}, got {int(n)}"]
        for idx, n in bad["n_fields"].items()
    }


def split_clean_rejected(
    raw: pd.DataFrame, schema: DatasetSchema, max_reject_fraction: float | None
) -> Split:
    """Split one batch of raw text rows into typed cleaned rows and rejected rows with reasons.

    When more than `max_reject_fraction` of the rows are rejected the whole batch is quarantined:
    every row goes to rejected, the good ones with a reason that starts 'batch quarantined'.
    `None` admits the batch whatever its reject fraction.
    """
    split = split_rows(raw, schema)
    tally = Tally()
    tally.add(raw, split)
    if not tally.over(max_reject_fraction):
        return split
    good = raw[~raw["line_no"].isin(tally.bad_lines())]
    quarantined = quarantined_rows(good, tally.quarantine_reason(max_reject_fraction))
    whole = pd.concat([split.rejected, quarantined]).sort_values("line_no", kind="stable")
    return Split(_empty_cleaned(schema), whole.reset_index(drop=True), split.failed, True)


def split_rows(raw: pd.DataFrame, schema: DatasetSchema) -> Split:
    """Rows (a whole batch or one chunk of it) into cleaned and rejected, no threshold."""
    columns = schema.columns
    raw = raw.reset_index(drop=True)
    reasons = shape_reasons(raw, len(columns))
    typed, cell_reasons = find_cell_reasons(schema, raw[columns])
    for idx, found in cell_reasons.items():
        reasons.setdefault(idx, []).extend(found)
    bad = raw.index.isin(list(reasons))
    rejected = _rejected_frame(raw[bad], reasons)
    cleaned = pd.concat([typed[~bad], raw.loc[~bad, ROW_KEYS]], axis=1).reset_index(drop=True)
    return Split(cleaned, rejected.reset_index(drop=True), len(rejected))


@dataclass
class Tally:
    """Counts over the chunks of one batch: whether it is quarantined is decided on the
    whole batch, whatever the chunk size."""

    rows: int = 0
    failed: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    bad: list[np.ndarray] = field(default_factory=list)

    def add(self, raw: pd.DataFrame, split: Split) -> None:
        self.rows += len(raw)
        self.failed += split.failed
        self.reasons.update(split.reason_counts())
        self.bad.append(split.rejected["line_no"].to_numpy(dtype=np.int64))

    def bad_lines(self) -> np.ndarray:
        return np.concatenate(self.bad) if self.bad else np.array([], dtype=np.int64)

    def over(self, max_reject_fraction: float | None) -> bool:
        fraction = self.failed / self.rows if self.rows else 0.0
        return max_reject_fraction is not None and fraction > max_reject_fraction

    def quarantine_reason(self, max_reject_fraction: float) -> str:
        fraction = self.failed / self.rows
        return (
            f"{QUARANTINE_PREFIX}: {self.failed} of {self.rows} rows rejected "
            f"({fraction:.0%} > max_reject_fraction {max_reject_fraction:.0%})"
        )


def quarantined_rows(good: pd.DataFrame, why: str) -> pd.DataFrame:
    """Good rows of a quarantined batch, as rejected rows that give the batch's reason."""
    out = good.copy()
    out["reason"] = why
    return out


def _rejected_frame(rows: pd.DataFrame, reasons: dict[int, list[str]]) -> pd.DataFrame:
    out = rows.copy()
    out["reason"] = ["; ".join(reasons[int(i)]) for i in rows.index]
    return out


def _empty_cleaned(schema: DatasetSchema) -> pd.DataFrame:
    return pd.DataFrame(columns=[*schema.columns, *ROW_KEYS])

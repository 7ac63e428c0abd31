"""Pure cleaning rules: a pandera schema splits raw text rows into cleaned and rejected rows.

No I/O here: DataFrames in, DataFrames out. A raw frame holds the schema's columns as text plus
the bookkeeping columns (`batch_id`, `line_no`, `row_hash`, `n_fields`, `extra_fields`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from retrain.features import FALSE_TEXT, TRUE_TEXT
from retrain.schema import MISSING_MARKERS, DatasetSchema, parse_integer

ROW_KEYS = ["batch_id", "line_no", "row_hash"]
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
        counts: Counter[str] = Counter()
        for reasons in self.rejected["reason"]:
            if not reasons.startswith(QUARANTINE_PREFIX):
                counts.update(_reason_kind(part) for part in reasons.split("; "))
        return counts.most_common(n)


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


def parse_cells(text: pd.Series, kind: str) -> tuple[pd.Series, pd.Series]:
    """(typed values, why each cell that does not parse as `kind` failed; '' where fine).

    Missing cells (empty, or one of pandas' missing markers such as NA) become nulls; whether
    a null is allowed is the schema's `nullable`, checked afterwards."""
    missing = text.isna() | text.astype(object).str.strip().isin(MISSING_MARKERS)
    present = text.where(~missing).astype(object)
    no_reason = pd.Series("", index=text.index, dtype=object)
    if kind == "categorical":
        return present, no_reason
    if kind == "boolean":
        words = present.str.strip().str.lower()
        values = words.map(lambda w: True if w in TRUE_TEXT else False if w in FALSE_TEXT else None)
        bad = ~missing & values.isna()
        return values.astype("boolean"), no_reason.mask(bad, PARSE_REASONS["boolean"])
    if kind == "integer":
        return parse_integers(present, missing, no_reason)
    numbers = pd.to_numeric(present.str.strip(), errors="coerce").astype("float64")
    reasons = no_reason.mask(~missing & numbers.isna(), PARSE_REASONS[kind])
    infinite = np.isinf(numbers)
    reasons = reasons.mask(infinite, PARSE_REASONS["finite"])
    return numbers.mask(infinite), reasons


def parse_integers(
    present: pd.Series, missing: pd.Series, no_reason: pd.Series
) -> tuple[pd.Series, pd.Series]:
    values = [None if gone else parse_integer(t) for t, gone in zip(present, missing, strict=True)]
    bad = ~missing & pd.Series([v is None for v in values], index=present.index)
    typed = pd.Series(pd.array(values, dtype="Int64"), index=present.index)
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
    columns = schema.columns
    raw = raw.reset_index(drop=True)
    reasons = shape_reasons(raw, len(columns))
    typed, cell_reasons = find_cell_reasons(schema, raw[columns])
    for idx, found in cell_reasons.items():
        reasons.setdefault(idx, []).extend(found)
    bad = raw.index.isin(list(reasons))
    rejected = _rejected_frame(raw[bad], reasons)
    fraction = len(rejected) / len(raw) if len(raw) else 0.0
    if max_reject_fraction is not None and fraction > max_reject_fraction:
        why = (
            f"{QUARANTINE_PREFIX}: {len(rejected)} of {len(raw)} rows rejected "
            f"({fraction:.0%} > max_reject_fraction {max_reject_fraction:.0%})"
        )
        good = _rejected_frame(raw[~bad], {key: [why] for key in raw.index[~bad]})
        whole = pd.concat([rejected, good]).sort_values("line_no", kind="stable")
        return Split(_empty_cleaned(schema), whole.reset_index(drop=True), len(rejected), True)
    cleaned = pd.concat([typed[~bad], raw.loc[~bad, ROW_KEYS]], axis=1).reset_index(drop=True)
    return Split(cleaned, rejected.reset_index(drop=True), len(rejected))


def _rejected_frame(rows: pd.DataFrame, reasons: dict[int, list[str]]) -> pd.DataFrame:
    out = rows.copy()
    out["reason"] = ["; ".join(reasons[int(i)]) for i in rows.index]
    return out


def _empty_cleaned(schema: DatasetSchema) -> pd.DataFrame:
    return pd.DataFrame(columns=[*schema.columns, *ROW_KEYS])

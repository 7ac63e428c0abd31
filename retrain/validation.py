"""Pure cleaning rules: a pandera schema splits raw text rows into cleaned and rejected rows.

No I/O here: DataFrames in, DataFrames out. A raw frame holds the schema's columns as text plus
the bookkeeping columns (`batch_id`, `line_no`, `row_hash`, `n_fields`, `extra_fields`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from retrain.errors import BadInput

ROW_KEYS = ["batch_id", "line_no", "row_hash"]
QUARANTINE_PREFIX = "batch quarantined"


def load_schema(path: Path) -> pa.DataFrameSchema:
    """Read a pandera YAML schema file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise BadInput(f"cannot read schema {path} ({err.strerror}); check RETRAIN_SCHEMA") from err
    try:
        return pa.DataFrameSchema.from_yaml(text)
    except Exception as err:
        raise BadInput(
            f"schema {path} is not a pandera YAML schema ({err}); check RETRAIN_SCHEMA"
        ) from err


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


def describe_check(check: str) -> str:
    """Turn a pandera check name into words a person reads in the rejected table."""
    if check.startswith("coerce_dtype"):
        return f"not a number or wrong type [{check}]"
    if check == "not_nullable":
        return "missing value"
    if check.startswith(("isin", "notin")):
        return f"unknown label [{check}]"
    if check.startswith(("greater", "less", "in_range", "equal", "not_equal")):
        return f"out of bounds [{check}]"
    return f"failed check [{check}]"


def _failures(schema: pa.DataFrameSchema, frame: pd.DataFrame) -> pd.DataFrame:
    """Row-level failure cases of a lazy validation (index, column, check, failure_case)."""
    try:
        schema.validate(frame, lazy=True)
    except SchemaErrors as err:
        cases = err.failure_cases
        return cases[cases["index"].notna()][["index", "column", "check", "failure_case"]]
    return pd.DataFrame(columns=["index", "column", "check", "failure_case"])


def find_cell_reasons(schema: pa.DataFrameSchema, data: pd.DataFrame) -> dict[int, list[str]]:
    """Every reason each row fails the schema, keyed by the frame's index.

    Two passes: values that cannot be converted are reported and blanked first, so the value
    checks of the second pass run on typed columns and report every other failing cell.
    """
    first = _failures(schema, data)
    unconvertible = first[first["check"].str.startswith("coerce_dtype")]
    blanked = data.copy()
    for idx, col in zip(unconvertible["index"], unconvertible["column"], strict=True):
        blanked.at[idx, col] = None
    second = _failures(schema, blanked)
    reasons: dict[int, dict[str, str]] = {}
    for case in pd.concat([unconvertible, first.drop(unconvertible.index), second]).itertuples():
        per_column = reasons.setdefault(int(case.index), {})
        if case.column not in per_column:
            words = f"{case.column}: {describe_check(case.check)}"
            if case.check != "not_nullable":
                words += f" (got {_short(case.failure_case)})"
            per_column[case.column] = words
    return {idx: list(cols.values()) for idx, cols in reasons.items()}


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
    raw: pd.DataFrame, schema: pa.DataFrameSchema, max_reject_fraction: float | None
) -> Split:
    """Split one batch of raw text rows into typed cleaned rows and rejected rows with reasons.

    When more than `max_reject_fraction` of the rows are rejected the whole batch is quarantined:
    every row goes to rejected, the good ones with a reason that starts 'batch quarantined'.
    `None` admits the batch whatever its reject fraction.
    """
    columns = list(schema.columns)
    raw = raw.reset_index(drop=True)
    data = raw[columns].replace({"": None})
    reasons = shape_reasons(raw, len(columns))
    for idx, found in find_cell_reasons(schema, data).items():
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
    typed = schema.validate(data[~bad])
    cleaned = pd.concat([typed, raw.loc[~bad, ROW_KEYS]], axis=1).reset_index(drop=True)
    return Split(cleaned, rejected.reset_index(drop=True), len(rejected))


def _rejected_frame(rows: pd.DataFrame, reasons: dict[int, list[str]]) -> pd.DataFrame:
    out = rows.copy()
    out["reason"] = ["; ".join(reasons[int(i)]) for i in rows.index]
    return out


def _empty_cleaned(schema: pa.DataFrameSchema) -> pd.DataFrame:
    return pd.DataFrame(columns=[*schema.columns, *ROW_KEYS])

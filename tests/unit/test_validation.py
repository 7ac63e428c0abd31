"""The cleaning rules on tiny DataFrames: no database, no mocks."""

from __future__ import annotations

import pandas as pd
import pytest

from retrain.config.dataset_schema import load_dataset_schema
from retrain.config.settings import BUNDLED_SCHEMAS
from retrain.data.cleaning_rules import split_clean_rejected

SCHEMA = load_dataset_schema(BUNDLED_SCHEMAS / "iris.yaml")
COLUMNS = SCHEMA.columns


def raw(rows: list[list[str]], n_fields: list[int] | None = None) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=COLUMNS, dtype=object)
    frame["batch_id"] = "b1"
    frame["line_no"] = range(2, 2 + len(rows))
    frame["row_hash"] = [f"h{i}" for i in range(len(rows))]
    frame["n_fields"] = n_fields or [5] * len(rows)
    frame["extra_fields"] = ""
    return frame


GOOD = ["5.1", "3.5", "1.4", "0.2", "setosa"]


def test_good_rows_are_typed_and_identical_rows_are_kept() -> None:
    split = split_clean_rejected(raw([GOOD, GOOD, ["6", "3", "5", "2", "virginica"]]), SCHEMA, 0.2)
    assert len(split.cleaned) == 3 and split.rejected.empty
    assert split.cleaned["sepal length (cm)"].dtype == "float64"
    assert split.cleaned["sepal length (cm)"].tolist() == [5.1, 5.1, 6.0]
    assert split.cleaned["line_no"].tolist() == [2, 3, 4]


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("abc", "not a number"),
        ("", "missing value"),
        ("-1", "out of bounds"),
        ("inf", "not a finite number"),
        ("nan", "missing value"),
        ("31", "out of bounds"),
    ],
)
def test_each_bad_measurement_is_rejected_with_its_reason(value: str, words: str) -> None:
    bad = [value, "3.5", "1.4", "0.2", "setosa"]
    split = split_clean_rejected(raw([GOOD, bad, GOOD]), SCHEMA, None)
    assert len(split.cleaned) == 2
    assert split.rejected["line_no"].tolist() == [3]
    assert split.rejected["reason"].iloc[0].startswith(f"sepal length (cm): {words}")


def test_a_row_gets_every_reason_it_fails() -> None:
    bad = ["abc", "3.5", "-1", "", "daisy"]
    reason = split_clean_rejected(raw([GOOD, bad, GOOD]), SCHEMA, None).rejected["reason"][0]
    parts = reason.split("; ")
    assert len(parts) == 4
    assert "not a number" in parts[0] and "'abc'" in parts[0]
    assert "petal length (cm): out of bounds" in reason
    assert "petal width (cm): missing value" in reason
    assert "target: unknown label" in reason and "'daisy'" in reason


def test_ragged_rows_are_rejected_with_the_field_count() -> None:
    short = ["5.1", "3.5", "", "", ""]
    split = split_clean_rejected(raw([GOOD, short, GOOD], [5, 2, 7]), SCHEMA, None)
    reasons = dict(zip(split.rejected["line_no"], split.rejected["reason"], strict=True))
    assert reasons[3].startswith("wrong number of fields: expected 5, got 2")
    assert reasons[4] == "wrong number of fields: expected 5, got 7"
    assert len(split.cleaned) == 1


def test_a_batch_over_the_threshold_is_quarantined_whole() -> None:
    rows = [GOOD, ["x", "3.5", "1.4", "0.2", "setosa"], GOOD]
    split = split_clean_rejected(raw(rows), SCHEMA, 0.2)
    assert split.quarantined and split.cleaned.empty and split.failed == 1
    assert split.rejected["line_no"].tolist() == [2, 3, 4]
    held = split.rejected[split.rejected["line_no"] != 3]["reason"]
    assert all(r.startswith("batch quarantined: 1 of 3 rows rejected") for r in held)
    assert split.commonest_reasons()[0][0].startswith("sepal length (cm): not a number")


def test_at_the_threshold_the_batch_is_admitted() -> None:
    rows = [GOOD, ["x", "3.5", "1.4", "0.2", "setosa"]] + [GOOD] * 3
    split = split_clean_rejected(raw(rows), SCHEMA, 0.2)
    assert not split.quarantined and len(split.cleaned) == 4 and len(split.rejected) == 1


def test_every_row_ends_in_exactly_one_side() -> None:
    rows = [GOOD, ["x", "", "-3", "0.2", "rose"], GOOD, ["1", "1", "1", "1", "versicolor"]]
    split = split_clean_rejected(raw(rows), SCHEMA, None)
    lines = sorted([*split.cleaned["line_no"], *split.rejected["line_no"]])
    assert lines == [2, 3, 4, 5]

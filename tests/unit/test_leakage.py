"""The leakage flag on small frames: a date of death filled only for those who died, a copy
of the label in numbers or in categories, and honest features that stay unflagged; and
`ignore` in the schema keeps a column from ever being a feature."""

from __future__ import annotations

import numpy as np
import pandas as pd

from retrain.data.infer_schema import ignore_columns
from retrain.training.leakage import suspected_leaks

KINDS = {"age": "numeric", "death_day": "numeric", "ward": "categorical",
         "billing": "numeric", "code": "categorical"}  # fmt: skip


def patients(rows: int = 600) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    age = rng.normal(60, 10, rows)
    died = np.where(rng.random(rows) < 1 / (1 + np.exp(-(age - 65) / 5)), "yes", "no")
    return pd.DataFrame({
        "age": age,
        "death_day": np.where(died == "yes", rng.integers(1, 30, rows), np.nan),
        "ward": rng.choice(["a", "b", "c"], rows),
        "billing": np.where(died == "yes", 5.0, 1.0) + rng.normal(0, 0.01, rows),
        "code": np.where(died == "yes", "X9", "A1"),
        "died": died,
    })  # fmt: skip


def test_features_that_give_the_label_away_are_named_and_honest_ones_are_not() -> None:
    leaks = {leak.column: leak.reason for leak in suspected_leaks(patients(), KINDS, "died")}
    assert leaks["death_day"] == "filled only for class yes"
    assert leaks["billing"].startswith("AUROC 1.000") and leaks["code"].startswith("AUROC 1.000")
    assert "age" not in leaks and "ward" not in leaks


def test_a_multiclass_copy_of_the_label_is_found_one_vs_rest() -> None:
    frame = patients().assign(died=np.tile(["p", "q", "r"], 200))
    frame["code"] = frame["died"].map({"p": "1", "q": "2", "r": "3"})
    leaks = {
        leak.column
        for leak in suspected_leaks(frame, {"age": "numeric", "code": "categorical"}, "died")
    }
    assert leaks == {"code"}


def test_schema_ignore_marks_a_column_that_then_is_no_feature(tmp_path) -> None:
    from retrain.config.dataset_schema import load_dataset_schema

    path = tmp_path / "s.yaml"
    path.write_text(
        "columns:\n  age: {dtype: float64, nullable: true}\n  death_day: {dtype: float64, "
        "nullable: true}\n  died: {dtype: str, isin: ['no', 'yes']}\n"
        "metadata:\n  retrain: {target: died}\n"
    )
    path.write_text(ignore_columns(path.read_text(), ["death_day"], str(path)))
    schema = load_dataset_schema(path)
    assert schema.features == ["age"] and "death_day" in schema.columns
    again = ignore_columns(path.read_text(), ["death_day"], str(path))
    assert again.count("death_day") == path.read_text().count("death_day")  # once

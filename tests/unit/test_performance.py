"""The realized-performance logic on small frames: a labels file's keys and latest labels,
the realized AUROC per day and version (against scikit-learn), and the degradation verdict."""

from __future__ import annotations

import json
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from retrain.data.features import row_keys
from retrain.errors import BadInput
from retrain.monitoring.performance import (
    DayPerformance,
    daily_performance,
    degradation,
    label_file_rows,
)

NOW = datetime(2026, 12, 6, 3, 0)


def test_an_id_reads_as_the_same_key_from_json_a_csv_and_the_cleaned_table() -> None:
    from_json = pd.DataFrame({"id": [7, 8.0, None], "shop": ["a", "b", "c"]})
    from_csv = pd.DataFrame({"id": ["7", "8", "9"], "shop": ["a", "b", "c"]})
    assert row_keys(from_json, ("id",)) == ["7", "8", None]
    assert row_keys(from_csv, ("id", "shop")) == ["7|a", "8|b", "9|c"]
    assert row_keys(from_csv, ("customer",)) == [None, None, None]  # no id column sent


def test_the_latest_label_per_key_wins_and_what_is_left_out_is_counted() -> None:
    frame = pd.DataFrame(
        {
            "id": ["1", "2", "1", None, "3"],
            "churned": ["no", "yes", "yes", "no", None],
            "labelled_at": ["2026-12-02", "2026-12-02", "2026-12-03T10:00:00Z", "", ""],
        }
    )
    prepared = label_file_rows(frame, ("id",), "churned", NOW)
    rows = prepared.rows.set_index("key")
    assert rows["label"].to_dict() == {"1": "yes", "2": "yes"}
    assert rows.loc["1", "labelled_at"] == datetime(2026, 12, 3, 10, 0)
    assert (prepared.repeated, prepared.incomplete) == (1, 2)
    without_time = label_file_rows(frame.drop(columns="labelled_at"), ("id",), "churned", NOW)
    assert set(without_time.rows["labelled_at"]) == {NOW}


def test_a_labels_file_without_the_ids_or_a_schema_without_ids_is_one_clear_error() -> None:
    frame = pd.DataFrame({"customer": ["1"], "churned": ["no"]})
    with pytest.raises(BadInput, match=r"needs the id column\(s\) \['id'\] or `request_id`"):
        label_file_rows(frame, ("id",), "churned", NOW)
    with pytest.raises(BadInput, match="needs `request_id`"):
        label_file_rows(frame, (), "churned", NOW)
    by_request = pd.DataFrame({"request_id": ["r-1", "r-2"], "churned": ["no", "yes"]})
    assert label_file_rows(by_request, ("id",), "churned", NOW).rows["key"].tolist() == [
        "r-1", "r-2"]  # fmt: skip


def answers(day: str, version: str, proba: list[float], labels: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "predicted_at": pd.Timestamp(day) + pd.Timedelta(hours=1),
            "model_version": version,
            "probabilities": [json.dumps({"no": 1 - p, "yes": p}) for p in proba],
            "label": labels,
        }
    )


def test_realized_auroc_per_day_and_version_is_scikit_learns_on_the_labelled_rows() -> None:
    rng = np.random.default_rng(0)
    proba = rng.random(50).round(4).tolist()
    labels = np.where(rng.random(50) < np.array(proba), "yes", "no").tolist()
    labelled = answers("2026-12-04", "3", proba, labels)
    counts = pd.DataFrame(
        [("2026-12-04", "3", 80), ("2026-12-05", "3", 10)],
        columns=["day", "model_version", "predictions"],
    )
    table = daily_performance(counts, labelled, {"3": 0.9}, "yes", seed=1)
    first, second = table
    assert first.auroc == pytest.approx(roc_auc_score(np.array(labels) == "yes", proba), abs=1e-9)
    assert first.low < first.auroc < first.high
    assert (first.predictions, first.labelled, first.share_labelled) == (80, 50, 50 / 80)
    assert first.holdout_auroc == 0.9 and not first.enough  # 50 rows are too few to count
    assert (second.labelled, second.auroc) == (0, None)


def day(auroc: float, holdout: float = 0.9, enough: bool = True) -> DayPerformance:
    return DayPerformance("2026-12-01", "3", 500, 400, auroc, None, None, holdout, enough)


def test_two_bad_days_of_the_last_five_that_count_mean_degraded() -> None:
    assert not degradation([day(0.89), day(0.87), day(0.90)], margin=0.02).degraded
    verdict = degradation([day(0.85), day(0.89), day(0.86, enough=False), day(0.87)], 0.02)
    assert verdict.degraded and len(verdict.below) == 2 and len(verdict.counted) == 3
    old_bad = [day(0.80), day(0.80)] + [day(0.9)] * 5  # outside the last five
    assert not degradation(old_bad, 0.02).degraded
    assert "no day has enough" in degradation([day(0.5, enough=False)], 0.02).describe()

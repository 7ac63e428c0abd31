"""The prediction log's rows and its per-day summary, on three-row frames."""

from __future__ import annotations

import json
from datetime import date, datetime

import numpy as np
import pandas as pd

from retrain.io.prediction_log import Record
from retrain.monitoring.usage import daily_summaries


def test_a_record_is_one_row_per_input_row_with_json_inputs() -> None:
    inputs = pd.DataFrame({"size": [0.5, np.nan, 2.0], "colour": ["red", None, "blue"]})
    record = Record("r1", datetime(2026, 12, 1, 8), inputs, ["a", "b", "a"], 4.5)
    rows = record.rows("7")
    assert [row["prediction"] for row in rows] == ["a", "b", "a"]
    assert {row["model_version"] for row in rows} == {"7"} and rows[0]["latency_ms"] == 4.5
    assert [json.loads(row["inputs"]) for row in rows] == [
        {"size": 0.5, "colour": "red"},
        {"size": None, "colour": None},
        {"size": 2.0, "colour": "blue"},
    ]


def test_days_count_requests_and_rows_and_latency_per_request() -> None:
    log = pd.DataFrame(
        {
            "predicted_at": pd.to_datetime(
                ["2026-11-30 23:59", "2026-12-01 00:01", "2026-12-01 00:01", "2026-12-01 09:00"]
            ),
            "request_id": ["a", "b", "b", "c"],
            "prediction": ["x", "x", "y", "y"],
            "latency_ms": [10.0, 2.0, 2.0, 6.0],
        }
    )
    first, second = daily_summaries(log)
    assert (first.day, first.requests, first.rows, first.classes) == (
        date(2026, 11, 30), 1, 1, {"x": 1},
    )  # fmt: skip
    assert (second.requests, second.rows, second.classes) == (2, 3, {"x": 1, "y": 2})
    assert second.latency_p50_ms == 4.0  # the median of two requests, not of three rows
    assert second.metrics()["share_y"] == 2 / 3
    assert second.line().startswith("2026-12-01")
    assert daily_summaries(log.iloc[:0]) == []

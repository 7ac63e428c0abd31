"""The rollout guards on small frames of logged answers: no server, store or registry."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from retrain.promotion.guards import (
    Counts,
    GuardLimits,
    difference_interval,
    psi,
    read_guards,
    summarize,
)


def answers(n: int, p_yes: np.ndarray, latency: float = 5.0, labels=None) -> pd.DataFrame:
    """`n` logged one-row requests of a binary model: P(yes) per row, a label where given."""
    return pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(n)],
            "latency_ms": latency,
            "prediction": np.where(p_yes > 0.5, "yes", "no"),
            "probabilities": [json.dumps({"no": 1 - p, "yes": p}) for p in p_yes],
            "label": labels if labels is not None else [None] * n,
        }
    )


def test_psi_is_near_zero_for_the_same_distribution_and_large_for_a_pushed_one() -> None:
    rng = np.random.default_rng(0)
    before = rng.beta(2, 2, 2000)
    assert psi(before, rng.beta(2, 2, 2000)) < 0.02
    assert psi(before[:100], rng.beta(2, 2, 100)) < 0.1  # no empty bin weighs like a shift
    assert psi(before, np.clip(before + 0.3, 0, 1)) > 0.5


def test_a_guard_waits_for_traffic_before_it_judges() -> None:
    p = np.full(5, 0.5)
    readings = read_guards(answers(5, p), answers(5, p), Counts(3, 2), GuardLimits())
    assert [r.judged for r in readings] == [False, False, False, False]
    assert not any(r.breached for r in readings)


def test_errors_latency_and_a_probability_shift_each_breach_their_own_guard() -> None:
    rng = np.random.default_rng(1)
    p = rng.uniform(size=200)
    champion = answers(200, p)
    healthy = read_guards(champion, answers(200, rng.uniform(size=200)), Counts(99, 1),
                          GuardLimits())  # fmt: skip
    assert [r.metric for r in healthy if r.breached] == []
    assert all(r.judged for r in healthy if r.metric != "auroc_drop")
    slow_and_shifted = answers(200, np.clip(p * 0.2 + 0.8, 0, 1), latency=50.0)
    readings = {r.metric: r for r in read_guards(champion, slow_and_shifted, Counts(60, 30),
                                                 GuardLimits())}  # fmt: skip
    assert readings["error_rate"].breached and readings["error_rate"].value == 30 / 90
    assert readings["p95_ms"].breached and readings["p95_ms"].value == 50.0
    assert readings["p95_ms"].limit == 2.0 * 5.0 + 25.0
    assert readings["psi"].breached and readings["psi"].value > 1


def test_realized_auroc_decides_once_labels_came_for_enough_rows() -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 400)
    labels = np.where(y == 1, "yes", "no")
    good = answers(400, np.clip(y * 0.6 + rng.uniform(0, 0.4, 400), 0, 1), labels=labels)
    coin = answers(400, rng.uniform(size=400), labels=labels)
    readings = {r.metric: r for r in read_guards(good, coin, Counts(400, 0), GuardLimits(),
                                                 "yes")}  # fmt: skip
    assert readings["auroc_drop"].judged and readings["auroc_drop"].value > 0.3
    assert readings["auroc_drop"].breached
    point, low, high = difference_interval(good, coin, "yes")
    assert low <= point <= high < 0


def test_a_summary_counts_requests_once_and_rows_each() -> None:
    frame = answers(4, np.array([0.9, 0.9, 0.2, 0.1])).assign(request_id=["a", "a", "b", "c"])
    summary = summarize(frame, "3", "canary", Counts(3, 1))
    assert (summary.requests, summary.rows, summary.error_rate) == (3, 4, 0.25)
    assert summary.class_shares == {"no": 0.5, "yes": 0.5}
    assert summary.auroc is None and summary.labelled == 0

"""Drift verdicts on generated frames: a batch shifted on purpose drifts, a fresh sample of the
same distribution does not, at small and at large sizes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from retrain.monitoring.drift import batch_drift

KINDS = {"amount": "numeric", "visits": "integer", "plan": "categorical", "member": "boolean"}


def rows(n: int, seed: int, shift: float = 0.0, plans=("basic", "plus", "pro")) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "amount": rng.normal(100 + shift * 30, 20, n),
            "visits": pd.array(rng.poisson(5, n), dtype="Int64"),
            "plan": rng.choice(plans, n, p=[0.6, 0.3, 0.1]),
            "member": pd.array(rng.random(n) < 0.4, dtype="boolean"),
        }
    )
    frame.loc[frame.sample(frac=0.02, random_state=seed).index, "amount"] = np.nan
    return frame


@pytest.mark.parametrize("n", [300, 20_000])
def test_a_fresh_sample_of_the_same_rows_does_not_drift(n: int) -> None:
    report = batch_drift(rows(n, 1), rows(n, 2), KINDS)
    assert report.drifted_columns == [] and report.drift_share == 0.0


@pytest.mark.parametrize("n", [300, 20_000])
def test_a_shifted_amount_and_a_new_plan_drift(n: int) -> None:
    shifted = rows(n, 2, shift=1.0, plans=("basic", "enterprise", "pro"))
    report = batch_drift(rows(n, 1), shifted, KINDS)
    assert report.drifted_columns == ["amount", "plan"] and report.drift_share == 0.5
    assert "2 of 4 features drifted" in report.describe()
    assert "<td>amount</td>" in report.html("drift") and len(report.table()) == 4


def test_a_column_gone_missing_drifts() -> None:
    current = rows(300, 2)
    current["amount"] = np.nan
    assert batch_drift(rows(300, 1), current, KINDS).drifted_columns == ["amount"]

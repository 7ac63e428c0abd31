"""What a holdout promises for tomorrow, checked against the champion's last promise: pure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from retrain.training.families import enough_to_judge
from retrain.training.tomorrow import ChampionCheck, expected_auroc, rows_after, trained_through


def test_trained_through_is_the_newest_time_and_rows_after_are_strictly_newer() -> None:
    rows = pd.DataFrame({"seen": ["2026-11-02 10:00", "2026-11-03", None, "2026-11-01"]})
    through = trained_through(rows, "seen")
    assert through == "2026-11-03T00:00:00+00:00"
    later = pd.DataFrame({"seen": ["2026-11-03", "2026-11-03 00:00:01", None, "2026-11-04"]})
    assert rows_after(later, "seen", through).index.tolist() == [1, 3]  # equal time: seen
    assert trained_through(pd.DataFrame({"seen": [None, None]}), "seen") is None


def test_a_check_counts_only_with_enough_rows_of_every_class() -> None:
    classes = np.array(["no", "yes"])
    assert enough_to_judge(np.array(["no"] * 180 + ["yes"] * 20), classes)
    assert not enough_to_judge(np.array(["no"] * 181 + ["yes"] * 19), classes)  # 19 "yes"
    assert not enough_to_judge(np.array(["no"] * 150 + ["yes"] * 40), classes)  # 190 rows
    assert not enough_to_judge(np.array(["no"] * 300), classes)  # one class


def test_the_expected_auroc_is_the_holdout_less_the_last_overstatement() -> None:
    check = ChampionCheck("4", logged=0.93, unseen=0.91, rows=20_000, through="2026-01-03")
    expected, basis = expected_auroc(0.92, check)
    assert expected == pytest.approx(0.90) and check.gap == pytest.approx(0.02)
    assert "version 4's holdout AUROC 0.9300, then 0.9100 on 20000 rows" in basis
    modest = ChampionCheck("4", logged=0.88, unseen=0.90, rows=500, through="2026-01-03")
    assert expected_auroc(0.92, modest)[0] == pytest.approx(0.94)  # it under-promised: raise
    assert expected_auroc(0.99, modest)[0] == 1.0  # never above 1
    assert expected_auroc(0.92, None) == (0.92, expected_auroc(0.5, None)[1])

"""What a holdout AUROC promises for tomorrow's rows, checked against the last promise: pure.

A holdout, even the newest rows, measures the past. On a table whose rows grow harder to
predict night after night (measured on bench/drift_stream.py: the out-of-time holdout
overstated the next night by 0.015 on average, every night the same way), the honest guess
for tomorrow is the holdout AUROC less by how much the champion's own holdout AUROC
overstated its AUROC on the rows that came after it was trained. Each night's new batch
carries its labels, so that check needs no served traffic: the champion (as served, refit
included) is scored on the cleaned rows newer than the newest row it was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from retrain.data.split import as_times


def trained_through(rows: pd.DataFrame, time_column: str) -> str | None:
    """The newest time among the rows a model was fit on (ISO, UTC), for its version's tag."""
    newest = as_times(rows[time_column]).max()
    return None if pd.isna(newest) else newest.isoformat()


def rows_after(frame: pd.DataFrame, time_column: str, through: str) -> pd.DataFrame:
    """The rows strictly newer than `through` (a `trained_through` value)."""
    stamps = as_times(frame[time_column])
    return frame[(stamps > pd.Timestamp(through)).fillna(False).to_numpy(dtype=bool)]


@dataclass(frozen=True)
class ChampionCheck:
    """The champion's holdout AUROC as logged the night it was tuned, and its AUROC on the
    `rows` cleaned rows newer than `through`, the newest row it was trained on."""

    version: str
    logged: float
    unseen: float
    rows: int
    through: str

    @property
    def gap(self) -> float:
        """How much the champion's holdout promised over what it then delivered."""
        return self.logged - self.unseen

    def describe(self) -> str:
        return (
            f"version {self.version}'s holdout AUROC {self.logged:.4f}, then {self.unseen:.4f} "
            f"on {self.rows} rows newer than {self.through} (it overstated by {self.gap:+.4f})"
        )


def expected_auroc(test_auroc: float, check: ChampionCheck | None) -> tuple[float, str]:
    """(the AUROC to expect on tomorrow's rows, how it was reached): the holdout AUROC less
    the champion's last overstatement, or the holdout AUROC itself when there is no check."""
    if check is None:
        return test_auroc, "the holdout AUROC: no champion has met rows newer than its training"
    expected = float(np.clip(test_auroc - check.gap, 0.0, 1.0))
    return expected, f"holdout AUROC {test_auroc:.4f} less the last overstatement: " + (
        check.describe()
    )

"""The scores table on the real stores (SQLite and MariaDB): scoring a file again replaces its
rows, and a write that fails part-way leaves the table as it was."""

from __future__ import annotations

import uuid

import pandas as pd
import pytest
from sqlalchemy import func, select

from retrain.errors import BadInput, RetrainError
from retrain.io import scores_table
from retrain.io.engines import make_engine, now_utc

pytestmark = pytest.mark.integration


def part(digest: str, labels: list[str | None], first: int = 2) -> pd.DataFrame:
    n = len(labels)
    return pd.DataFrame(
        {"source_digest": [digest] * n, "line_no": range(first, first + n), "label": labels,
         "proba_a": [0.25] * n, "proba_b": [0.75] * n}
    )  # fmt: skip


def counts(engine, table) -> dict[str, int]:
    query = select(table.c.source_digest, func.count()).group_by(table.c.source_digest)
    with engine.connect() as conn:
        return dict(conn.execute(query).all())


def test_a_second_scoring_replaces_a_file_s_rows_and_a_failed_one_changes_nothing(
    db_url: str,
) -> None:
    engine = make_engine(db_url)
    table = scores_table.scores_table(f"t{uuid.uuid4().hex[:10]}_scores", ["a", "b"])
    scores_table.check_scores_table(engine, table)
    constants = {"model_version": "1", "scored_at": now_utc()}
    scores_table.replace_scores(engine, table, ["d1"], [part("d1", ["a"] * 3)], constants, 2)
    scores_table.replace_scores(engine, table, ["d2"], [part("d2", ["b"] * 4)], constants, 2)
    assert counts(engine, table) == {"d1": 3, "d2": 4}
    scores_table.replace_scores(engine, table, ["d1"], [part("d1", ["b", "b"])], constants, 2)
    assert counts(engine, table) == {"d1": 2, "d2": 4}
    broken = [part("d1", ["a"] * 5), part("d1", [None], first=7)]  # a label is missing
    with pytest.raises(RetrainError):
        scores_table.replace_scores(engine, table, ["d1"], broken, constants, 2)
    assert counts(engine, table) == {"d1": 2, "d2": 4}
    with pytest.raises(BadInput, match="pass --output with a new table name"):
        scores_table.check_scores_table(
            engine, scores_table.scores_table(table.name, ["a", "b", "c"])
        )

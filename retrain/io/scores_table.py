"""The scores table `<dataset>_scores` (SQLAlchemy adapter): one row per scored source row,
keyed by the source file's digest and the row's line, so scoring a file again replaces its
rows instead of adding to them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd
from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    delete,
    inspect,
)

from retrain.errors import BadInput
from retrain.io.engines import reporting_errors
from retrain.io.store import LONG_TEXT, check_names, insert_frame

KEYS = ["source_digest", "line_no"]


def proba_columns(classes: Sequence[object]) -> list[str]:
    """The probability columns, as the model names them in its answer."""
    return [f"proba_{c}" for c in classes]


def scores_table(name: str, classes: Sequence[object]) -> Table:
    """Build (not create) the table: keys, label, a probability per class, version, time."""
    probas = proba_columns(classes)
    check_names(probas)
    return Table(
        name,
        MetaData(),
        Column("source_digest", String(16), primary_key=True),
        Column("line_no", Integer, primary_key=True, autoincrement=False),
        Column("label", LONG_TEXT, nullable=False),
        *[Column(p, Float(53), nullable=False) for p in probas],
        Column("model_version", String(32), nullable=False),
        Column("scored_at", DateTime, nullable=False),
        mysql_charset="utf8mb4",
        mariadb_charset="utf8mb4",
    )


def check_scores_table(engine: Engine, table: Table) -> None:
    """Create the table when missing; refuse one whose columns differ (other classes)."""
    table.metadata.create_all(engine, checkfirst=True)
    found = [c["name"] for c in inspect(engine).get_columns(table.name)]
    if sorted(found) != sorted(c.name for c in table.columns):
        raise BadInput(
            f"table {table.name} has columns {found}, but this model answers "
            f"{[c.name for c in table.columns]}; pass --output with a new table name, or "
            f"drop {table.name}"
        )


def replace_scores(
    engine: Engine,
    table: Table,
    digests: Iterable[str],
    parts: Iterable[pd.DataFrame],
    constants: dict[str, object],
    chunk_rows: int,
) -> int:
    """Delete the rows of these source files and insert the new ones, in one transaction: a
    failed write leaves the table as it was. `parts` are frames of keys, label and
    probabilities; `constants` (model version, time) are the same for every row."""
    with reporting_errors(engine), engine.begin() as conn:
        conn.execute(delete(table).where(table.c.source_digest.in_(list(digests))))
        return sum(insert_frame(conn, table, part, chunk_rows, constants) for part in parts)

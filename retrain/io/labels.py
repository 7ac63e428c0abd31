"""Ground truth that arrives late (SQLAlchemy adapter): `<dataset>_labels`, one row per `key`
(the schema's id columns joined by `|`, or a `request_id` of the prediction log), the last
label known for it, when it was labelled, and how many times a label came for it. Joined to
the prediction log on its `row_key` or its `request_id` for the served model's realized
AUROC."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    func,
    insert,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects import mysql

from retrain.io.engines import reporting_errors
from retrain.io.prediction_log import open_table, predictions_table

if TYPE_CHECKING:
    import pandas as pd

MICROSECONDS = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
LOOKUP_KEYS = 1000  # keys per IN (...) lookup


def labels_table(dataset: str) -> Table:
    return Table(
        f"{dataset}_labels",
        MetaData(),
        Column("key", String(255), primary_key=True),
        Column("label", String(255), nullable=False),
        Column("labelled_at", MICROSECONDS, nullable=False),
        Column("times_labelled", Integer, nullable=False),
        Column("loaded_at", MICROSECONDS, nullable=False),
        mysql_charset="utf8mb4",
    )


@dataclass(frozen=True)
class LabelsWritten:
    """What one load did: labels new to the table, labels that replaced an older one, labels
    older than the one kept (ignored), and loaded keys no logged prediction has (kept)."""

    new: int
    replaced: int
    stale: int
    unmatched: int


def write_labels(
    engine: Engine, dataset: str, frame: pd.DataFrame, loaded_at: datetime
) -> LabelsWritten:
    """Upsert `frame` (key, label, labelled_at; one row per key) in one transaction: the
    label with the latest `labelled_at` wins, a tie goes to the newer load."""
    table = labels_table(dataset)
    with reporting_errors(engine), engine.begin() as conn:
        table.create(conn, checkfirst=True)
        known = dict(known_labels(conn, table, frame["key"].tolist()))
        fresh = frame[~frame["key"].isin(known.keys())]
        seen = frame[frame["key"].isin(known.keys())]
        newer = seen[seen["labelled_at"] >= seen["key"].map(known)]
        insert_new(conn, table, fresh, loaded_at)
        replace_older(conn, table, newer, loaded_at)
    unmatched = count_unmatched(engine, dataset, frame["key"].tolist())
    return LabelsWritten(len(fresh), len(newer), len(seen) - len(newer), unmatched)


def known_labels(conn: Connection, table: Table, keys: list[str]) -> Iterator[tuple[str, datetime]]:
    """(key, labelled_at) of the keys the table already holds."""
    for start in range(0, len(keys), LOOKUP_KEYS):
        chunk = keys[start : start + LOOKUP_KEYS]
        query = select(table.c.key, table.c.labelled_at).where(table.c.key.in_(chunk))
        yield from conn.execute(query)


def insert_new(conn: Connection, table: Table, frame: pd.DataFrame, loaded_at: datetime) -> None:
    rows = [
        {"key": k, "label": v, "labelled_at": at, "times_labelled": 1, "loaded_at": loaded_at}
        for k, v, at in zip(frame["key"], frame["label"], frame["labelled_at"], strict=True)
    ]
    if rows:
        conn.execute(insert(table), rows)


def replace_older(conn: Connection, table: Table, frame: pd.DataFrame, loaded_at: datetime) -> None:
    statement = (
        update(table)
        .where(table.c.key == bindparam("old_key"))
        .values(
            label=bindparam("new_label"), labelled_at=bindparam("at"),
            times_labelled=table.c.times_labelled + 1, loaded_at=loaded_at,
        )
    )  # fmt: skip
    rows = [
        {"old_key": k, "new_label": v, "at": at}
        for k, v, at in zip(frame["key"], frame["label"], frame["labelled_at"], strict=True)
    ]
    if rows:
        conn.execute(statement, rows)


def count_unmatched(engine: Engine, dataset: str, keys: list[str]) -> int:
    """How many of `keys` no row of the prediction log carries (as row key or request id)."""
    log = predictions_table(dataset)
    open_table(engine, log)
    matched: set[str] = set()
    with engine.connect() as conn:
        for start in range(0, len(keys), LOOKUP_KEYS):
            chunk = keys[start : start + LOOKUP_KEYS]
            for column in (log.c.row_key, log.c.request_id):
                matched |= set(conn.execute(select(column).where(column.in_(chunk))).scalars())
    return len(keys) - len(matched)


LABELLED_COLUMNS = ("predicted_at", "model_version", "probabilities", "label")
COUNT_COLUMNS = ("day", "model_version", "predictions")


def read_labelled_answers(engine: Engine, dataset: str, since: datetime) -> list[tuple]:
    """The prediction log's rows since `since` that a label has come for, each with that
    label (LABELLED_COLUMNS): joined on the row key, or else on the request id (a one-row
    request labelled by its `request_id`); inner joins, so unlabelled answers stay in the
    store."""
    log, labels = predictions_table(dataset), labels_table(dataset)
    columns = (log.c.predicted_at, log.c.model_version, log.c.probabilities, labels.c.label)
    by_row = select(*columns).select_from(log.join(labels, log.c.row_key == labels.c.key))
    by_request = (
        select(*columns)
        .select_from(log.join(labels, log.c.request_id == labels.c.key))
        .where(log.c.row_key.is_(None))
    )
    query = union_all(
        by_row.where(log.c.predicted_at >= since), by_request.where(log.c.predicted_at >= since)
    )
    with reporting_errors(engine):
        open_tables(engine, log, labels)
        with engine.connect() as conn:
            return list(conn.execute(query))


def count_answers(engine: Engine, dataset: str, since: datetime) -> list[tuple]:
    """(day, model_version, rows answered) since `since`, counted by the store."""
    log = predictions_table(dataset)
    day = func.date(log.c.predicted_at)
    query = (
        select(day, log.c.model_version, func.count())
        .where(log.c.predicted_at >= since)
        .group_by(day, log.c.model_version)
    )
    with reporting_errors(engine):
        open_table(engine, log)
        with engine.connect() as conn:
            return [(str(d), str(v), int(n)) for d, v, n in conn.execute(query)]


def open_tables(engine: Engine, log: Table, labels: Table) -> None:
    open_table(engine, log)
    with engine.begin() as conn:
        labels.create(conn, checkfirst=True)


ANSWER_COLUMNS = ("request_id", "model_version", "role", "prediction", "latency_ms",
                  "probabilities", "label")  # fmt: skip


def read_answers(
    engine: Engine, dataset: str, since: datetime, until: datetime | None = None
) -> list[tuple]:
    """Every row the prediction log holds in [since, until) (ANSWER_COLUMNS), each with its
    label where one came (joined on the row key; NULL where none did): what a rollout
    compares."""
    log, labels = predictions_table(dataset), labels_table(dataset)
    query = (
        select(log.c.request_id, log.c.model_version, log.c.role, log.c.prediction,
               log.c.latency_ms, log.c.probabilities, labels.c.label)
        .select_from(log.outerjoin(labels, log.c.row_key == labels.c.key))
        .where(log.c.predicted_at >= since)
    )  # fmt: skip
    if until is not None:
        query = query.where(log.c.predicted_at < until)
    with reporting_errors(engine):
        open_tables(engine, log, labels)
        with engine.connect() as conn:
            return list(conn.execute(query))

"""The served model's prediction log (SQLAlchemy adapter): one row per input row it answered,
in `<dataset>_predictions`.

The request path only appends a record to a bounded in-memory queue; one daemon thread turns
records into rows and inserts them in batches. A store that is down is retried with backoff
while records keep queueing; when the queue is full, new records are dropped and counted
(`dropped` rows), and the serving log says how many when the store is back. A request never waits
on the store.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    insert,
    select,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.exc import DataError, IntegrityError

from retrain.io.engines import add_missing_columns, make_engine, now_utc, reporting_errors

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)
COLUMNS = ("request_id", "predicted_at", "model_version", "inputs", "prediction", "latency_ms")
MICROSECONDS = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
LONG_TEXT = Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")


def predictions_table(dataset: str) -> Table:
    """`<dataset>_predictions`: an id, then DESIGN.md's columns; indexed by time."""
    name = f"{dataset}_predictions"
    return Table(
        name,
        MetaData(),
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
        Column("request_id", String(36), nullable=False),
        Column("predicted_at", MICROSECONDS, nullable=False),
        Column("model_version", String(32), nullable=False),
        Column("inputs", LONG_TEXT, nullable=False),
        Column("prediction", String(255), nullable=False),
        Column("latency_ms", Float, nullable=False),
        # added in 0.3, nullable so an older table migrates by ALTER TABLE: the row's id key
        # (late labels join on it) and the answered probabilities (the realized AUROC)
        Column("row_key", String(255), nullable=True),
        Column("probabilities", Text, nullable=True),
        # added in 0.4: the answering version's role (champion, canary, shadow, ab); NULL in
        # rows an older release wrote, which the champion answered
        Column("role", String(16), nullable=True),
        Index(f"ix_{name}_at", "predicted_at"),
        Index(f"ix_{name}_key", "row_key"),
        mysql_charset="utf8mb4",
    )


@dataclass(frozen=True)
class Record:
    """What one request answered, as the request path hands it over (no formatting yet)."""

    request_id: str
    predicted_at: datetime
    inputs: pd.DataFrame
    predictions: list[Any]
    latency_ms: float
    keys: list[str | None] | None = None
    probabilities: dict[str, list[float]] | None = None  # per class, one value per row

    def rows(self, version: str, role: str = "champion") -> list[dict[str, Any]]:
        texts = self.inputs.to_json(orient="records", lines=True, date_format="iso")
        n = len(self.predictions)
        keys = self.keys or [None] * n
        return [
            {
                "request_id": self.request_id,
                "predicted_at": self.predicted_at,
                "model_version": version,
                "inputs": line,
                "prediction": str(label)[:255],
                "latency_ms": self.latency_ms,
                "row_key": key[:255] if key else None,
                "probabilities": self.probabilities_of(i),
                "role": role,
            }
            for i, (line, label, key) in enumerate(
                zip(texts.splitlines(), self.predictions, keys, strict=True)
            )
        ]

    def probabilities_of(self, row: int) -> str | None:
        if not self.probabilities:
            return None
        return json.dumps({c: float(p[row]) for c, p in self.probabilities.items()})


@dataclass
class PredictionLog:
    """The queue and its writer thread for one served model process."""

    database_url: str
    dataset: str
    model_version: str
    capacity: int = 10_000
    role: str = "champion"  # what the answering version is for (champion, canary, shadow, ab)
    batch_records: int = 500
    flush_seconds: float = 0.5
    dropped: int = 0
    written: int = 0
    store_up: bool = True  # False while the writer retries a batch the store refused
    records: queue.Queue = field(init=False)

    def __post_init__(self) -> None:
        self.records = queue.Queue(maxsize=self.capacity)
        self.table = predictions_table(self.dataset)
        self.writer = threading.Thread(
            target=self.write_forever, name="prediction-log", daemon=True
        )
        self.writer.start()
        atexit.register(self.drain)

    def add(self, record: Record) -> None:
        """Hand a record over without waiting; a full queue drops it and counts its rows."""
        try:
            self.records.put_nowait(record)
        except queue.Full:
            self.dropped += len(record.predictions)

    def write_forever(self) -> None:
        engine, pause, dropped_before, ready = make_engine(self.database_url), 0.0, 0, False
        while True:
            batch = self.take_batch()
            while batch:
                try:
                    ready = ready or open_table(engine, self.table)
                    self.written += write_rows(
                        engine, self.table, batch, self.model_version, self.role
                    )
                    self.store_up = True
                    batch = self.settle(batch)
                except (DataError, IntegrityError, ValueError, TypeError) as err:
                    log.error("prediction log: %d records cannot be written (retrying cannot "
                              "help): %s", len(batch), str(err).splitlines()[0][:200])  # fmt: skip
                    self.dropped += sum(len(record.predictions) for record in batch)
                    batch = self.settle(batch)
                except Exception as err:  # the writer must outlive any store failure
                    self.store_up = False
                    pause = min(max(pause * 2, 0.5), 5.0)
                    log.warning("prediction log: store unavailable (%s); retry in %.1f s",
                                str(err).splitlines()[0][:200], pause)  # fmt: skip
                    time.sleep(pause)
            if self.dropped != dropped_before:
                log.warning("prediction log: %d rows dropped so far (queue full)", self.dropped)
                dropped_before = self.dropped
            pause = 0.0

    def drain(self, timeout: float = 5.0) -> None:
        """At exit (a swap stops the old server with SIGTERM): give the writer `timeout`
        seconds to write what is queued; what is left then is counted as dropped."""
        deadline = time.monotonic() + timeout
        while self.records.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.05)
        left = list(self.records.queue)
        if left:
            self.dropped += sum(len(record.predictions) for record in left)
            log.warning("prediction log: %d rows not written at exit", self.dropped)

    def settle(self, batch: list[Record]) -> list[Record]:
        """Mark a batch done (written or given up); returns the empty batch."""
        for _ in batch:
            self.records.task_done()
        return []

    def take_batch(self) -> list[Record]:
        """Wait for one record, then take what else arrives within `flush_seconds`."""
        batch = [self.records.get()]
        deadline = time.monotonic() + self.flush_seconds
        while len(batch) < self.batch_records:
            with contextlib.suppress(queue.Empty):
                batch.append(self.records.get(timeout=max(deadline - time.monotonic(), 0)))
                continue
            break
        return batch


def open_table(engine: Engine, table: Table) -> bool:
    """Create the log table, or migrate one an older release made (new nullable columns)."""
    with engine.begin() as conn:
        table.create(conn, checkfirst=True)
    add_missing_columns(engine, table)
    return True


def write_rows(
    engine: Engine, table: Table, batch: list[Record], version: str, role: str = "champion"
) -> int:
    """Insert the rows of a batch of records in one transaction; returns the row count."""
    rows = [row for record in batch for row in record.rows(version, role)]
    with engine.begin() as conn:
        table.create(conn, checkfirst=True)
        conn.execute(insert(table), rows)
    return len(rows)


def read_answered_after(
    engine: Engine, dataset: str, version: str, after_id: int, limit: int
) -> list[tuple[int, str, str, str]]:
    """(id, request_id, inputs, prediction) of the rows `version` answered as champion with
    an id above `after_id`, oldest first, at most `limit`: what a shadow replays, in order."""
    table = predictions_table(dataset)
    champion = table.c.role.is_(None) | (table.c.role == "champion")
    query = (
        select(table.c.id, table.c.request_id, table.c.inputs, table.c.prediction)
        .where(table.c.id > after_id, table.c.model_version == version, champion)
        .order_by(table.c.id)
        .limit(limit)
    )
    with reporting_errors(engine), engine.connect() as conn:
        return [(int(i), str(r), str(t), str(label)) for i, r, t, label in conn.execute(query)]


def read_window(
    engine: Engine, dataset: str, since: datetime, until: datetime | None = None
) -> Iterator[tuple]:
    """(predicted_at, request_id, prediction, latency_ms) of rows logged in [since, until)."""
    table = predictions_table(dataset)
    columns = [table.c.predicted_at, table.c.request_id, table.c.prediction, table.c.latency_ms]
    query = select(*columns).where(table.c.predicted_at >= since)
    if until is not None:
        query = query.where(table.c.predicted_at < until)
    with reporting_errors(engine), engine.connect() as conn:
        table.create(conn, checkfirst=True)
        conn.commit()
        yield from conn.execute(query)


def prune_older_than(engine: Engine, dataset: str, days: int) -> int:
    """Delete rows logged more than `days` days ago; returns how many went."""
    table = predictions_table(dataset)
    cutoff = now_utc() - timedelta(days=days)
    with reporting_errors(engine), engine.begin() as conn:
        table.create(conn, checkfirst=True)
        return conn.execute(delete(table).where(table.c.predicted_at < cutoff)).rowcount


def utc_now() -> datetime:
    """Naive UTC with microseconds (the log tells requests of one second apart)."""
    return datetime.now(UTC).replace(tzinfo=None)

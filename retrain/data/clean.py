"""Clean: split each pending batch of raw rows into cleaned and rejected, in one transaction."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, Engine

from retrain.config.dataset_schema import DatasetSchema
from retrain.data.cleaning_rules import Tally, quarantined_rows, split_rows
from retrain.io import engines, store
from retrain.io.store import DatasetTables


@dataclass(frozen=True)
class BatchReport:
    """What cleaning one batch did."""

    batch_id: str
    cleaned: int
    rejected: int
    failed: int
    quarantined: bool
    top_reasons: list[tuple[str, int]]

    def describe(self) -> str:
        total = self.cleaned + self.rejected
        if self.quarantined:
            reasons = "; ".join(f"{why} x{n}" for why, n in self.top_reasons)
            return (
                f"batch {self.batch_id} quarantined: {self.failed} of {total} rows failed "
                f"validation (commonest: {reasons})"
            )
        return f"batch {self.batch_id}: {self.cleaned} cleaned, {self.rejected} rejected"


def clean_batch(
    engine: Engine,
    tables: DatasetTables,
    schema: DatasetSchema,
    batch_id: str,
    max_reject_fraction: float | None,
    chunk_rows: int = store.DEFAULT_CHUNK_ROWS,
) -> BatchReport:
    """Clean one batch, `chunk_rows` raw rows at a time (memory does not grow with the batch);
    its previous results (if any) are replaced in the same transaction.

    Cleaned rows are written typed (missing values as NULL); a database that refuses them
    fails the batch whole (StageFailed) and leaves both tables as they were. Whether the batch
    is quarantined is decided on the whole batch: then its cleaned rows are taken back out
    and its good rows written to rejected with the batch's reason, chunk by chunk again."""
    tally = Tally()
    with engines.reporting_errors(engine), engine.begin() as conn:
        store.create_tables(conn, tables)
        store.delete_batch_results(conn, tables, batch_id)
        for raw in store.read_raw_chunks(conn, tables, batch_id, chunk_rows):
            split = split_rows(raw, schema)
            store.insert_frame(conn, tables.cleaned, split.cleaned, chunk_rows)
            store.insert_frame(conn, tables.rejected, split.rejected, chunk_rows)
            tally.add(raw, split)
        quarantined = tally.over(max_reject_fraction)
        if quarantined:
            quarantine_batch(conn, tables, batch_id, tally, max_reject_fraction, chunk_rows)
    cleaned = 0 if quarantined else tally.rows - tally.failed
    return BatchReport(
        batch_id,
        cleaned,
        tally.rows - cleaned,
        tally.failed,
        quarantined,
        tally.reasons.most_common(3),
    )


def quarantine_batch(
    conn: Connection,
    tables: DatasetTables,
    batch_id: str,
    tally: Tally,
    max_reject_fraction: float,
    chunk_rows: int,
) -> None:
    """Move a batch's good rows from cleaned to rejected, each with the batch's reason."""
    store.delete_rows(conn, tables.cleaned, batch_id)
    why = tally.quarantine_reason(max_reject_fraction)
    bad = tally.bad_lines()
    for raw in store.read_raw_chunks(conn, tables, batch_id, chunk_rows):
        good = raw[~raw["line_no"].isin(bad)]
        store.insert_frame(conn, tables.rejected, quarantined_rows(good, why), chunk_rows)

"""Clean: split each pending batch of raw rows into cleaned and rejected, in one transaction."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from retrain import store
from retrain.schema import DatasetSchema
from retrain.store import DatasetTables
from retrain.validation import split_clean_rejected


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
    """Clean one batch; its previous results (if any) are replaced in the same transaction.

    Cleaned rows are written typed (missing values as NULL); a database that refuses them
    fails the batch whole (StageFailed) and leaves both tables as they were."""
    with store.reporting_errors(engine), engine.begin() as conn:
        store.create_tables(conn, tables)
        raw = store.read_raw_batch(conn, tables, batch_id)
        split = split_clean_rejected(raw, schema, max_reject_fraction)
        store.delete_batch_results(conn, tables, batch_id)
        store.insert_frame(conn, tables.cleaned, split.cleaned, chunk_rows)
        store.insert_frame(conn, tables.rejected, split.rejected, chunk_rows)
    return BatchReport(
        batch_id,
        len(split.cleaned),
        len(split.rejected),
        split.failed,
        split.quarantined,
        split.commonest_reasons(),
    )

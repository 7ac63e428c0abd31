"""Ingest: load source files into `<dataset>_raw`, one batch per file, whole or not at all."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from retrain.io import engines, source_files, store
from retrain.io.load_data_files import source_chunks
from retrain.io.store import DatasetTables


@dataclass(frozen=True)
class LoadReport:
    """What loading one file did."""

    path: str
    batch_id: str
    rows: int
    already_loaded: bool

    def describe(self) -> str:
        if self.already_loaded:
            return f"{self.path}: already loaded as batch {self.batch_id}; nothing added"
        return f"{self.path}: loaded {self.rows} rows as batch {self.batch_id}"


def load_file(
    engine: Engine,
    tables: DatasetTables,
    path: Path,
    encoding: str,
    chunk_rows: int = store.DEFAULT_CHUNK_ROWS,
) -> LoadReport:
    """Load one CSV file as one batch, in one transaction; a file loaded before adds nothing."""
    src = source_files.open_source(path, encoding, tables.columns)
    with engines.reporting_errors(engine), engine.begin() as conn:
        store.create_tables(conn, tables)
        if store.is_batch_loaded(conn, tables, src.batch_id):
            return LoadReport(str(path), src.batch_id, 0, already_loaded=True)
        columns = [*tables.columns, "line_no", "row_hash", "n_fields", "extra_fields"]
        constants = {"batch_id": src.batch_id, "loaded_at": engines.now_utc()}
        if engines.is_mysql(conn):
            with tempfile.TemporaryDirectory(prefix="retrain-load-") as tmp:
                chunks = source_chunks(src, tables.columns, chunk_rows, Path(tmp))
                rows = store.load_chunks(conn, tables.raw, columns, chunks, constants)
        else:
            records = source_files.iter_records(src, tables.columns)
            rows = store.bulk_insert(conn, tables.raw, columns, records, chunk_rows, constants)
        conn.execute(
            tables.batches.insert().values(
                batch_id=src.batch_id,
                source=str(path)[-1024:],
                n_rows=rows,
                loaded_at=engines.now_utc(),
            )
        )
    return LoadReport(str(path), src.batch_id, rows, already_loaded=False)

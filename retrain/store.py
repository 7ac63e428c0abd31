"""The data store adapter (SQLAlchemy): table definitions, bulk loading, batch bookkeeping.

Every function takes its engine or connection as an argument. MySQL/MariaDB gets the server's
own bulk path (LOAD DATA LOCAL INFILE of prepared chunk files); other databases get SQLAlchemy
Core inserts with bound parameters. Identifiers are always quoted by SQLAlchemy.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import pandas as pd
import pandera.pandas as pa
from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import InterfaceError, OperationalError

from retrain.chunkfiles import chunked, write_chunks
from retrain.errors import BadInput, StoreUnreachable
from retrain.settings import DEFAULT_CHUNK_ROWS, Settings
from retrain.validation import ROW_KEYS

LONG_TEXT = Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
ROW_META = ROW_KEYS
RAW_EXTRA = ["n_fields", "extra_fields"]
RESERVED = {*ROW_META, *RAW_EXTRA, "loaded_at", "reason"}


@cache
def make_engine(url: str) -> Engine:
    """One engine per URL and process; MySQL with LOCAL INFILE on, SQLite with WAL and a wait."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 60})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() in ("mysql", "mariadb"):
        parsed = parsed.update_query_dict({"charset": parsed.query.get("charset", "utf8mb4")})
        return create_engine(
            parsed,
            connect_args={"local_infile": True, "connect_timeout": 10},
            pool_pre_ping=True,
            pool_recycle=3600,
        )
    return create_engine(url, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def describe_url(url: str | URL) -> str:
    """Where a URL points, for messages: backend and host, never the password."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return f"sqlite file {parsed.database}"
    return (
        f"{parsed.get_backend_name()} server {parsed.host}:{parsed.port or 3306}/{parsed.database}"
    )


@contextmanager
def reporting_errors(engine: Engine) -> Iterator[None]:
    """Turn a database that does not answer into one line naming the host, never the password."""
    try:
        yield
    except (OperationalError, InterfaceError) as err:
        detail = str(err.orig).splitlines()[0] if err.orig is not None else type(err).__name__
        raise StoreUnreachable(
            f"cannot use the {describe_url(engine.url)} ({detail[:160]}); check RETRAIN_DB_URL "
            "and that the server is running"
        ) from err


def is_mysql(bind: Engine | Connection) -> bool:
    return bind.dialect.name in ("mysql", "mariadb")


@dataclass(frozen=True)
class DatasetTables:
    """The tables of one dataset: raw, batches, cleaned, rejected."""

    raw: Table
    batches: Table
    cleaned: Table
    rejected: Table
    columns: list[str]


def _sql_type(dtype: object):
    kind = str(dtype)
    if kind.startswith("float"):
        return Float(53)
    if kind.startswith(("int", "uint")):
        return Integer()
    if kind.startswith("bool"):
        return Integer()
    return String(255)


def _keys() -> list[Column]:
    return [
        Column("batch_id", String(16), primary_key=True),
        Column("line_no", Integer, primary_key=True, autoincrement=False),
        Column("row_hash", String(16), nullable=False),
    ]


def _source_row(columns: list[str]) -> list[Column]:
    """A source row as text, as in raw and rejected: values, keys, field count, surplus."""
    return [
        *[Column(c, LONG_TEXT, nullable=False) for c in columns],
        *_keys(),
        Column("n_fields", Integer, nullable=False),
        Column("extra_fields", LONG_TEXT, nullable=False),
    ]


def dataset_tables(dataset: str, schema: pa.DataFrameSchema) -> DatasetTables:
    """Build (not create) the dataset's tables from its schema; column names pass unchanged."""
    columns = list(schema.columns)
    clash = RESERVED.intersection(columns)
    if clash:
        raise BadInput(f"schema uses reserved column names {sorted(clash)}; rename them")
    meta = MetaData()
    opts = {"mysql_charset": "utf8mb4", "mariadb_charset": "utf8mb4"}
    raw = Table(
        f"{dataset}_raw",
        meta,
        *_source_row(columns),
        Column("loaded_at", DateTime, nullable=False),
        **opts,
    )
    batches = Table(
        f"{dataset}_batches",
        meta,
        Column("batch_id", String(16), primary_key=True),
        Column("source", String(1024), nullable=False),
        Column("n_rows", Integer, nullable=False),
        Column("loaded_at", DateTime, nullable=False),
        **opts,
    )
    cleaned = Table(
        f"{dataset}_cleaned",
        meta,
        *[Column(c, _sql_type(schema.columns[c].dtype), nullable=False) for c in columns],
        *_keys(),
        **opts,
    )
    rejected = Table(
        f"{dataset}_rejected",
        meta,
        *_source_row(columns),
        Column("reason", Text, nullable=False),
        **opts,
    )
    return DatasetTables(raw, batches, cleaned, rejected, columns)


def create_tables(bind: Engine | Connection, tables: DatasetTables) -> None:
    """Create the dataset's tables if they do not exist (safe to repeat)."""
    tables.raw.metadata.create_all(bind, checkfirst=True)


def now_utc() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def bulk_insert(
    conn: Connection,
    table: Table,
    columns: list[str],
    rows: Iterable[tuple],
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    constants: dict[str, object] | None = None,
) -> int:
    """Insert tuples (in `columns` order) inside the caller's transaction; returns the count.

    `constants` are columns whose value is the same for every row (sent once, not per row).
    """
    constants = constants or {}
    if is_mysql(conn):
        with tempfile.TemporaryDirectory(prefix="retrain-load-") as tmp:
            chunks = write_chunks(rows, chunk_rows, Path(tmp))
            return load_chunks(conn, table, columns, chunks, constants)
    total = 0
    insert = table.insert()
    for chunk in chunked(rows, min(chunk_rows, 20_000)):
        conn.execute(insert, [dict(zip(columns, row, strict=True)) | constants for row in chunk])
        total += len(chunk)
    return total


def _load_statement(
    conn: Connection, table: Table, columns: list[str], constants: dict[str, object]
) -> str:
    """LOAD DATA for chunk files; constants are bound once into session variables, so that
    no value ever appears in SQL text."""
    quote = conn.dialect.identifier_preparer
    if constants:
        assign = ", ".join(f"@retrain_c{i} = %s" for i in range(len(constants)))
        conn.exec_driver_sql(f"SET {assign}", tuple(constants.values()))
    target = ", ".join(quote.quote(c) for c in columns)
    fixed = ", ".join(f"{quote.quote(n)} = @retrain_c{i}" for i, n in enumerate(constants))
    return (
        f"LOAD DATA LOCAL INFILE %s INTO TABLE {quote.format_table(table)} CHARACTER SET utf8mb4 "
        "FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ESCAPED BY '' "
        f"LINES TERMINATED BY '\\n' ({target})" + (f" SET {fixed}" if fixed else "")
    )


def load_chunks(
    conn: Connection,
    table: Table,
    columns: list[str],
    chunks: Iterator[tuple[Path, int]],
    constants: dict[str, object],
) -> int:
    """LOAD DATA each chunk file as it comes, inside the caller's transaction."""
    statement = _load_statement(conn, table, columns, constants)
    total = 0
    for path, expected in chunks:
        result = conn.exec_driver_sql(statement, (str(path),))
        if result.rowcount != expected:
            raise RuntimeError(f"LOAD DATA stored {result.rowcount} of {expected} rows")
        total += expected
    return total


def insert_frame(conn: Connection, table: Table, frame: pd.DataFrame, chunk_rows: int) -> int:
    """Insert a DataFrame whose columns are a subset of the table's."""
    columns = list(frame.columns)
    rows = frame.itertuples(index=False, name=None)
    return bulk_insert(conn, table, columns, rows, chunk_rows)


def is_batch_loaded(conn: Connection, tables: DatasetTables, batch_id: str) -> bool:
    query = select(tables.batches.c.batch_id).where(tables.batches.c.batch_id == batch_id)
    return conn.execute(query).first() is not None


def pending_batches(conn: Connection, tables: DatasetTables) -> list[str]:
    """Loaded batches with no row in cleaned or rejected yet, oldest first."""
    done = (
        select(tables.cleaned.c.batch_id)
        .distinct()
        .union(select(tables.rejected.c.batch_id).distinct())
    )
    query = (
        select(tables.batches.c.batch_id)
        .where(tables.batches.c.batch_id.not_in(done))
        .order_by(tables.batches.c.loaded_at, tables.batches.c.batch_id)
    )
    return list(conn.execute(query).scalars())


def find_batch(conn: Connection, tables: DatasetTables, prefix: str) -> str:
    """The one loaded batch id that starts with `prefix`."""
    query = select(tables.batches.c.batch_id).where(tables.batches.c.batch_id.startswith(prefix))
    found = list(conn.execute(query).scalars())
    if len(found) != 1:
        what = "no loaded batch" if not found else f"{len(found)} batches"
        raise BadInput(
            f"{what} matches {prefix!r}; the batch ids are in table "
            f"{tables.batches.name} and in the output of `retrain ingest`"
        )
    return found[0]


def read_raw_batch(conn: Connection, tables: DatasetTables, batch_id: str) -> pd.DataFrame:
    """All raw rows of a batch, as text, in line order."""
    raw = tables.raw
    query = select(
        *[raw.c[c] for c in tables.columns],
        *[raw.c[c] for c in ROW_META],
        *[raw.c[c] for c in RAW_EXTRA],
    ).where(raw.c.batch_id == batch_id)
    rows = conn.execute(query.order_by(raw.c.line_no)).all()
    return pd.DataFrame(rows, columns=[*tables.columns, *ROW_META, *RAW_EXTRA], dtype=object)


def delete_batch_results(conn: Connection, tables: DatasetTables, batch_id: str) -> None:
    """Remove a batch's cleaned and rejected rows (before it is cleaned again)."""
    for table in (tables.cleaned, tables.rejected):
        conn.execute(table.delete().where(table.c.batch_id == batch_id))


def count_rows(conn: Connection, table: Table, batch_id: str | None = None) -> int:
    query = select(func.count()).select_from(table)
    if batch_id is not None:
        query = query.where(table.c.batch_id == batch_id)
    return int(conn.execute(query).scalar_one())


def read_cleaned(conn: Connection, tables: DatasetTables) -> pd.DataFrame:
    """Every cleaned row, with its batch id and row hash, in a stable order."""
    cleaned = tables.cleaned
    query = select(cleaned).order_by(cleaned.c.batch_id, cleaned.c.line_no)
    return pd.DataFrame(conn.execute(query).all(), columns=[c.name for c in cleaned.columns])


def open_dataset(settings: Settings) -> tuple[Engine, DatasetTables]:
    """The store engine and the dataset's tables, as the settings say."""
    from retrain.validation import load_schema

    schema = load_schema(settings.schema_file)
    return make_engine(settings.database_url), dataset_tables(settings.dataset, schema)

"""The data store adapter (SQLAlchemy): table definitions, bulk loading, batch bookkeeping.

Every function takes its engine or connection as an argument. MySQL/MariaDB gets the server's
own bulk path (LOAD DATA LOCAL INFILE of prepared chunk files); other databases get SQLAlchemy
Core inserts with bound parameters. Identifiers are always quoted by SQLAlchemy.

`<dataset>_cleaned` is typed by each column's kind (REAL / BIGINT / BOOLEAN / TEXT, NULL where
the schema lets a value be missing); raw and rejected keep the source's text. Tables opened for
writing are checked against the schema (`SchemaChanged`), and every database error becomes one
line whose class says whether a retry can help (`store_error`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    inspect,
    select,
    update,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.types import TypeEngine

from retrain.config.dataset_schema import ROW_KEYS, DatasetSchema
from retrain.config.settings import DEFAULT_CHUNK_ROWS, Settings
from retrain.errors import (
    BadInput,
    SchemaChanged,
    StageFailed,
)
from retrain.io import engines
from retrain.io.engines import describe_url, is_mysql, make_engine, one_line
from retrain.io.load_data_files import chunked, write_chunks

LONG_TEXT = Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
ROW_META = ROW_KEYS
RAW_EXTRA = ["n_fields", "extra_fields"]
RESERVED = {*ROW_META, *RAW_EXTRA, "loaded_at", "reason"}
# The pandas dtype of a cleaned column read back, by its kind (as validation makes them).
KIND_DTYPES = {
    "numeric": "float64",
    "integer": "Int64",
    "boolean": "boolean",
    "categorical": object,
}


@dataclass(frozen=True)
class DatasetTables:
    """The tables of one dataset: raw, batches, cleaned, rejected.

    `columns` are the schema's columns in order; `kinds` maps each to its kind (numeric,
    integer, boolean, categorical), which types its column in cleaned and its dtype when read.
    """

    raw: Table
    batches: Table
    cleaned: Table
    rejected: Table
    columns: list[str]
    kinds: dict[str, str] = field(hash=False)


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


def kind_type(kind: str) -> TypeEngine:
    """A cleaned column's SQL type by kind: FLOAT(53) (DOUBLE on MySQL, REAL affinity on
    SQLite), BIGINT, BOOLEAN (TINYINT(1) on MySQL) or TEXT (LONGTEXT on MySQL; no cleaned
    column is a key, so TEXT is fine)."""
    if kind == "numeric":
        return Float(53)
    if kind == "integer":
        return BigInteger()
    if kind == "boolean":
        return Boolean()
    return LONG_TEXT


def _cleaned_columns(schema: DatasetSchema) -> list[Column]:
    """Typed by kind; NULL allowed exactly where the schema lets a value be missing."""
    return [
        Column(c, kind_type(schema.kind(c)), nullable=schema.nullable(c)) for c in schema.columns
    ]


def check_names(columns: list[str]) -> None:
    """Refuse names the tables cannot hold on any store: SQLite and MySQL column names ignore
    case, so two names that differ only in case (or one that is a bookkeeping column's) clash."""
    clash = sorted(c for c in columns if c.casefold() in RESERVED)
    if clash:
        raise BadInput(f"schema uses reserved column names {clash}; rename them")
    seen: dict[str, str] = {}
    for name in columns:
        other = seen.setdefault(name.casefold(), name)
        if other != name:
            raise BadInput(
                f"columns {other!r} and {name!r} differ only in case, which the store's column "
                "names do not tell apart; rename one in the source file and the schema"
            )


def dataset_tables(dataset: str, schema: DatasetSchema) -> DatasetTables:
    """Build (not create) the dataset's tables from its schema; column names pass unchanged."""
    columns = schema.columns
    check_names(columns)
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
        Column("drift_share", Float, nullable=True),
        Column("drifted_columns", Text, nullable=True),
        **opts,
    )
    cleaned = Table(f"{dataset}_cleaned", meta, *_cleaned_columns(schema), *_keys(), **opts)
    rejected = Table(
        f"{dataset}_rejected",
        meta,
        *_source_row(columns),
        Column("reason", Text, nullable=False),
        **opts,
    )
    kinds = {c: schema.kind(c) for c in columns}
    return DatasetTables(raw, batches, cleaned, rejected, columns, kinds)


def create_tables(bind: Engine | Connection, tables: DatasetTables) -> None:
    """Open the dataset's tables for writing: check that the store can hold every name, create
    the tables that do not exist (safe to repeat), and check that the existing ones still have
    the schema's columns and types (`SchemaChanged` otherwise)."""
    check_identifiers(bind.dialect, tables)
    tables.raw.metadata.create_all(bind, checkfirst=True)
    engines.add_missing_columns(bind, tables.batches)
    check_tables_match(bind, tables)


def identifier_limit(dialect: Dialect) -> int:
    """The longest table or column name the store takes. SQLAlchemy's MySQL
    `max_identifier_length` (255) is the limit of aliases; table, column and index names are
    limited to 64 characters, which is its `max_index_name_length`."""
    limits = [dialect.max_identifier_length, dialect.max_index_name_length]
    return min(n for n in limits if n)


def check_identifiers(dialect: Dialect, tables: DatasetTables) -> None:
    """Refuse, before anything is written, a column name the store cannot hold."""
    limit = identifier_limit(dialect)
    for name in tables.columns:
        if len(name) > limit:
            raise BadInput(
                f"column {one_line(name, 80)!r} is {len(name)} characters long; the "
                f"{dialect.name} store allows at most {limit} in a name: rename it in the "
                "source file and the schema (RETRAIN_SCHEMA)"
            )
        if dialect.name in ("mysql", "mariadb") and any(ord(ch) > 0xFFFF for ch in name):
            raise BadInput(
                f"column {one_line(name, 80)!r} holds a character outside Unicode's Basic "
                "Multilingual Plane (an emoji?), which MySQL names cannot: rename it in the "
                "source file and the schema (RETRAIN_SCHEMA)"
            )


# Reflected type names by family, compared loosely (the stores spell the same type apart).
TYPE_FAMILIES = {
    **dict.fromkeys(
        ["REAL", "DOUBLE", "DOUBLE PRECISION", "FLOAT", "NUMERIC", "DECIMAL"], "numeric"
    ),
    **dict.fromkeys(["INTEGER", "INT", "BIGINT", "SMALLINT", "MEDIUMINT"], "integer"),
    **dict.fromkeys(["BOOLEAN", "BOOL", "TINYINT"], "boolean"),
    **dict.fromkeys(
        ["TEXT", "LONGTEXT", "MEDIUMTEXT", "TINYTEXT", "VARCHAR", "CHAR", "NVARCHAR", "CLOB"],
        "text",
    ),
}
KIND_FAMILIES = {"numeric": "numeric", "integer": "integer", "boolean": "boolean"}
FAMILY_WORDS = {
    "numeric": "numeric (REAL)",
    "integer": "integer (INTEGER)",
    "boolean": "boolean (BOOLEAN)",
    "text": "categorical (TEXT)",
}


def type_name(sql_type: object) -> str:
    """A reflected type's name as the store spells it: DOUBLE, BIGINT, TINYINT, LONGTEXT..."""
    return type(sql_type).__name__.upper().replace("_", " ")


def table_problems(conn: Engine | Connection, table: Table, families: dict[str, str]) -> list[str]:
    """How an existing table differs from the one the schema makes: a missing, extra or
    retyped column, or a NOT NULL column the schema now lets be missing."""
    found = {c["name"]: c for c in inspect(conn).get_columns(table.name)}
    problems = []
    for column in table.columns:
        have = found.get(column.name)
        want = families.get(column.name)
        if have is None:
            whose = "the schema names" if column.name in families else "retrain keeps"
            problems.append(f"table {table.name} has no column {column.name!r}, which {whose}")
        elif want and TYPE_FAMILIES.get(type_name(have["type"])) != want:
            problems.append(
                f"table {table.name} has column {column.name!r} of type "
                f"{type_name(have['type'])} but the schema says {FAMILY_WORDS[want]}"
            )
        elif column.nullable and not have["nullable"]:
            problems.append(
                f"table {table.name} has column {column.name!r} NOT NULL but the schema lets "
                "it be missing"
            )
    extra = [name for name in found if name not in table.columns]
    problems += [f"table {table.name} has column {n!r}, which the schema lacks" for n in extra]
    return problems


def check_tables_match(conn: Engine | Connection, tables: DatasetTables) -> None:
    """Raise SchemaChanged, naming the first difference and what to do, when the dataset's
    tables were created for other columns or types than the schema now says."""
    everything = ", ".join(t.name for t in (tables.raw, tables.batches, tables.cleaned))
    rebuild_all = (
        "load this source under a new RETRAIN_DATASET, or drop the dataset's tables "
        f"({everything}, {tables.rejected.name}) and load its files again"
    )
    rebuild_cleaned = (
        f"use a new RETRAIN_DATASET, or drop {tables.cleaned.name} and {tables.rejected.name} "
        "so that every loaded batch is cleaned again under the new schema"
    )
    as_text = dict.fromkeys(tables.columns, "text")
    by_kind = {c: KIND_FAMILIES.get(k, "text") for c, k in tables.kinds.items()}
    for table, families, fix in (
        (tables.raw, as_text, rebuild_all),
        (tables.rejected, as_text, rebuild_all),
        (tables.cleaned, by_kind, rebuild_cleaned),
    ):
        problems = table_problems(conn, table, families)
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise SchemaChanged(f"{problems[0]}{more}; {fix}")


def bulk_insert(
    conn: Connection,
    table: Table,
    columns: list[str],
    rows: Iterable[tuple],
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    constants: dict[str, object] | None = None,
) -> int:
    """Insert tuples (in `columns` order) inside the caller's transaction; returns the count.

    Values are plain Python (str, int, float, bool; None is NULL). `constants` are columns
    whose value is the same for every row (sent once, not per row).
    """
    constants = constants or {}
    if is_mysql(conn):
        with tempfile.TemporaryDirectory(prefix="retrain-load-") as tmp:
            chunks = write_chunks(rows, chunk_rows, Path(tmp))
            return load_chunks(conn, table, columns, chunks, constants)
    if conn.dialect.name == "sqlite":
        return insert_rows_sqlite(conn, table, columns, rows, chunk_rows, constants)
    total = 0
    insert = table.insert()
    for chunk in chunked(rows, min(chunk_rows, 20_000)):
        conn.execute(insert, [dict(zip(columns, row, strict=True)) | constants for row in chunk])
        total += len(chunk)
    return total


def insert_rows_sqlite(
    conn: Connection,
    table: Table,
    columns: list[str],
    rows: Iterable[tuple],
    chunk_rows: int,
    constants: dict[str, object],
) -> int:
    """One driver-level executemany per chunk: SQLAlchemy's per-row parameter processing is
    most of an insert's time at a million rows. The columns' own bind processors (dates as
    SQLAlchemy stores them) are applied to the constants, so rows read back the same."""
    quote = conn.dialect.identifier_preparer
    names = [*columns, *constants]
    fixed = tuple(
        process(v) if (process := table.c[n].type.bind_processor(conn.dialect)) else v
        for n, v in constants.items()
    )
    statement = (
        f"INSERT INTO {quote.format_table(table)} ({', '.join(quote.quote(n) for n in names)}) "
        f"VALUES ({', '.join('?' * len(names))})"
    )
    total = 0
    for chunk in chunked(rows, min(chunk_rows, 50_000)):
        conn.exec_driver_sql(statement, [(*row, *fixed) for row in chunk])
        total += len(chunk)
    return total


def _load_statement(
    conn: Connection, table: Table, columns: list[str], constants: dict[str, object]
) -> str:
    """LOAD DATA for chunk files; constants are bound once into session variables, so that
    no value ever appears in SQL text. The dialect's identifier preparer quotes names for
    driver-level SQL (it doubles a % in a name, as the driver %-formats the statement)."""
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
    """LOAD DATA each chunk file as it comes, inside the caller's transaction; a warning or a
    row count short of the chunk's fails the load (StageFailed: the caller rolls back)."""
    statement = _load_statement(conn, table, columns, constants)
    total = 0
    for path, expected in chunks:
        result = conn.exec_driver_sql(statement, (str(path),))
        raise_on_load_warnings(conn, table)
        if result.rowcount != expected:
            raise StageFailed(
                f"LOAD DATA stored {result.rowcount} of {expected} rows of a chunk into "
                f"{table.name}; nothing was written"
            )
        total += expected
    return total


def raise_on_load_warnings(conn: Connection, table: Table) -> None:
    """Fail on any warning of the LOAD DATA just run. With LOCAL the server cannot stop the
    file half-way, so every conversion error is only a warning and the value is stored
    coerced ('abc' in a DOUBLE as 0, a NULL in a NOT NULL column as 0 or ''): never accept it.
    SHOW COUNT(*) WARNINGS and SHOW WARNINGS are diagnostic statements and keep the list."""
    count = int(conn.exec_driver_sql("SHOW COUNT(*) WARNINGS").scalar_one())
    if count == 0:
        return
    first = conn.exec_driver_sql("SHOW WARNINGS LIMIT 2").all()
    shown = "; ".join(f"{level} {code}: {message}" for level, code, message in first)
    raise StageFailed(
        f"LOAD DATA into {table.name} raised {count} warning(s), so values would be stored "
        f"coerced ({one_line(shown, 300)}); nothing was written: fix the rows or the schema"
    )


def plain_values(series: pd.Series) -> list:
    """A column as plain Python values (bool, int, float, str), None where missing (NaN, NA,
    None): the drivers bind numpy and pandas scalars badly or not at all."""
    values = series.astype(object).where(series.notna(), None).tolist()
    if series.dtype == object:
        return [v.item() if isinstance(v, np.generic) else v for v in values]
    return values


def insert_frame(
    conn: Connection,
    table: Table,
    frame: pd.DataFrame,
    chunk_rows: int,
    constants: dict[str, object] | None = None,
) -> int:
    """Insert a DataFrame whose columns are a subset of the table's; missing values are NULL;
    `constants` as in `bulk_insert`."""
    columns = list(frame.columns)
    rows = zip(*(plain_values(frame[c]) for c in columns), strict=True)
    return bulk_insert(conn, table, columns, rows, chunk_rows, constants)


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


def read_raw_chunks(
    conn: Connection, tables: DatasetTables, batch_id: str, chunk_rows: int
) -> Iterator[pd.DataFrame]:
    """The raw rows of a batch as text, in line order, `chunk_rows` at a time: each chunk is
    one query after the last line read (keyset paging on the primary key), so no cursor stays
    open while the caller writes on the same connection."""
    raw = tables.raw
    names = [*tables.columns, *ROW_META, *RAW_EXTRA]
    query = select(*[raw.c[c] for c in names]).where(raw.c.batch_id == batch_id)
    last = -1
    while True:
        page = query.where(raw.c.line_no > last).order_by(raw.c.line_no).limit(chunk_rows)
        rows = conn.execute(page).all()
        if not rows:
            return
        yield typed_frame(rows, names)
        last = rows[-1][names.index("line_no")]


def record_drift(
    conn: Connection, tables: DatasetTables, batch_id: str, share: float, columns: list[str]
) -> None:
    """Keep a batch's drift share and drifted columns on its `<dataset>_batches` row."""
    conn.execute(
        update(tables.batches)
        .where(tables.batches.c.batch_id == batch_id)
        .values(drift_share=share, drifted_columns=",".join(columns))
    )


def latest_cleaned_batch(conn: Connection, tables: DatasetTables) -> str | None:
    """The most recently loaded batch that has cleaned rows."""
    cleaned = select(tables.cleaned.c.batch_id).distinct()
    query = (
        select(tables.batches.c.batch_id)
        .where(tables.batches.c.batch_id.in_(cleaned))
        .order_by(tables.batches.c.loaded_at.desc(), tables.batches.c.batch_id.desc())
        .limit(1)
    )
    return conn.execute(query).scalar()


def batches_loaded_before(
    conn: Connection, tables: DatasetTables, when: datetime | None, leave_out: str
) -> list[str]:
    """Batch ids loaded at or before `when` (every batch when None), but `leave_out`."""
    query = select(tables.batches.c.batch_id).where(tables.batches.c.batch_id != leave_out)
    if when is not None:
        query = query.where(tables.batches.c.loaded_at <= when)
    return list(conn.execute(query).scalars())


def delete_batch_results(conn: Connection, tables: DatasetTables, batch_id: str) -> None:
    """Remove a batch's cleaned and rejected rows (before it is cleaned again)."""
    for table in (tables.cleaned, tables.rejected):
        delete_rows(conn, table, batch_id)


def delete_rows(conn: Connection, table: Table, batch_id: str) -> None:
    conn.execute(table.delete().where(table.c.batch_id == batch_id))


def count_rows(conn: Connection, table: Table, batch_id: str | None = None) -> int:
    query = select(func.count()).select_from(table)
    if batch_id is not None:
        query = query.where(table.c.batch_id == batch_id)
    return int(conn.execute(query).scalar_one())


def read_cleaned(
    conn: Connection,
    tables: DatasetTables,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    batches: Collection[str] | None = None,
) -> pd.DataFrame:
    """Every cleaned row, with its batch id and row hash, in a stable order; each column has
    the dtype cleaning gave it (numeric float64, integer Int64, boolean boolean, categorical
    object), a NULL is NaN / NA / None.

    `batches` keeps only those batches' rows. Streamed `chunk_rows` at a time and built column
    by column, so memory holds one chunk of Python row objects beside the columns (an integer
    column holding a NULL never passes through float), and each distinct text is one object
    however many rows repeat it."""
    cleaned = tables.cleaned
    names = [c.name for c in cleaned.columns]
    dtypes = {c: KIND_DTYPES[k] for c, k in tables.kinds.items()} | {"line_no": "int64"}
    query = select(cleaned).order_by(cleaned.c.batch_id, cleaned.c.line_no)
    if batches is not None:
        query = query.where(cleaned.c.batch_id.in_(list(batches)))
    result = conn.execution_options(yield_per=chunk_rows).execute(query)
    shared = {c for c, k in tables.kinds.items() if k == "categorical"} | {"batch_id"}
    texts: dict[str, str] = {}
    parts = [typed_frame(rows, names, dtypes, shared, texts) for rows in result.partitions()]
    return pd.concat(parts, ignore_index=True) if parts else typed_frame([], names, dtypes)


def read_times(
    conn: Connection,
    tables: DatasetTables,
    column: str | None,
    batches: Collection[str] | None = None,
) -> pd.DataFrame:
    """`batch_id`, `line_no` and `time` of every cleaned row (of `batches`): the value of the
    time `column`, or with none the load time of the row's batch. Three narrow columns, so a
    training window is chosen without reading the rows outside it."""
    cleaned, loaded = tables.cleaned, tables.batches
    when = cleaned.c[column] if column else loaded.c.loaded_at
    query = select(cleaned.c.batch_id, cleaned.c.line_no, when.label("time"))
    if not column:
        query = query.join_from(cleaned, loaded, cleaned.c.batch_id == loaded.c.batch_id)
    if batches is not None:
        query = query.where(cleaned.c.batch_id.in_(list(batches)))
    rows = conn.execute(query).all()
    return typed_frame(rows, ["batch_id", "line_no", "time"], {"line_no": "int64"})


def batch_load_times(conn: Connection, tables: DatasetTables) -> dict[str, datetime]:
    """Each loaded batch's load time."""
    query = select(tables.batches.c.batch_id, tables.batches.c.loaded_at)
    return dict(conn.execute(query).all())


def typed_frame(
    rows: list,
    names: list[str],
    dtypes: dict[str, object] | None = None,
    shared: Collection[str] = (),
    texts: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Result rows as a DataFrame built column by column (much faster than row by row), each
    column of its `dtypes` entry (object when absent: no value passes through a guessed dtype);
    the values of a `shared` column go through `texts`, so that equal texts are one object."""
    dtypes, texts = dtypes or {}, {} if texts is None else texts
    values = list(zip(*rows, strict=True)) if rows else [()] * len(names)
    columns = {}
    for name, column in zip(names, values, strict=True):
        if name in shared:
            column = [v if v is None else texts.setdefault(v, v) for v in column]
        columns[name] = pd.Series(column, dtype=object).astype(dtypes.get(name, object))
    return pd.DataFrame(columns, columns=names)


def describe_source(engine: Engine, tables: DatasetTables) -> dict[str, str]:
    """Where the training rows come from, for lineage: the store (no password), the table
    and the query `read_cleaned` runs (every column), in the store's quoting."""
    quoted = engine.dialect.identifier_preparer.format_table(tables.cleaned)
    return {
        "retrain.store": describe_url(engine.url),
        "retrain.table": tables.cleaned.name,
        "retrain.query": f"SELECT * FROM {quoted} ORDER BY batch_id, line_no",
    }


def open_dataset(settings: Settings) -> tuple[Engine, DatasetTables]:
    """The store engine and the dataset's tables, as the settings say."""
    tables = dataset_tables(settings.dataset, settings.load_schema())
    return make_engine(settings.database_url), tables

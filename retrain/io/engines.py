"""Database engines and what their errors mean (SQLAlchemy): the light half of the store
adapter, with no pandas, so that commands which only read a table start quickly.

MySQL/MariaDB engines get LOCAL INFILE, SQLite gets WAL and a lock wait; every database error
becomes one line whose class says whether a retry can help (`store_error`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

from sqlalchemy import Engine, Table, create_engine, event, inspect, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import DBAPIError

from retrain.errors import (
    RetrainError,
    StageFailed,
    StoreBusy,
    StoreMisconfigured,
    StoreUnreachable,
)

INNODB_UTF8 = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}  # retrain's own tables


@cache
def make_engine(url: str) -> Engine:
    """One engine per URL and process; MySQL with LOCAL INFILE on, SQLite with WAL and a wait."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            make_folder(Path(parsed.database).parent)
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


def make_folder(folder: Path) -> None:
    """The SQLite file's folder; one that cannot be made is a configuration error."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StoreMisconfigured(
            f"cannot create the folder {folder} of the sqlite file ({err.strerror}); check "
            "RETRAIN_HOME and RETRAIN_DB_URL"
        ) from err


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


# MySQL/MariaDB error numbers (client 2xxx, server 1xxx) by what they mean for a retry.
MYSQL_UNREACHABLE = frozenset({1040, 2002, 2003, 2005, 2006, 2013, 2055})
MYSQL_BUSY = frozenset({1205, 1213})  # lock wait timeout, deadlock: the transaction was undone
MYSQL_MISCONFIGURED = frozenset({1044, 1045, 1049})  # access denied, unknown database
TRANSIENT_KINDS = frozenset({"unreachable", "busy"})


def one_line(text: str, limit: int = 200) -> str:
    """Text as one line of at most `limit` characters (a value may hold newlines)."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def error_code(err: DBAPIError) -> int | None:
    """The MySQL error number: the MySQL drivers' errors carry it as their first argument."""
    args = getattr(err.orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def error_detail(err: DBAPIError) -> str:
    """The database's own first line ("1045 Access denied ..."), never the SQL or its values."""
    args = getattr(err.orig, "args", ())
    if len(args) >= 2 and isinstance(args[0], int):
        return one_line(f"{args[0]} {args[1] or type(err.orig).__name__}")
    return one_line(str(err.orig)) or type(err.orig or err).__name__


def error_kind(err: DBAPIError) -> str:
    """'unreachable' (retry), 'busy' (a lock; retry), 'misconfigured' (fix the URL) or
    'failed' (the database refused a statement: final)."""
    code, text = error_code(err), error_detail(err).lower()
    if code in MYSQL_UNREACHABLE or err.connection_invalidated:
        return "unreachable"
    if code in MYSQL_BUSY or "database is locked" in text:
        return "busy"
    if code in MYSQL_MISCONFIGURED or "unable to open database file" in text:
        return "misconfigured"
    return "failed"


def store_error(err: DBAPIError, url: str | URL) -> RetrainError:
    """The one-line error a database error means, naming the store but never the password."""
    where, detail, kind = describe_url(url), error_detail(err), error_kind(err)
    if kind == "unreachable":
        return StoreUnreachable(
            f"cannot use the {where} ({detail}); check RETRAIN_DB_URL and that the server "
            "is running"
        )
    if kind == "busy":
        return StoreBusy(
            f"the {where} was busy: another transaction held a lock ({detail}); this is "
            "transient and the stage can simply run again"
        )
    if kind == "misconfigured":
        fix = (
            "RETRAIN_HOME and RETRAIN_DB_URL (the file's folder must be writable)"
            if make_url(url).get_backend_name() == "sqlite"
            else "RETRAIN_DB_URL (user, password and database name)"
        )
        return StoreMisconfigured(f"cannot use the {where} ({detail}); check {fix}")
    return StageFailed(
        f"the {where} refused a statement ({detail}); nothing of that transaction was kept"
    )


@contextmanager
def reporting_errors(engine: Engine) -> Iterator[None]:
    """Turn a database error into its one-line RetrainError (see `store_error`)."""
    try:
        yield
    except DBAPIError as err:
        raise store_error(err, engine.url) from err


def is_mysql(bind: Engine | Connection) -> bool:
    return bind.dialect.name in ("mysql", "mariadb")


def now_utc() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def add_missing_columns(bind: Engine | Connection, table: Table) -> None:
    """Migrate a table an older retrain made: add the nullable columns a newer one keeps,
    and the indexes it lacks (no row is touched; safe to repeat)."""
    found = inspect(bind).get_columns(table.name)
    names = {c["name"] for c in found}
    preparer = bind.dialect.identifier_preparer
    statements = [
        text(
            f"ALTER TABLE {preparer.format_table(table)} ADD COLUMN "
            f"{preparer.format_column(column)} {column.type.compile(dialect=bind.dialect)} NULL"
        )
        for column in table.columns
        if column.name not in names and column.nullable
    ]
    indexes = {i["name"] for i in inspect(bind).get_indexes(table.name)}
    with bind.begin() if isinstance(bind, Engine) else contextlib.nullcontext(bind) as conn:
        for statement in statements:
            conn.execute(statement)
        for index in table.indexes:
            if index.name not in indexes:
                index.create(conn)

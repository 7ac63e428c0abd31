"""Typed cleaned tables, odd column names, schema changes and database errors, on both stores."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pandera.pandas as pa
import pytest
from prefect.states import Failed
from sqlalchemy import create_engine, inspect, select, text

from retrain.config.dataset_schema import DatasetSchema, load_dataset_schema
from retrain.config.settings import BUNDLED_SCHEMAS, load_settings
from retrain.data import clean, ingest
from retrain.errors import (
    BadInput,
    SchemaChanged,
    StageFailed,
    StoreBusy,
    StoreMisconfigured,
    StoreUnreachable,
)
from retrain.io import engines, store
from tasks.policies import is_transient
from tests.integration.helpers import count, open_store, row_keys, write_csv
from tests.support.services import free_port

pytestmark = pytest.mark.integration

# One column of each kind, all nullable but the id and the target; names with a space, unicode,
# SQL keywords and a % sign (the MySQL driver %-formats statements).
COLUMNS = {
    "id": "    dtype: str\n    nullable: false\n",
    "order": "    dtype: float64\n    nullable: true\n",
    "select": "    dtype: int64\n    nullable: true\n",
    "naïve größe": "    dtype: bool\n    nullable: true\n",
    "colour name": "    dtype: str\n    nullable: true\n",
    "share %": "    dtype: float64\n    nullable: true\n    checks:\n      ge: 0\n",
    "target": "    dtype: str\n    nullable: false\n    checks:\n      isin: [cat, dog]\n",
}
ROWS = [
    "a1,1.5,3,true,red,0.5,cat",
    "a2,,,,,,dog",
    'a3,2.25,-7,false,"NULL",,cat',
    "a4,abc,1,true,NULL,1,dog",
    "a5,1,2,maybe,green,1,cat",
    "a6,1,2,true,green,1,",
    'a7,3.5,123456789,yes,"say ""hi"", twice",2,dog',
]


def header(columns: list[str]) -> str:
    return ",".join(f'"{c}"' for c in columns)


def use_schema(
    monkeypatch: pytest.MonkeyPatch, folder: Path, columns: dict[str, str], name: str = "s"
) -> Path:
    """Write a pandera YAML schema with retrain's roles block and make it RETRAIN_SCHEMA."""
    body = "".join(f"  {c}:\n{spec}" for c, spec in columns.items())
    path = folder / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "schema_type: dataframe\ncolumns:\n" + body + "coerce: true\nname: mixed\n"
        "metadata:\n  retrain:\n    target: target\n    ids: [id]\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("RETRAIN_SCHEMA", str(path))
    return path


def load_and_clean(path: Path, threshold: float | None = None) -> list[clean.BatchReport]:
    engine, tables = open_store()
    ingest.load_file(engine, tables, path, "utf-8", chunk_rows=2)
    with engine.connect() as conn:
        batches = store.pending_batches(conn, tables)
    schema = load_settings().load_schema()
    return [clean.clean_batch(engine, tables, schema, b, threshold, chunk_rows=2) for b in batches]


def count_nulls(table: str, column: str) -> int:
    """SELECT COUNT(*) ... IS NULL in the store's own SQL (the preparer quotes for the driver)."""
    engine, _ = open_store()
    quote = engine.dialect.identifier_preparer.quote
    query = f"SELECT COUNT(*) FROM {quote(table)} WHERE {quote(column)} IS NULL"
    with engine.connect() as conn:
        return int(conn.exec_driver_sql(query).scalar_one())


def test_missing_values_are_sql_nulls_and_read_back_typed(
    env: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_schema(monkeypatch, tmp_path, COLUMNS)
    (report,) = load_and_clean(write_csv(tmp_path / "in", "m.csv", ROWS, header(list(COLUMNS))))
    assert (report.cleaned, report.rejected) == (4, 3)
    ds = env["RETRAIN_DATASET"]
    cleaned, rejected = f"{ds}_cleaned", f"{ds}_rejected"
    assert row_keys(cleaned) | row_keys(rejected) == row_keys(f"{ds}_raw")
    assert not row_keys(cleaned) & row_keys(rejected)
    nulls = {c: count_nulls(cleaned, c) for c in COLUMNS}
    assert nulls == {
        "id": 0,
        "order": 1,
        "select": 1,
        "naïve größe": 1,
        "colour name": 2,
        "share %": 2,
        "target": 0,
    }
    engine, tables = open_store()
    with engine.connect() as conn:
        frame = store.read_cleaned(conn, tables)
        kept = conn.execute(select(tables.rejected.c["colour name"])).scalars()
        assert "NULL" in set(kept)  # a rejected row keeps the text NULL as text
    dtypes = {c: str(frame[c].dtype) for c in COLUMNS}
    assert dtypes == {
        "id": "object",
        "order": "float64",
        "select": "Int64",
        "naïve größe": "boolean",
        "colour name": "object",
        "share %": "float64",
        "target": "object",
    }
    assert frame["id"].tolist() == ["a1", "a2", "a3", "a7"]
    assert frame["select"].tolist() == [3, pd.NA, -7, 123456789]
    assert frame["naïve größe"].tolist() == [True, pd.NA, False, True]
    assert frame["colour name"].tolist() == ["red", None, None, 'say "hi", twice']
    assert frame["order"].isna().tolist() == [False, True, False, False]


def test_cleaned_columns_are_typed_and_nullable_as_the_schema_says(
    env: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_schema(monkeypatch, tmp_path, COLUMNS)
    load_and_clean(write_csv(tmp_path / "in", "m.csv", ROWS[:2], header(list(COLUMNS))))
    engine, tables = open_store()
    with engine.connect() as conn:
        found = {c["name"]: c for c in inspect(conn).get_columns(tables.cleaned.name)}
    families = {c: store.TYPE_FAMILIES[store.type_name(found[c]["type"])] for c in COLUMNS}
    assert families == {
        "id": "text",
        "order": "numeric",
        "select": "integer",
        "naïve größe": "boolean",
        "colour name": "text",
        "share %": "numeric",
        "target": "text",
    }
    assert {c for c in COLUMNS if not found[c]["nullable"]} == {"id", "target"}


def changed(change: str) -> tuple[dict[str, str], list[str]]:
    """The schema after a change, and two source rows that fit it."""
    if change == "retyped":
        return {**COLUMNS, "order": "    dtype: str\n    nullable: true\n"}, ROWS[:2]
    if change == "new":
        extra = {**COLUMNS, "extra": "    dtype: float64\n    nullable: true\n"}
        return extra, [f"{r},4.5" for r in ROWS[:2]]
    fewer = {c: spec for c, spec in COLUMNS.items() if c != "share %"}
    return fewer, [",".join(r.split(",")[:5] + r.split(",")[6:]) for r in ROWS[:2]]


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ("retyped", "_cleaned has column 'order' of type "),
        ("new", "_raw has no column 'extra'"),
        ("missing", "_raw has column 'share %', which the schema lacks"),
    ],
)
def test_a_changed_schema_is_one_line_naming_the_column(
    env: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str, words: str
) -> None:
    use_schema(monkeypatch, tmp_path, COLUMNS, "first")
    load_and_clean(write_csv(tmp_path / "in", "one.csv", ROWS[:3], header(list(COLUMNS))))
    later, rows = changed(change)
    use_schema(monkeypatch, tmp_path, later, "second")
    second = write_csv(tmp_path / "in", "two.csv", rows, header(list(later)))
    with pytest.raises(SchemaChanged) as err:
        load_and_clean(second)
    message = str(err.value)
    assert words in message and "\n" not in message
    assert "RETRAIN_DATASET" in message and "drop" in message
    assert err.value.exit_code == 1 and not err.value.transient
    assert count(f"{env['RETRAIN_DATASET']}_raw") == 3


def test_a_name_too_long_for_the_store_is_refused_before_anything_is_written(
    env: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    long_name = "a measurement whose name goes on and on well past what MySQL takes"
    assert len(long_name) == 66
    columns = {"id": COLUMNS["id"], long_name: COLUMNS["order"], "target": COLUMNS["target"]}
    use_schema(monkeypatch, tmp_path, columns)
    path = write_csv(tmp_path / "in", "l.csv", ["a1,1.5,cat"], header(list(columns)))
    engine, tables = open_store()
    if engine.dialect.name == "sqlite":  # SQLite has no practical limit: the name just works
        (report,) = load_and_clean(path)
        assert report.cleaned == 1
        return
    with pytest.raises(BadInput) as err:
        load_and_clean(path)
    assert f"column '{long_name}' is 66 characters long" in str(err.value)
    assert "at most 64" in str(err.value) and "\n" not in str(err.value)
    with engine.connect() as conn:
        assert not engine.dialect.has_table(conn, tables.raw.name)


@pytest.mark.parametrize(
    ("row", "code"),
    [('"abc",3.5,1.4,0.2,"setosa","b1",2,"h"', "1366"), ('1,2,3,4,NULL,"b1",2,"h"', "1263")],
)
def test_any_load_data_warning_fails_the_load_and_writes_nothing(
    mysql_url: str, dataset: str, tmp_path: Path, row: str, code: str
) -> None:
    engine = engines.make_engine(mysql_url)
    tables = store.dataset_tables(dataset, load_dataset_schema(BUNDLED_SCHEMAS / "iris.yaml"))
    chunk = tmp_path / "chunk.csv"
    chunk.write_text(row + "\n", encoding="utf-8")
    columns = [c.name for c in tables.cleaned.columns]
    with pytest.raises(StageFailed) as err, engine.begin() as conn:
        store.create_tables(conn, tables)
        store.load_chunks(conn, tables.cleaned, columns, iter([(chunk, 1)]), {})
    assert "raised 1 warning(s)" in str(err.value) and f"Warning {code}: " in str(err.value)
    with engine.connect() as conn:
        assert store.count_rows(conn, tables.cleaned) == 0


def test_a_closed_port_is_unreachable_and_retried_without_the_password(
    dataset: str, tmp_path: Path
) -> None:
    port = free_port()
    engine = engines.make_engine(f"mysql+pymysql://retrain:s3cretpw@127.0.0.1:{port}/retrain")
    tables = store.dataset_tables(dataset, load_dataset_schema(BUNDLED_SCHEMAS / "iris.yaml"))
    path = write_csv(tmp_path, "a.csv", ["5.1,3.5,1.4,0.2,setosa"])
    with pytest.raises(StoreUnreachable) as err:
        ingest.load_file(engine, tables, path, "utf-8")
    message = str(err.value)
    assert f"cannot use the mysql server 127.0.0.1:{port}/retrain (2003 " in message
    assert "s3cretpw" not in message and "\n" not in message
    assert is_transient(None, None, Failed(data=err.value))


def test_a_wrong_password_is_a_configuration_error_not_retried(mysql_url: str) -> None:
    wrong = engines.make_engine(mysql_url.replace("retrain:", "retrain:x", 1))
    with pytest.raises(StoreMisconfigured) as err, engines.reporting_errors(wrong):
        wrong.connect()
    assert "1045 Access denied" in str(err.value) and "check RETRAIN_DB_URL" in str(err.value)
    assert not is_transient(None, None, Failed(data=err.value))


def test_a_sqlite_file_that_cannot_be_opened_is_a_configuration_error(tmp_path: Path) -> None:
    engine = engines.make_engine(f"sqlite:///{tmp_path}")  # a folder, not a file
    with pytest.raises(StoreMisconfigured) as err, engines.reporting_errors(engine):
        engine.connect()
    assert "unable to open database file" in str(err.value) and "RETRAIN_HOME" in str(err.value)
    assert not is_transient(None, None, Failed(data=err.value))


def test_a_lock_held_by_another_writer_is_busy_and_retried(db_url: str, dataset: str) -> None:
    holder = engines.make_engine(db_url)
    if holder.dialect.name == "sqlite":
        waiter = create_engine(db_url, connect_args={"timeout": 0.2})
        setup = []
    else:
        waiter = create_engine(db_url)
        setup = ["SET SESSION innodb_lock_wait_timeout = 1"]
    with holder.begin() as conn:
        conn.execute(text(f"CREATE TABLE {dataset} (n INTEGER)"))
        conn.execute(text(f"INSERT INTO {dataset} VALUES (1)"))
    with holder.begin() as held:
        held.execute(text(f"UPDATE {dataset} SET n = 2"))
        with (
            pytest.raises(StoreBusy) as err,
            engines.reporting_errors(waiter),
            waiter.connect() as c,
        ):
            for statement in [*setup, f"UPDATE {dataset} SET n = 3"]:
                c.execute(text(statement))
    waiter.dispose()
    assert "busy: another transaction held a lock" in str(err.value)
    assert is_transient(None, None, Failed(data=err.value))


def test_a_statement_the_database_refuses_is_a_stage_failure_not_retried(db_url: str) -> None:
    engine = engines.make_engine(db_url)
    with pytest.raises(StageFailed) as err, engines.reporting_errors(engine), engine.connect() as c:
        c.execute(text("SELECT * FROM no_such_table_here"))
    assert "refused a statement" in str(err.value) and "no_such_table_here" in str(err.value)
    assert "\n" not in str(err.value) and not err.value.transient
    assert not is_transient(None, None, Failed(data=err.value))
    assert not is_transient(None, None, Failed(data=err.value.__cause__))  # the raw DBAPIError


@pytest.mark.parametrize(
    ("columns", "words"),
    [(["age", "Age", "target"], "differ only in case"), (["Reason", "target"], "reserved")],
)
def test_names_no_store_tells_apart_are_refused(columns: list[str], words: str) -> None:
    """SQLite and MySQL column names ignore case: refused when the tables are built."""
    schema = DatasetSchema(pa.DataFrameSchema({c: pa.Column(str) for c in columns}))
    with pytest.raises(BadInput, match=words):
        store.dataset_tables("t", schema)

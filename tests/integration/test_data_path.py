"""Ingest and clean against real stores: the embedded SQLite file and a real MariaDB server."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from retrain.config.settings import load_settings
from retrain.data import clean, ingest
from retrain.errors import BadInput, StageFailed
from retrain.io import store
from tests.integration.helpers import GOOD_ROWS, count, open_store, row_keys, write_csv

pytestmark = pytest.mark.integration


def load(path: Path, chunk_rows: int = 2):
    """Load a file with tiny chunks, so that even small files cross chunk boundaries."""
    engine, tables = open_store()
    return ingest.load_file(engine, tables, path, "utf-8", chunk_rows=chunk_rows)


def clean_pending(threshold: float | None = 0.2):
    engine, tables = open_store()
    schema = load_settings().load_schema()
    with engine.connect() as conn:
        batches = store.pending_batches(conn, tables)
    return [clean.clean_batch(engine, tables, schema, b, threshold) for b in batches]


def test_load_twice_adds_nothing_and_rows_keep_their_text(env: dict, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "in", "a.csv", [*GOOD_ROWS, '"5,1",3.5,1.4,0.2,"set\nosa"'])
    first, second = load(path), load(path)
    assert (first.rows, first.already_loaded) == (4, False)
    assert (second.rows, second.already_loaded) == (0, True)
    assert "already loaded" in second.describe()
    ds = env["RETRAIN_DATASET"]
    assert count(f"{ds}_raw") == 4
    engine, tables = open_store()
    with engine.connect() as conn:
        last = conn.execute(tables.raw.select().where(tables.raw.c.line_no == 5)).mappings().one()
    assert last["sepal length (cm)"] == "5,1" and last["target"] == "set\nosa"
    assert last["batch_id"] == first.batch_id and len(last["row_hash"]) == 16


def test_clean_splits_every_row_into_exactly_one_table(env: dict, tmp_path: Path) -> None:
    rows = [*GOOD_ROWS * 3, "abc,3.5,1.4,0.2,setosa", "1,2", "NULL,1,1,1,setosa"]
    load(write_csv(tmp_path / "in", "a.csv", rows))
    (report,) = clean_pending(threshold=0.5)
    assert (report.cleaned, report.rejected, report.quarantined) == (9, 3, False)
    ds = env["RETRAIN_DATASET"]
    raw, cleaned, rejected = (
        row_keys(f"{ds}_raw"),
        row_keys(f"{ds}_cleaned"),
        row_keys(f"{ds}_rejected"),
    )
    assert cleaned | rejected == raw and not cleaned & rejected
    assert clean_pending() == []


def test_quarantine_then_readmit(env: dict, tmp_path: Path) -> None:
    bad = write_csv(tmp_path / "in", "bad.csv", [GOOD_ROWS[0], "x,1,1,1,setosa", "1,1,1,1,rose"])
    good = write_csv(tmp_path / "in", "good.csv", GOOD_ROWS)
    bad_id, good_id = load(bad).batch_id, load(good).batch_id
    reports = {r.batch_id: r for r in clean_pending(threshold=0.2)}
    assert reports[bad_id].quarantined and not reports[good_id].quarantined
    assert "quarantined: 2 of 3 rows failed" in reports[bad_id].describe()
    ds = env["RETRAIN_DATASET"]
    assert count(f"{ds}_cleaned") == 3
    assert count(f"{ds}_rejected", "WHERE reason LIKE 'batch quarantined%'") == 1
    engine, tables = open_store()
    schema = load_settings().load_schema()
    readmitted = clean.clean_batch(engine, tables, schema, bad_id, None)
    assert (readmitted.cleaned, readmitted.rejected, readmitted.quarantined) == (1, 2, False)
    assert count(f"{ds}_cleaned") == 4 and count(f"{ds}_rejected") == 2
    assert row_keys(f"{ds}_cleaned") | row_keys(f"{ds}_rejected") == row_keys(f"{ds}_raw")


def test_a_failed_clean_write_leaves_both_tables_as_they_were(env: dict, tmp_path: Path) -> None:
    load(write_csv(tmp_path / "in", "a.csv", [*GOOD_ROWS, "x,1,1,1,setosa"]))
    (first,) = clean_pending(threshold=None)
    engine, tables = open_store()
    ds = env["RETRAIN_DATASET"]
    before = row_keys(f"{ds}_cleaned"), row_keys(f"{ds}_rejected")
    trigger = f"{ds}_boom"
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(
                text(
                    f'CREATE TRIGGER {trigger} BEFORE INSERT ON "{ds}_rejected" '
                    "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
                )
            )
        else:
            conn.execute(
                text(
                    f"CREATE TRIGGER {trigger} BEFORE INSERT ON `{ds}_rejected` FOR EACH "
                    "ROW SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'disk full'"
                )
            )
    schema = load_settings().load_schema()
    with pytest.raises(StageFailed, match=r"refused a statement .*disk full") as err:
        clean.clean_batch(engine, tables, schema, first.batch_id, None)
    assert not err.value.transient and "\n" not in str(err.value)
    assert (row_keys(f"{ds}_cleaned"), row_keys(f"{ds}_rejected")) == before


def batch_tables() -> tuple[list[tuple], list[tuple]]:
    """Every cleaned row and every rejected row with its reason, in line order."""
    engine, tables = open_store()
    with engine.connect() as conn:
        return [
            tuple(row)
            for table in (tables.cleaned, tables.rejected)
            for row in [conn.execute(table.select().order_by(table.c.line_no)).all()]
        ]


@pytest.mark.parametrize("threshold", [None, 0.25])
def test_chunked_clean_gives_the_same_rows_as_one_chunk(
    env: dict, tmp_path: Path, threshold: float | None
) -> None:
    """Bad rows crowd into the last chunks, so a per-chunk quarantine would differ: the batch
    is judged whole (30 % rejected: admitted with no threshold, quarantined at 25 %)."""
    good = [f"{4 + i % 30 / 10},3.{i % 9},1.4,0.{1 + i % 7},{['setosa', 'virginica'][i % 2]}"
            for i in range(14)]  # fmt: skip
    bad = ["abc,3.5,1.4,0.2,setosa", "1,2", "NULL,1,1,1,setosa", " inf ,1,1,1,setosa",
           "1,1,1,1,rose", "NA,,1,1,setosa"]  # fmt: skip
    load(write_csv(tmp_path / "in", "a.csv", good + bad))
    engine, tables = open_store()
    schema = load_settings().load_schema()
    with engine.connect() as conn:
        (batch,) = store.pending_batches(conn, tables)
    results = []
    for chunk_rows in (1_000, 3, 1):
        report = clean.clean_batch(engine, tables, schema, batch, threshold, chunk_rows)
        results.append((report, batch_tables()))
    assert results[0] == results[1] == results[2]
    report, (cleaned, rejected) = results[0]
    assert (report.failed, report.quarantined) == (6, threshold is not None)
    assert len(cleaned) + len(rejected) == 20 and len(rejected) == (6 if threshold is None else 20)


def test_bad_files_are_refused_before_anything_is_written(env: dict, tmp_path: Path) -> None:
    binary = tmp_path / "in" / "b.csv"
    binary.parent.mkdir()
    binary.write_bytes(b"\x00\x01\x02" * 100)
    with pytest.raises(BadInput, match="binary file"):
        load(binary)
    engine, tables = open_store()
    with engine.connect() as conn:
        assert not engine.dialect.has_table(conn, tables.raw.name)


def test_a_ten_megabyte_line_is_kept_and_rejected(env: dict, tmp_path: Path) -> None:
    huge = "9" * 10_000_000
    report = load(write_csv(tmp_path / "in", "big.csv", [*GOOD_ROWS * 4, huge]))
    assert report.rows == 13
    (cleaned,) = clean_pending(threshold=0.2)
    assert (cleaned.cleaned, cleaned.rejected) == (12, 1)
    engine, tables = open_store()
    with engine.connect() as conn:
        row = conn.execute(tables.rejected.select()).mappings().one()
    assert len(row["sepal length (cm)"]) == 10_000_000
    assert row["reason"].startswith("wrong number of fields: expected 5, got 1")


KILL_SCRIPT = """
import sys
from pathlib import Path
from tests.integration.helpers import open_store
from retrain.data import ingest
engine, tables = open_store()
ingest.load_file(engine, tables, Path(sys.argv[1]), "utf-8", chunk_rows=5000)
"""


def load_in_flight(engine) -> bool:
    """Whether an uncommitted load has written rows, seen from outside its transaction."""
    if engine.dialect.name == "sqlite":
        wal = Path(engine.url.database + "-wal")
        return wal.exists() and wal.stat().st_size > 2_000_000
    with engine.connect() as conn:
        query = "SELECT COUNT(*) FROM information_schema.processlist WHERE info LIKE 'LOAD DATA%'"
        return int(conn.execute(text(query)).scalar_one()) > 0


def test_a_load_killed_half_way_leaves_nothing_and_reruns_whole(env: dict, tmp_path: Path) -> None:
    rows = [
        f"{5 + i % 3}.{i % 10},3.{i % 7},1.{i % 9},0.{1 + i % 8},setosa" for i in range(1_000_000)
    ]
    path = write_csv(tmp_path / "in", "big.csv", rows)
    ds = env["RETRAIN_DATASET"]
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, str(path)], cwd=Path(__file__).parents[2]
    )
    try:
        engine, _ = open_store()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and not load_in_flight(engine):
            time.sleep(0.02)
        assert load_in_flight(engine), "no uncommitted load was seen within 120 s"
        time.sleep(0.5)
        assert proc.poll() is None, "the load finished before it could be killed; use a bigger file"
    finally:
        proc.kill()
        proc.wait(10)
    assert count(f"{ds}_raw") == 0 and count(f"{ds}_batches") == 0
    report = load(path, chunk_rows=50_000)
    assert report.rows == 1_000_000 and count(f"{ds}_raw") == 1_000_000

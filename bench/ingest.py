"""Bulk-load speed: this project's ingest against MySQL's own LOAD DATA, on one server, one run.

    ./dev python -m bench.ingest [--rows 1000000]

Starts a throwaway MariaDB (or uses RETRAIN_TEST_MYSQL_URL), writes one CSV of N iris-shaped
rows, and loads it three ways into the same server: LOAD DATA LOCAL INFILE into a bare table
(the baseline), `retrain`'s ingest (parse, hash, bookkeeping, one transaction), and pandas
`to_sql` with its defaults. Prints rows/s of each, the ratio to the baseline, and the peak
memory of retrain's ingest: this process and its children (the chunk writer) summed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import tempfile
import threading
import time
from contextlib import nullcontext
from pathlib import Path

import pandas as pd
import psutil
from sqlalchemy import text

from retrain.config.dataset_schema import load_dataset_schema
from retrain.config.settings import BUNDLED_SCHEMAS, Settings
from retrain.data import ingest
from retrain.io import engines, store
from tests.support.services import mariadb_server

SPECIES = ["setosa", "versicolor", "virginica"]
MIB = 1024 * 1024


def write_source(path: Path, rows: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as out:
        out.write(
            '"sepal length (cm)","sepal width (cm)","petal length (cm)","petal width (cm)",target\n'
        )
        for _ in range(rows):
            values = ",".join(f"{rng.uniform(0.1, 8):.1f}" for _ in range(4))
            out.write(f"{values},{rng.choice(SPECIES)}\n")


def time_load_data(engine, path: Path) -> float:
    """The baseline: the server's own bulk loader into a bare table with the file's columns."""
    wait_for_quiet_server(engine)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS bench_bare"))
        conn.execute(
            text(
                "CREATE TABLE bench_bare (a DOUBLE, b DOUBLE, c DOUBLE, d DOUBLE, "
                "target VARCHAR(32)) CHARACTER SET utf8mb4"
            )
        )
    start = time.perf_counter()
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "LOAD DATA LOCAL INFILE %s INTO TABLE bench_bare CHARACTER SET utf8mb4 FIELDS "
            "TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' LINES TERMINATED BY '\\n' "
            "IGNORE 1 LINES",
            (str(path),),
        )
    return time.perf_counter() - start


def wait_for_quiet_server(engine, limit: float = 30.0) -> None:
    """Let InnoDB finish flushing the previous round, so neither side pays for the other."""
    deadline = time.monotonic() + limit
    with engine.connect() as conn:
        while time.monotonic() < deadline:
            dirty = conn.execute(text("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_dirty'"))
            if int(dirty.one()[1]) < 100:
                return
            time.sleep(0.2)


class TreePeak:
    """The peak RSS of this process and the descendants started inside the block (the
    ingest's chunk writer) summed, polled every 0.05 s; processes that ran before the block
    (the MariaDB server this bench started) are not counted."""

    def __init__(self) -> None:
        self.peak, self.stop = 0, threading.Event()
        self.poller = threading.Thread(target=self.poll, daemon=True)
        self.earlier = {p.pid for p in psutil.Process().children(recursive=True)}

    def tree_rss(self) -> int:
        me = psutil.Process()
        total = 0
        for proc in [me, *me.children(recursive=True)]:
            if proc.pid in self.earlier:
                continue
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total

    def poll(self) -> None:
        while not self.stop.wait(0.05):
            self.peak = max(self.peak, self.tree_rss())

    def __enter__(self) -> TreePeak:
        self.before = self.tree_rss()
        self.poller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.poller.join()


def time_retrain(engine, path: Path, dataset: str, chunk_rows: int) -> float:
    wait_for_quiet_server(engine)
    tables = store.dataset_tables(dataset, load_dataset_schema(BUNDLED_SCHEMAS / "iris.yaml"))
    start = time.perf_counter()
    report = ingest.load_file(engine, tables, path, "utf-8", chunk_rows)
    elapsed = time.perf_counter() - start
    assert not report.already_loaded
    return elapsed


def time_to_sql(engine, path: Path) -> float:
    start = time.perf_counter()
    for chunk in pd.read_csv(path, chunksize=100_000, dtype=str):
        chunk.to_sql("bench_to_sql", engine, if_exists="append", index=False)
    return time.perf_counter() - start


def show(label: str, seconds: float, rows: int) -> None:
    print(f"{label:<36}: {seconds:7.2f} s  {rows / seconds:10,.0f} rows/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="alternating rounds (median)")
    parser.add_argument("--chunk-rows", type=int, default=Settings().chunk_rows)
    parser.add_argument("--skip-to-sql", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        work = Path(tmp)
        source = work / "source.csv"
        write_source(source, args.rows)
        given = os.environ.get("RETRAIN_TEST_MYSQL_URL")
        with nullcontext(given) if given else mariadb_server(work) as url:
            engine = engines.make_engine(url)
            baselines, runs, peaks = [], [], []
            for round_no in range(args.repeat):
                baselines.append(time_load_data(engine, source))
                with TreePeak() as peak:
                    dataset = f"bench{int(time.time())}_{round_no}"
                    runs.append(time_retrain(engine, source, dataset, args.chunk_rows))
                peaks.append(peak)
            baseline, ours = statistics.median(baselines), statistics.median(runs)
            to_sql = None if args.skip_to_sql else time_to_sql(engine, source)
        size_mb = source.stat().st_size / 1e6
    print(
        f"source: {args.rows:,} rows, {size_mb:.1f} MB, one MariaDB server, same run, "
        f"{args.repeat} alternating rounds, medians"
    )
    print("rounds LOAD DATA s:", " ".join(f"{t:.2f}" for t in baselines))
    print("rounds retrain s  :", " ".join(f"{t:.2f}" for t in runs))
    show("LOAD DATA LOCAL INFILE (bare table)", baseline, args.rows)
    show("retrain ingest (raw + bookkeeping)", ours, args.rows)
    if to_sql is not None:
        show("pandas to_sql (defaults)", to_sql, args.rows)
    print(f"ratio retrain / LOAD DATA throughput: {baseline / ours:.2f} (target >= 0.50)")
    top = max(peaks, key=lambda p: p.peak)
    print(
        f"peak RSS of retrain's process tree during ingest: {top.peak / MIB:.0f} MiB "
        f"({(top.peak - top.before) / MIB:+.0f} MiB over its {top.before / MIB:.0f} MiB before; "
        "the chunk writer included, the database server not)"
    )


if __name__ == "__main__":
    main()

"""Chunk files for MySQL's LOAD DATA LOCAL INFILE.

`source_chunks` parses, hashes and writes a source file's records in a child process
(`python -m retrain.io.load_data_files`) while the loader streams the previous chunk to the server:
the CPU work then does not compete for the GIL with the driver. The child runs at most two
chunks ahead and exits when its parent goes away (its stdin closes). Standard library only
(plus `retrain.io.source_files`), so the child starts in milliseconds.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from pathlib import Path

from retrain.io import source_files

Chunk = tuple[Path, int]


def chunked(rows: Iterable[tuple], size: int) -> Iterator[list[tuple]]:
    iterator = iter(rows)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def write_chunk(path: Path, chunk: list[tuple]) -> None:
    """CSV quoted only where needed, except rows holding the bare word NULL (which LOAD DATA
    would read as SQL NULL unless it is quoted)."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        minimal = csv.writer(handle, lineterminator="\n")
        quoted = csv.writer(handle, quoting=csv.QUOTE_ALL, lineterminator="\n")
        for row in chunk:
            (quoted if "NULL" in row else minimal).writerow(row)


def typed_field(value: object) -> str:
    """One value as LOAD DATA (`OPTIONALLY ENCLOSED BY '"' ESCAPED BY ''`) reads it back:
    None as the bare word NULL (SQL NULL), a bool as 1/0, a number bare, any other value as a
    quoted string (so the string "NULL" stays a string; inner quotes are doubled)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return repr(value)
    return '"' + str(value).replace('"', '""') + '"'


def write_typed_chunk(path: Path, chunk: list[tuple]) -> None:
    """Rows of plain Python values (str, int, float, bool, None) in `typed_field`'s format."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.writelines(",".join(map(typed_field, row)) + "\n" for row in chunk)


def write_chunks(rows: Iterable[tuple], size: int, folder: Path) -> Iterator[Chunk]:
    """Typed chunk files written in turn, each one after the previous was consumed."""
    for chunk in chunked(rows, size):
        path = folder / "chunk.csv"
        write_typed_chunk(path, chunk)
        yield path, len(chunk)


def source_chunks(
    src: source_files.SourceFile, columns: list[str], size: int, folder: Path
) -> Iterator[Chunk]:
    """Chunk files of a source file's records, prepared by a child process one step ahead."""
    spec = {
        "source": {**asdict(src), "path": str(src.path)},
        "columns": columns,
        "size": size,
        "folder": str(folder),
    }
    child = subprocess.Popen(
        [sys.executable, "-m", "retrain.io.load_data_files"],
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        child.stdin.write(json.dumps(spec) + "\n")
        child.stdin.flush()
        while (line := child.stdout.readline()) != "done\n":
            if not line:
                raise RuntimeError(f"chunk writer failed: {child.stderr.read().strip()[-500:]}")
            path, count = line.rstrip("\n").split("\t")
            yield Path(path), int(count)
            with contextlib.suppress(BrokenPipeError):  # the child may be done already
                child.stdin.write("ack\n")
                child.stdin.flush()
    finally:
        if child.poll() is None:
            child.kill()
        with contextlib.suppress(BrokenPipeError):
            child.stdin.close()
        child.wait()


def _serve(spec: dict) -> None:
    """Child side: write chunk k only when chunks up to k-3 were loaded (three files rotate)."""
    src = source_files.SourceFile(**{**spec["source"], "path": Path(spec["source"]["path"])})
    records = source_files.iter_records(src, spec["columns"])
    acked = 0
    for number, chunk in enumerate(chunked(records, spec["size"])):
        while acked < number - 2:
            if not sys.stdin.readline():
                return
            acked += 1
        path = Path(spec["folder"]) / f"chunk{number % 3}.csv"
        write_chunk(path, chunk)
        print(f"{path}\t{len(chunk)}", flush=True)
    print("done", flush=True)


if __name__ == "__main__":
    _serve(json.loads(sys.stdin.readline()))

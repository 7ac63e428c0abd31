"""Source files: checking a CSV file before anything is written, and streaming its rows.

A batch is one file; its id is the content hash of the file's bytes. Rows come out as text,
with their line number, a hash of their content and their field count, so that ragged rows
are kept (and rejected later, with a reason) instead of being lost.
"""

from __future__ import annotations

import codecs
import csv
import glob
import hashlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from retrain.errors import BadInput

BLOCK = 1 << 20
BLOCK_LINES = 5_000
FIELD_SEPARATOR = "\x1f"
csv.field_size_limit(1 << 30)


@dataclass(frozen=True)
class SourceFile:
    """A CSV file that passed the whole-file checks."""

    path: Path
    batch_id: str
    header: list[str]
    encoding: str


def list_csv_files(source: Path) -> list[Path]:
    """The file itself, every *.csv file of a folder, or every file a glob matches, in name
    order."""
    if any(ch in str(source) for ch in "*?["):
        files = sorted(Path(p) for p in glob.glob(str(source.expanduser())) if Path(p).is_file())
        if not files:
            raise BadInput(
                f"{source}: no file matches this pattern; check --source or RETRAIN_SOURCE"
            )
        return files
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() == ".csv" and p.is_file())
        if not files:
            raise BadInput(f"{source}: folder has no *.csv files; point --source at a CSV file")
        return files
    if not source.exists():
        raise BadInput(f"{source}: no such file or folder; check --source")
    return [source]


def _python_encoding(encoding: str) -> str:
    """utf-8 files may start with a byte-order mark; read them as utf-8-sig so it is dropped."""
    try:
        name = codecs.lookup(encoding).name
    except LookupError as err:
        raise BadInput(
            f"unknown encoding {encoding!r}; pass --encoding with a Python codec name"
        ) from err
    return "utf-8-sig" if name == "utf-8" else encoding


def hash_and_check_text(path: Path, encoding: str) -> str:
    """Hash the file's bytes, refusing binary or undecodable content; returns the batch id."""
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder(_python_encoding(encoding))()
    line, size = 1, 0
    try:
        with path.open("rb") as handle:
            while block := handle.read(BLOCK):
                if b"\x00" in block:
                    raise BadInput(f"{path}: binary file (NUL byte near line {line}); not CSV")
                digest.update(block)
                try:
                    decoder.decode(block)
                except UnicodeDecodeError as err:
                    at = line + block[: err.start].count(b"\n")
                    raise BadInput(
                        f"{path}: line {at} is not valid {encoding}; pass --encoding "
                        "(e.g. --encoding latin-1) or set RETRAIN_ENCODING"
                    ) from err
                line += block.count(b"\n")
                size += len(block)
            decoder.decode(b"", final=True)
    except OSError as err:
        raise BadInput(
            f"{path}: cannot read ({err.strerror}); check the path and permissions"
        ) from err
    except UnicodeDecodeError as err:
        raise BadInput(f"{path}: ends inside a {encoding} character; pass --encoding") from err
    if size == 0:
        raise BadInput(f"{path}: file is empty; expected a CSV header and data rows")
    return digest.hexdigest()[:16]


def check_header(path: Path, encoding: str, expected: list[str]) -> list[str]:
    """Read the header; refuse a file missing the expected columns, with extra ones, or no rows."""
    with path.open(encoding=encoding, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        has_rows = any(row for row in reader)
    if not header or not any(h.strip() for h in header):
        raise BadInput(f"{path}: first line is not a CSV header; expected columns {expected}")
    header = [h.strip() for h in header]
    missing = [c for c in expected if c not in header]
    if missing:
        shown = ", ".join(repr(h[:40]) for h in header[:8])
        raise BadInput(
            f"{path}: header lacks columns {missing} (found {shown}); fix the file "
            "or set RETRAIN_SCHEMA to the schema of this dataset"
        )
    extra = [h for h in header if h not in expected]
    if extra:
        raise BadInput(
            f"{path}: header has columns the schema does not know: {extra[:8]}; "
            "remove them or add them to the schema (RETRAIN_SCHEMA)"
        )
    if len(set(header)) != len(header):
        raise BadInput(f"{path}: header repeats a column name; each column must appear once")
    if not has_rows:
        raise BadInput(f"{path}: has a header but no data rows; nothing to load")
    return header


def open_source(path: Path, encoding: str, expected: list[str]) -> SourceFile:
    """Check a whole file before any row is written: text, decodable, right header, has rows."""
    batch_id = hash_and_check_text(path, encoding)
    codec = _python_encoding(encoding)
    header = check_header(path, codec, expected)
    return SourceFile(path=path, batch_id=batch_id, header=header, encoding=codec)


def row_hash(values: list[str]) -> str:
    """Hash of a row's content: identical rows share it (and so share their holdout side)."""
    return hashlib.blake2b(FIELD_SEPARATOR.join(values).encode(), digest_size=8).hexdigest()


@dataclass(frozen=True)
class _Layout:
    """Where the wanted columns sit in a file's rows."""

    positions: list[int]
    width: int

    def record(self, fields: list[str], line_no: int) -> tuple:
        """(values in column order..., line_no, row_hash, n_fields, extra_fields)."""
        n = len(fields)
        if n == self.width:
            values = [fields[p] for p in self.positions]
            return (*values, line_no, row_hash(values), n, "")
        padded = fields + [""] * (self.width - n)
        values = [padded[p] for p in self.positions]
        extra = FIELD_SEPARATOR.join(fields[self.width :])
        return (*values, line_no, row_hash([*values, extra] if extra else values), n, extra)

    def plain_records(self, block: list[str], first: int) -> Iterator[tuple]:
        """Records of plain lines; the common shape (all fields, file order) skips reordering."""
        in_order = self.positions == list(range(self.width))
        for line_no, line in enumerate(block, first):
            text = line.rstrip("\n")
            if not text:
                continue
            fields = text.split(",")
            if in_order and len(fields) == self.width:
                yield (*fields, line_no, row_hash(fields), self.width, "")
            else:
                yield self.record(fields, line_no)


def _is_plain(block: list[str]) -> bool:
    """Lines with no quote and no carriage return: splitting on commas is exactly CSV."""
    text = "".join(block)
    return '"' not in text and "\r" not in text


def _parse_block(block: list[str], rest: Iterator[str], layout: _Layout, first: int):
    """Records of a block with quotes, by the csv module; a quoted field may run into `rest`.

    Returns the records and the number of lines consumed."""
    reader = csv.reader(itertools.chain(block, rest))
    records = []
    while reader.line_num < len(block):
        start = first + reader.line_num
        fields = next(reader, None)
        if fields is None:
            break
        if fields:
            records.append(layout.record(fields, start))
    return records, reader.line_num


def iter_records(source: SourceFile, columns: list[str]) -> Iterator[tuple]:
    """Yield (values in `columns` order..., line_no, row_hash, n_fields, extra_fields).

    `line_no` is the file line where the record starts (the header is line 1). Missing fields
    of a short row are '', the surplus of a long row is kept in `extra_fields`. Blocks of plain
    lines are split directly (the common case, several times faster); a block holding quotes
    goes through the csv module, so quoted commas and newlines stay data.
    """
    layout = _Layout([source.header.index(c) for c in columns], len(source.header))
    with source.path.open(encoding=source.encoding, newline="") as handle:
        lines = iter(handle)
        header = csv.reader(lines)
        next(header)
        line_no = header.line_num + 1
        while block := list(itertools.islice(lines, BLOCK_LINES)):
            if _is_plain(block):
                yield from layout.plain_records(block, line_no)
                line_no += len(block)
            else:
                records, consumed = _parse_block(block, lines, layout, line_no)
                yield from records
                line_no += consumed

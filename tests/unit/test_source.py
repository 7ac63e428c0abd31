"""Whole-file checks and record parsing of source CSV files (local temp files, no database)."""

from __future__ import annotations

from pathlib import Path

import pytest

from retrain.config.dataset_schema import load_dataset_schema
from retrain.config.settings import BUNDLED_SCHEMAS
from retrain.errors import BadInput
from retrain.io.load_data_files import typed_field
from retrain.io.source_files import iter_records, list_csv_files, open_source

COLUMNS = load_dataset_schema(BUNDLED_SCHEMAS / "iris.yaml").columns
HEADER = ",".join(f'"{c}"' for c in COLUMNS)


def write(tmp_path: Path, text: str | bytes, name: str = "a.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"", "file is empty"),
        (HEADER + "\n", "header but no data rows"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00", "binary file"),
        ("a,b,c\n1,2,3\n", "header lacks columns"),
        (HEADER + ",extra\n1,2,3,4,setosa,9\n", "columns the schema does not know"),
        ((HEADER + "\n5.1,3.5,1.4,0.2,s\xe9tosa\n").encode("latin-1"), "not valid utf-8"),
    ],
)
def test_unreadable_files_are_refused_whole_with_one_line(tmp_path: Path, content, words) -> None:
    with pytest.raises(BadInput) as err:
        open_source(write(tmp_path, content), "utf-8", COLUMNS)
    message = str(err.value)
    assert words in message and "\n" not in message
    assert err.value.exit_code == 2


def test_encoding_error_names_the_line_and_the_option(tmp_path: Path) -> None:
    text = HEADER + "\n5.1,3.5,1.4,0.2,setosa\n5.1,3.5,1.4,0.2,s\xe9tosa\n"
    path = write(tmp_path, text.encode("latin-1"))
    with pytest.raises(BadInput, match=r"line 3 is not valid utf-8; pass --encoding"):
        open_source(path, "utf-8", COLUMNS)
    assert open_source(path, "latin-1", COLUMNS).header == COLUMNS


def test_missing_file_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="no such file"):
        list_csv_files(tmp_path / "nope.csv")
    with pytest.raises(BadInput, match=r"no \*\.csv files"):
        list_csv_files(tmp_path)


def test_quoted_commas_newlines_and_ragged_rows_are_records(tmp_path: Path) -> None:
    text = (
        HEADER + '\n"5,1",3.5,1.4,0.2,"set\nosa"\n1,2\n1,2,3,4,virginica,x,y\n\n6,3,5,2,virginica\n'
    )
    src = open_source(write(tmp_path, text), "utf-8", COLUMNS)
    records = list(iter_records(src, COLUMNS))
    assert next(r[:5] for r in records) == ("5,1", "3.5", "1.4", "0.2", "set\nosa")
    assert [r[5] for r in records] == [2, 4, 5, 7]
    assert records[1][:5] == ("1", "2", "", "", "") and records[1][7] == 2
    assert records[2][7] == 7 and records[2][8] == "x\x1fy"


def test_columns_are_matched_by_name_and_identical_rows_share_a_hash(tmp_path: Path) -> None:
    reordered = ",".join(f'"{c}"' for c in reversed(COLUMNS))
    first = write(tmp_path, HEADER + "\n5.1,3.5,1.4,0.2,setosa\n5.1,3.5,1.4,0.2,setosa\n", "a.csv")
    second = write(tmp_path, reordered + "\nsetosa,0.2,1.4,3.5,5.1\n", "b.csv")
    a = list(iter_records(open_source(first, "utf-8", COLUMNS), COLUMNS))
    b = list(iter_records(open_source(second, "utf-8", COLUMNS), COLUMNS))
    assert a[0][:5] == b[0][:5] == ("5.1", "3.5", "1.4", "0.2", "setosa")
    assert a[0][6] == a[1][6] == b[0][6]


def test_batch_id_is_the_content_hash(tmp_path: Path) -> None:
    text = HEADER + "\n5.1,3.5,1.4,0.2,setosa\n"
    one = open_source(write(tmp_path, text, "a.csv"), "utf-8", COLUMNS)
    two = open_source(write(tmp_path, text, "b.csv"), "utf-8", COLUMNS)
    three = open_source(write(tmp_path, text + "1,1,1,1,setosa\n", "c.csv"), "utf-8", COLUMNS)
    assert one.batch_id == two.batch_id != three.batch_id


def test_a_utf8_byte_order_mark_is_not_part_of_the_header(tmp_path: Path) -> None:
    path = write(tmp_path, ("\ufeff" + HEADER + "\n5.1,3.5,1.4,0.2,setosa\n").encode())
    assert open_source(path, "utf-8", COLUMNS).header == COLUMNS


def test_plain_and_quoted_blocks_agree_on_values_lines_and_hashes(tmp_path: Path) -> None:
    plain = ["5.1,3.5,1.4,0.2,setosa"] * 6000
    quoted = '"5.1",3.5,1.4,0.2,"set\nosa"\n5.1,3.5,1.4,0.2,setosa\n'
    text = HEADER + "\n" + "\n".join(plain) + "\n" + quoted
    records = list(iter_records(open_source(write(tmp_path, text), "utf-8", COLUMNS), COLUMNS))
    assert len(records) == 6002
    assert [r[5] for r in records[-3:]] == [6001, 6002, 6004]
    assert records[-2][:5] == ("5.1", "3.5", "1.4", "0.2", "set\nosa")
    assert records[0][6] == records[-1][6] == records[5999][6]
    assert records[0][:5] == records[-1][:5]


@pytest.mark.parametrize(
    ("value", "field"),
    [
        (None, "NULL"),
        ("NULL", '"NULL"'),
        ("", '""'),
        ('say "hi", twice', '"say ""hi"", twice"'),
        ("set\nosa", '"set\nosa"'),
        (True, "1"),
        (False, "0"),
        (-7, "-7"),
        (0.1, "0.1"),
        (1e-300, "1e-300"),
    ],
)
def test_typed_chunk_fields_keep_null_strings_and_booleans_apart(value, field: str) -> None:
    """LOAD DATA (ESCAPED BY '', OPTIONALLY ENCLOSED BY '"') reads a bare NULL as SQL NULL."""
    assert typed_field(value) == field

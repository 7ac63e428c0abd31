"""Batch scoring's pure parts: which files a source names, and the report."""

from __future__ import annotations

from pathlib import Path

import pytest

from retrain.errors import BadInput
from retrain.scoring.batch_score import ScoreReport, file_digest, list_score_files


def test_a_folder_gives_its_csv_and_parquet_files_in_order(tmp_path: Path) -> None:
    for name in ("b.parquet", "a.csv", "notes.txt", "sub/c.CSV"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x\n1\n")
    assert [p.name for p in list_score_files(tmp_path)] == ["a.csv", "b.parquet", "c.CSV"]
    assert list_score_files(tmp_path / "a.csv") == [tmp_path / "a.csv"]


def test_a_missing_source_or_an_empty_folder_says_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="no such file or folder; pass --source"):
        list_score_files(tmp_path / "nope")
    with pytest.raises(BadInput, match=r"no \.csv or \.parquet file"):
        list_score_files(tmp_path)


def test_the_digest_follows_the_content_not_the_name(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("x\n1\n")
    (tmp_path / "b.csv").write_text("x\n1\n")
    (tmp_path / "c.csv").write_text("x\n2\n")
    assert file_digest(tmp_path / "a.csv") == file_digest(tmp_path / "b.csv")
    assert file_digest(tmp_path / "a.csv") != file_digest(tmp_path / "c.csv")


def test_the_report_gives_rows_per_second() -> None:
    report = ScoreReport("fish_scores", 2, 1000, "3", 2.0)
    assert report.describe() == (
        "scored 1000 rows of 2 file(s) with version 3 into fish_scores in 2.0 s (500 rows/s)"
    )

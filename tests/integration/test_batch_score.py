"""`retrain score` through a real local Spark (Java 17 from Debian, pyspark from the `spark`
group): 31,000 rows of CSV and Parquet scored with the fish champion into MariaDB. That a
second scoring replaces a file's rows is test_scores_table's."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import text

from retrain.io import tracking
from retrain.io.engines import make_engine
from retrain.model import logged_model
from retrain.scoring.batch_score import file_digest
from tests.support import fish

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CSV_ROWS, PARQUET_ROWS = 30_000, 1_000


def fish_rows(rows: int, seed: int) -> pd.DataFrame:
    """Rows as a source has them: nulls in the nullable features, an unseen colour."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "size": rng.normal(size=rows) + rng.integers(0, 3, rows),
            "count": pd.array(rng.integers(0, 9, rows), dtype="Int64"),
            "member": pd.array(rng.choice([True, False], rows), dtype="boolean"),
            "colour": rng.choice(["red", "blue", "green", "violet"], rows),
        }
    )
    frame.loc[frame.index % 11 == 0, "count"] = pd.NA
    frame.loc[frame.index % 3 == 1, "member"] = pd.NA
    frame.loc[frame.index % 7 == 0, "colour"] = None
    return frame


@pytest.fixture
def score_env(tmp_path: Path, mysql_url: str, prefect_api: str) -> dict[str, str]:
    tracking_uri, version = fish.log_and_register(tmp_path / "mlflow")
    tracking.make_client(tracking_uri).set_registered_model_alias(fish.MODEL, "champion", version)
    return {
        "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
        "HOME": str(tmp_path),
        "RETRAIN_HOME": str(tmp_path / "home"),
        "RETRAIN_DB_URL": mysql_url,
        "RETRAIN_DATASET": f"fish{uuid.uuid4().hex[:8]}",
        "RETRAIN_MODEL_NAME": fish.MODEL,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "PREFECT_API_URL": prefect_api,
        "PREFECT_API_AUTH_STRING": os.environ["PREFECT_API_AUTH_STRING"],
        # 256 KiB splits: the CSV is read as several partitions, so line numbers cross them
        "PYSPARK_SUBMIT_ARGS": "--conf spark.sql.files.maxPartitionBytes=262144 pyspark-shell",
    }


def score(source: Path, environ: dict[str, str]) -> str:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "retrain"), "score", "--source", str(source)],
        env=environ, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.heavy
def test_every_row_is_scored_once_with_the_labels_of_the_in_process_model(
    score_env: dict[str, str], tmp_path: Path
) -> None:
    source = tmp_path / "to-score"
    source.mkdir()
    big, small = fish_rows(CSV_ROWS, 1), fish_rows(PARQUET_ROWS, 2)
    big.to_csv(source / "big.csv", index=False)
    small.to_parquet(source / "small.parquet", index=False)
    out = score(source, score_env)
    assert f"scored {CSV_ROWS + PARQUET_ROWS} rows of 2 file(s) with version 1" in out
    table = f"{score_env['RETRAIN_DATASET']}_scores"
    engine = make_engine(score_env["RETRAIN_DB_URL"])
    with engine.connect() as conn:
        scored = pd.read_sql(text(f"SELECT * FROM {table}"), conn)
    digests = {
        file_digest(source / "big.csv"): (big, 2),  # a CSV's line 1 is its header
        file_digest(source / "small.parquet"): (small, 1),
    }
    assert len(scored) == CSV_ROWS + PARQUET_ROWS
    assert set(scored["source_digest"]) == set(digests)
    assert (scored["model_version"] == "1").all()
    model = logged_model.load_version(score_env["MLFLOW_TRACKING_URI"], fish.MODEL, "1")
    probas = [f"proba_{c}" for c in model.classes]
    assert np.allclose(scored[probas].sum(axis=1), 1.0)
    for digest, (frame, first) in digests.items():
        rows = scored[scored["source_digest"] == digest].set_index("line_no").sort_index()
        assert list(rows.index) == list(range(first, first + len(frame)))
        sample = frame.sample(500, random_state=0)
        expected = model.predict_labels(sample)
        assert list(rows.loc[sample.index + first, "label"]) == [str(v) for v in expected]


def test_score_without_pyspark_exits_2_with_the_install_line(tmp_path: Path) -> None:
    """An interpreter where pyspark cannot be imported (the `spark` group not installed;
    here its import is blocked in the process, as Python does for a None in sys.modules)."""
    source = tmp_path / "rows.csv"
    source.write_text("size,count\n1.0,2\n")
    blocked = (
        "import sys; sys.modules['pyspark'] = None; "
        f"sys.argv = ['retrain', 'score', '--source', {str(source)!r}]; "
        "from cli.app import app; app()"
    )
    environ = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
               "RETRAIN_HOME": str(tmp_path / "home")}  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-c", blocked], env=environ, capture_output=True, text=True, timeout=60
    )
    line = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 2, result.stderr[-2000:]
    assert line.startswith("retrain: pyspark is not installed") and "--group spark" in line


@pytest.mark.parametrize("java", ["none", "11"])
def test_score_without_java_17_exits_2_before_any_server_starts(java: str, tmp_path: Path) -> None:
    """No Java at JAVA_HOME, or an older one there (a stand-in binary that answers
    `-version` as Java 11 does): one line with the fix, exit 2, in well under a second of
    work (no Prefect server, no flow)."""
    jdk = tmp_path / "jdk"
    if java != "none":
        (jdk / "bin").mkdir(parents=True)
        fake = jdk / "bin" / "java"
        fake.write_text(f"#!/bin/sh\necho 'openjdk version \"{java}.0.2\" 2019-01-15' >&2\n")
        fake.chmod(0o755)
    source = tmp_path / "rows.csv"
    source.write_text("size,count\n1.0,2\n")
    environ = {
        "PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "JAVA_HOME": str(jdk),
        "RETRAIN_HOME": str(tmp_path / "home"), "PREFECT_API_URL": "http://127.0.0.1:9/api",
    }  # fmt: skip
    result = subprocess.run(
        [str(Path(sys.executable).parent / "retrain"), "score", "--source", str(source)],
        env=environ, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    line = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 2, result.stderr[-2000:]
    expected = "no Java found" if java == "none" else f"is Java {java}; Spark needs Java 17"
    assert line.startswith("retrain: ") and expected in line and "openjdk-17" in line

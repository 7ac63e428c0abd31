"""Artifacts on S3-compatible storage: with RETRAIN_ARTIFACTS_URI, a night's model goes to a
real S3 API (moto's server on loopback) and every process that loads it (the model server,
Spark's batch scoring) reads it back, with the object store's credentials and endpoint named
only in the settings file."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from retrain.io.bundled_iris import write_bundled_iris
from tests.support.services import free_port, s3_server, stop_model_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]
RETRAIN = str(Path(sys.executable).parent / "retrain")
BUCKET = "retrain-artifacts"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "retrain-test", "AWS_SECRET_ACCESS_KEY": "retrain-test-secret",
               "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[str]:
    with s3_server(tmp_path) as endpoint:
        boto3.client("s3", endpoint_url=endpoint, **lower(CREDENTIALS)).create_bucket(Bucket=BUCKET)
        yield endpoint


def lower(variables: dict[str, str]) -> dict[str, str]:
    names = {"AWS_ACCESS_KEY_ID": "aws_access_key_id", "AWS_DEFAULT_REGION": "region_name",
             "AWS_SECRET_ACCESS_KEY": "aws_secret_access_key"}  # fmt: skip
    return {names[k]: v for k, v in variables.items()}


def run_cli(args: list[str], environ: dict) -> subprocess.CompletedProcess:
    return subprocess.run([RETRAIN, *args], env=environ, capture_output=True, text=True,
                          timeout=900, cwd=Path(__file__).parents[2])  # fmt: skip


@pytest.mark.heavy
def test_a_model_kept_on_s3_is_served_and_scored_by_other_processes(
    s3: str, prefect_api: str, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    settings = {"RETRAIN_ARTIFACTS_URI": f"s3://{BUCKET}/nightly", "MLFLOW_S3_ENDPOINT_URL": s3,
                **CREDENTIALS}  # fmt: skip
    (home / "retrain.env").write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    hidden = ("RETRAIN_", "AWS_", "MLFLOW_")  # nothing of the store's comes from the shell
    environ = {k: v for k, v in os.environ.items() if not k.startswith(hidden)}
    environ |= {"RETRAIN_HOME": str(home), "RETRAIN_SERVE_PORT": str(free_port()),
                "RETRAIN_SUPERVISE": "false", "PREFECT_API_URL": prefect_api}  # fmt: skip
    try:
        night = run_cli(["run", "--trials", "2"], environ)
        assert night.returncode == 0, night.stderr[-3000:]
        predicted = run_cli(["predict", "--sample", "3"], environ)
        assert predicted.returncode == 0, predicted.stderr[-2000:]
        assert predicted.stdout.strip().splitlines()[-1].startswith("3 rows in ")
    finally:
        stop_model_server(home)
    objects = boto3.client("s3", endpoint_url=s3, **lower(CREDENTIALS)).list_objects_v2(
        Bucket=BUCKET, Prefix="nightly/iris_classification_experiment/"
    )
    keys = [o["Key"] for o in objects.get("Contents", [])]
    assert any(k.endswith("/MLmodel") for k in keys), keys[:20]
    assert not list(home.rglob("MLmodel")), "a model was kept on the local disk"
    source = write_bundled_iris(tmp_path / "to-score")
    scored = run_cli(["score", "--source", str(source)], environ)
    assert scored.returncode == 0, scored.stderr[-3000:]
    assert "scored 150 rows of 1 file(s) with version 1" in scored.stdout


def test_a_bad_artifacts_uri_is_one_line_before_anything_runs(tmp_path: Path) -> None:
    environ = {"PATH": os.environ["PATH"], "HOME": str(tmp_path),
               "RETRAIN_HOME": str(tmp_path / "home"), "RETRAIN_ARTIFACTS_URI": "bucket/prefix",
               "PREFECT_API_URL": "http://127.0.0.1:9/api", "RUN_ID": uuid.uuid4().hex}  # fmt: skip
    result = run_cli(["tune"], environ)
    assert result.returncode == 2
    line = result.stderr.strip().splitlines()[-1]
    assert "RETRAIN_ARTIFACTS_URI" in line and "s3://bucket/prefix" in line, line

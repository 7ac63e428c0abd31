"""Artifacts on S3-compatible storage: with RETRAIN_ARTIFACTS_URI, new experiments keep their
models on a real S3 API (moto's server on loopback), and every process that loads one (the
model server `retrain serve start` runs, Spark's batch scoring) reads it back with the object
store's credentials and endpoint named only in the settings file."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from retrain.config.settings import load_settings
from retrain.io import tracking
from retrain.model import logged_model
from retrain.serving import model_server
from tests.support import fish
from tests.support.services import free_port, s3_client, s3_server, stop_model_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]
RETRAIN = str(Path(sys.executable).parent / "retrain")
BUCKET = "retrain-artifacts"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "retrain-test", "AWS_SECRET_ACCESS_KEY": "retrain-test-secret",
               "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[str]:
    with s3_server(tmp_path) as endpoint:
        s3_client(endpoint, CREDENTIALS).create_bucket(Bucket=BUCKET)
        yield endpoint


def run_cli(args: list[str], environ: dict) -> subprocess.CompletedProcess:
    return subprocess.run([RETRAIN, *args], env=environ, capture_output=True, text=True,
                          timeout=600, cwd=Path(__file__).parents[2])  # fmt: skip


@pytest.mark.heavy
def test_a_model_kept_on_s3_is_served_and_scored_by_other_processes(
    s3: str, prefect_api: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    store = {"RETRAIN_ARTIFACTS_URI": f"s3://{BUCKET}/nightly", "MLFLOW_S3_ENDPOINT_URL": s3,
             **CREDENTIALS}  # fmt: skip
    (home / "retrain.env").write_text("".join(f"{k}={v}\n" for k, v in store.items()))
    monkeypatch.setenv("RETRAIN_HOME", str(home))
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", s3)  # this process logs the model
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    tracking_uri, version = fish.log_and_register(
        tmp_path / "mlflow", load_settings().artifact_root
    )
    client = tracking.make_client(tracking_uri)
    client.set_registered_model_alias(fish.MODEL, "champion", version)
    keys = [o["Key"] for o in s3_client(s3, CREDENTIALS).list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert any(k.startswith("nightly/fish/") and k.endswith("/MLmodel") for k in keys), keys[:9]
    assert not list(tmp_path.rglob("MLmodel")), "a model was kept on the local disk"

    # nothing of the store's comes from the environment (as test_batch_score's, a bare one)
    environ = {"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", "HOME": str(tmp_path),
               "PREFECT_API_AUTH_STRING": os.environ["PREFECT_API_AUTH_STRING"]}  # fmt: skip
    environ |= {"RETRAIN_HOME": str(home), "RETRAIN_SERVE_PORT": str(free_port()),
                "RETRAIN_SUPERVISE": "false", "PREFECT_API_URL": prefect_api,
                "MLFLOW_TRACKING_URI": tracking_uri, "RETRAIN_MODEL_NAME": fish.MODEL,
                "RETRAIN_DATASET": f"fish{uuid.uuid4().hex[:6]}"}  # fmt: skip
    try:
        served = run_cli(["serve", "start", "--version", version], environ)
        assert served.returncode == 0, served.stderr[-3000:]
        url = f"http://127.0.0.1:{environ['RETRAIN_SERVE_PORT']}"
        expected = logged_model.load_version(tracking_uri, fish.MODEL, version)
        answered = model_server.invoke(url, fish.raw_rows())
        assert answered == [str(v) for v in expected.predict_labels(fish.raw_rows())]
    finally:
        stop_model_server(home)
    source = tmp_path / "to-score.csv"
    fish.raw_rows().to_csv(source, index=False)
    scored = run_cli(["score", "--source", str(source)], environ)
    assert scored.returncode == 0, scored.stderr[:2000] + " ... " + scored.stderr[-2000:]
    assert f"scored 3 rows of 1 file(s) with version {version}" in scored.stdout


def test_a_bad_artifacts_uri_is_one_line_before_anything_runs(tmp_path: Path) -> None:
    environ = {"PATH": os.environ["PATH"], "HOME": str(tmp_path),
               "RETRAIN_HOME": str(tmp_path / "home"), "RETRAIN_ARTIFACTS_URI": "bucket/prefix",
               "PREFECT_API_URL": "http://127.0.0.1:9/api"}  # fmt: skip
    result = run_cli(["tune"], environ)
    assert result.returncode == 2
    line = result.stderr.strip().splitlines()[-1]
    assert "RETRAIN_ARTIFACTS_URI" in line and "s3://bucket/prefix" in line, line

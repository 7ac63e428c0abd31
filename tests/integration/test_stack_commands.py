"""The compose stack's entry commands, run without Docker: the MySQL init script, `mlflow
server` with its backend store on the test MariaDB, its basic-auth app and its artifacts on a
real S3 API, the MLflow users' one shot, and the worker that serves the champion again on
start, with the same commands and environment variables as docker/compose.yaml. Everything
asks for a password: MLflow, the Prefect server (the suite's runs with its auth string) and
the model endpoint."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pymysql
import pytest
from sqlalchemy.engine import make_url

from retrain.io import mlflow_rest
from retrain.io.bundled_iris import write_bundled_iris
from retrain.serving import model_server
from tests.support import stack
from tests.support.services import (
    basic,
    free_port,
    http_answer,
    http_ok,
    running,
    s3_client,
    s3_server,
    stop_model_server,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
BIN = Path(sys.executable).parent
INIT_SCRIPT = stack.ROOT / "docker/mysql/10-retrain-users.sh"


def run_init_script(mysql_url: str) -> dict[str, str]:
    """docker/mysql/10-retrain-users.sh as MySQL's entrypoint runs it (its docker_process_sql
    feeds SQL to the client as root); returns the variables it was given, unique per test."""
    admin, suffix = make_url(mysql_url), uuid.uuid4().hex[:8]
    names = {
        "RETRAIN_DB_NAME": f"app_{suffix}", "RETRAIN_DB_USER": f"app_{suffix}",
        "RETRAIN_DB_PASSWORD": secrets.token_hex(8), "MLFLOW_DB_NAME": f"mlflow_{suffix}",
        "MLFLOW_DB_USER": f"mlflow_{suffix}", "MLFLOW_DB_PASSWORD": secrets.token_hex(8),
    }  # fmt: skip
    shim = (
        'docker_process_sql() { mariadb --protocol=tcp -h "$HOST" -P "$PORT" -u "$ADMIN" '
        '--password="$ADMIN_PASSWORD" --database=mysql; }; source "$0"'
    )
    admin_env = {"HOST": admin.host, "PORT": str(admin.port), "ADMIN": admin.username,
                 "ADMIN_PASSWORD": admin.password}  # fmt: skip
    result = subprocess.run(
        ["bash", "-c", shim, str(INIT_SCRIPT)], env={**os.environ, **names, **admin_env},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert set(names) <= stack.environment_keys("mysql")
    return {**names, "HOST": admin.host, "PORT": str(admin.port)}


def url_of(db: dict[str, str], role: str) -> str:
    user, password, name = (db[f"{role}_DB_{k}"] for k in ("USER", "PASSWORD", "NAME"))
    return f"mysql+pymysql://{user}:{password}@{db['HOST']}:{db['PORT']}/{name}"


def connect(db: dict[str, str], role: str) -> pymysql.Connection:
    url = make_url(url_of(db, role))
    return pymysql.connect(host=url.host, port=url.port, user=url.username,
                           password=url.password, database=url.database)  # fmt: skip


def test_the_init_script_gives_the_app_user_its_own_database_only(mysql_url: str) -> None:
    db = run_init_script(mysql_url)
    with connect(db, "RETRAIN") as app, app.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY)")
        cur.execute("RENAME TABLE t TO t_swapped")
        cur.execute("DROP TABLE t_swapped")
        with pytest.raises(pymysql.err.OperationalError):
            cur.execute(f"SELECT 1 FROM `{db['MLFLOW_DB_NAME']}`.experiments")
        cur.execute("SHOW GRANTS")
        grants = " ".join(row[0] for row in cur.fetchall())
    assert "ALL PRIVILEGES" not in grants and "FILE" not in grants and "GRANT OPTION" not in grants


async def workers_of(pool: str) -> list:
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

    async with get_client() as client:
        try:
            return await client.read_workers_for_work_pool(pool)
        except (ObjectNotFound, PrefectHTTPStatusError):  # 404: the worker answers its health
            # check before it has created its pool
            return []


def registered_workers(pool: str, timeout: float = 60) -> list:
    deadline = time.monotonic() + timeout
    while not (found := asyncio.run(workers_of(pool))) and time.monotonic() < deadline:
        time.sleep(0.5)
    return found


ADMIN_PASSWORD = secrets.token_urlsafe(16)
PASSWORDS = {"MLFLOW_RETRAIN_PASSWORD": secrets.token_urlsafe(16),
             "MLFLOW_READER_PASSWORD": secrets.token_urlsafe(16)}  # fmt: skip
S3_KEYS = {"AWS_ACCESS_KEY_ID": "stack-test", "AWS_SECRET_ACCESS_KEY": "stack-test-secret",
           "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip
BUCKET = "stack-artifacts"
TOKEN = secrets.token_urlsafe(24)


def mlflow_server(db: dict[str, str], port: int, workdir: Path, base: dict, s3: str):
    """compose's `mlflow` service: its command on loopback, backend store on the test MariaDB,
    the basic-auth app with docker/mlflow/basic_auth.ini (its database in `workdir`), and
    artifacts in a bucket of the S3 API at `s3`."""
    command = stack.command(
        "mlflow",
        {"--host": "127.0.0.1", "--port": str(port),
         "--artifacts-destination": f"s3://{BUCKET}/artifacts"},
    )  # fmt: skip
    auth_ini = workdir / "basic_auth.ini"
    auth_ini.write_text((stack.ROOT / "docker/mlflow/basic_auth.ini").read_text().replace(
        "sqlite:////mlauth/", f"sqlite:///{workdir}/"))  # fmt: skip
    s3_client(s3, S3_KEYS).create_bucket(Bucket=BUCKET)
    env = {
        "MLFLOW_BACKEND_STORE_URI": url_of(db, "MLFLOW"),
        "MLFLOW_SERVER_ALLOWED_HOSTS": f"127.0.0.1:{port},localhost:*",
        "MLFLOW_AUTH_CONFIG_PATH": str(auth_ini),
        "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
        "MLFLOW_S3_ENDPOINT_URL": s3,
        **S3_KEYS,
    }
    assert set(env) == stack.environment_keys("mlflow")
    ready = lambda: http_ok(f"http://127.0.0.1:{port}/health", timeout=3)  # noqa: E731
    return running(command, {**base, **env}, workdir / "mlflow.log", ready, timeout=180)


def create_mlflow_users(mlflow_port: int, base: dict) -> str:
    """compose's `mlflow-users` one shot, as the admin; returns what it printed."""
    env = {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{mlflow_port}",
           "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD, **PASSWORDS}  # fmt: skip
    assert set(env) == stack.environment_keys("mlflow-users")
    done = subprocess.run(
        stack.command("mlflow-users"), env={**base, **env}, cwd=stack.ROOT,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def worker_environment(db: dict[str, str], prefect_api: str, mlflow_port: int, home: Path) -> dict:
    """compose's worker environment, pointing at the services this test started."""
    env = {
        "PREFECT_API_URL": prefect_api,
        "PREFECT_API_AUTH_STRING": os.environ["PREFECT_API_AUTH_STRING"],
        "PREFECT_UI_URL": prefect_api.removesuffix("/api"),
        "RETRAIN_DB_URL": url_of(db, "RETRAIN"),
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{mlflow_port}",
        "MLFLOW_TRACKING_USERNAME": "retrain",
        "MLFLOW_TRACKING_PASSWORD": PASSWORDS["MLFLOW_RETRAIN_PASSWORD"],
        "RETRAIN_SERVE_HOST": "127.0.0.1",
        "RETRAIN_SERVE_TOKEN": TOKEN,
        "RETRAIN_METRICS_TOKEN": f"metrics-{TOKEN}",
        "RETRAIN_SERVE_PORT": str(free_port()),
        "RETRAIN_DATASET": f"s{uuid.uuid4().hex[:8]}",
        "RETRAIN_MODEL_NAME": f"m{uuid.uuid4().hex[:8]}",
        "RETRAIN_EXPERIMENT": "stack-test",
        "RETRAIN_SOURCE": str(write_bundled_iris(home.parent / "data")),
        "RETRAIN_SCHEMA": "",  # empty, as compose passes it when unset: the bundled schema
        "RETRAIN_TIMEZONE": "UTC",
        "RETRAIN_ALERT_URL": "",
        "RETRAIN_PUSHGATEWAY_URL": "",  # no Pushgateway here: the textfile only
    }
    assert set(env) == stack.environment_keys("worker")
    return {**env, "RETRAIN_HOME": str(home)}


@pytest.mark.heavy
def test_stack_commands_tune_on_the_mlflow_server_and_the_worker_serves_the_champion(
    mysql_url: str, prefect_api: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = run_init_script(mysql_url)
    base = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    mlflow_port, health_port, home = free_port(), free_port(), tmp_path / "home"
    env = {**base, **worker_environment(db, prefect_api, mlflow_port, home)}
    env["RETRAIN_SUPERVISE"] = "true"  # the worker's supervisor beside it
    server_uri = f"http://127.0.0.1:{mlflow_port}"
    with s3_server(tmp_path) as s3, mlflow_server(db, mlflow_port, tmp_path, base, s3):
        assert mlflow_status(server_uri, None) == 401  # MLflow asks everyone for a password
        assert create_mlflow_users(mlflow_port, base).splitlines() == [
            "user retrain created", "user reader created",
        ]  # fmt: skip
        run = subprocess.run(
            ["retrain", "run", "--trials", "3", "--no-serve"], env=env, cwd=stack.ROOT,
            capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr[-3000:]
        with connect(db, "MLFLOW") as backend, backend.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM runs")
            assert cur.fetchone()[0] >= 4  # the parent and one run per trial, on MariaDB
        assert any(key.endswith("/MLmodel") for key in bucket_keys(s3)), "no model on S3"
        assert not list(tmp_path.rglob("MLmodel")), "artifacts bypassed the server"
        assert_permissions(server_uri, env["RETRAIN_MODEL_NAME"])
        anonymous = {k: v for k, v in env.items() if not k.startswith("MLFLOW_TRACKING_")}
        anonymous["MLFLOW_TRACKING_URI"] = server_uri
        refused = subprocess.run(["retrain", "promote"], env=anonymous, cwd=stack.ROOT,
                                 capture_output=True, text=True, timeout=300)  # fmt: skip
        line = refused.stderr.strip().splitlines()[-1]
        assert refused.returncode == 1 and "error code 401" in line, refused.stderr[-2000:]
        assert "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD" in line

        pool = f"stack-{uuid.uuid4().hex[:6]}"
        worker = [*stack.command("worker"), "--pool", pool]
        worker_env = {**env, "PREFECT_WORKER_WEBSERVER_PORT": str(health_port)}
        ready = lambda: http_ok(f"http://127.0.0.1:{health_port}/health", timeout=3)  # noqa: E731
        try:
            with running(worker, worker_env, tmp_path / "worker.log", ready, timeout=300) as proc:
                assert len(children_running(proc.pid, b"supervise")) == 1  # beside the worker
                status = subprocess.run(
                    ["retrain", "serve", "status"], env=env, capture_output=True, text=True
                )
                assert "(is the champion), healthy" in status.stdout, status.stderr[-2000:]
                assert "RETRAIN_SERVE_TOKEN is accepted" in status.stdout
                monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "reader")  # the lookup serve
                monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORDS["MLFLOW_READER_PASSWORD"])
                champion = mlflow_rest.rest_alias_version(
                    server_uri, env["RETRAIN_MODEL_NAME"], "champion"
                )
                assert f"version {champion} (is the champion)" in status.stdout
                assert registered_workers(pool), "the worker did not register on its pool"
                port = int(env["RETRAIN_SERVE_PORT"])
                with pytest.raises(urllib.error.HTTPError) as anonymous:
                    predict_one(port, None)
                assert anonymous.value.code == 401
                assert len(predict_one(port, TOKEN)["predictions"]) == 1
        finally:
            stop_model_server(home)


def mlflow_status(
    server: str, user: str | None, method: str = "GET", path: str = "", body: dict | None = None
) -> int:
    """The status MLflow's REST API gives `user` (None: anonymous) for a request."""
    url = f"{server}/api/2.0/mlflow/{path or 'experiments/search?max_results=1'}"
    passwords = {"admin": ADMIN_PASSWORD, "retrain": PASSWORDS["MLFLOW_RETRAIN_PASSWORD"],
                 "reader": PASSWORDS["MLFLOW_READER_PASSWORD"]}  # fmt: skip
    headers = basic(user, passwords[user]) if user else {}
    return http_answer(url, body, method, headers, timeout=10)[0]


def assert_permissions(server: str, model: str) -> None:
    """The reader browses and moves nothing; `retrain` edits only what it owns."""
    alias = {"name": model, "alias": "champion", "version": "1"}
    assert mlflow_status(server, "reader") == 200
    assert mlflow_status(server, "reader", "GET",
                         f"registered-models/get?name={model}") == 200  # fmt: skip
    assert mlflow_status(server, "reader", "POST", "registered-models/alias", alias) == 403
    assert mlflow_status(server, "retrain", "POST", "registered-models/alias", alias) == 200
    admin_owned = {"name": f"admins-{uuid.uuid4().hex[:6]}"}
    assert mlflow_status(server, "admin", "POST", "experiments/create", admin_owned) == 200
    search = f"experiments/get-by-name?experiment_name={admin_owned['name']}"
    assert mlflow_status(server, "retrain", "GET", search) == 200
    found = http_answer(f"{server}/api/2.0/mlflow/{search}", headers=basic("admin", ADMIN_PASSWORD))
    experiment_id = json.loads(found[1])["experiment"]["experiment_id"]
    run = {"experiment_id": experiment_id}
    assert mlflow_status(server, "retrain", "POST", "runs/create", run) == 403


def bucket_keys(s3: str) -> list[str]:
    listed = s3_client(s3, S3_KEYS).list_objects_v2(Bucket=BUCKET)
    return [o["Key"] for o in listed.get("Contents", [])]


def children_running(parent: int, word: bytes) -> list[int]:
    """Pids of `parent`'s children whose command line has `word`."""
    found = []
    for proc in Path("/proc").iterdir():
        fields = model_server.stat_fields(proc.name) if proc.name.isdigit() else None
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if fields is not None and int(fields[1]) == parent and word in cmdline:
            found.append(int(proc.name))
    return found


def predict_one(port: int, token: str | None) -> dict:
    row = {"sepal length (cm)": 5.1, "sepal width (cm)": 3.5, "petal length (cm)": 1.4,
           "petal width (cm)": 0.2}  # fmt: skip
    body = json.dumps({"dataframe_records": [row]}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations", data=body,
        headers={"Content-Type": "application/json",
                 **({"Authorization": f"Bearer {token}"} if token else {})},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())

"""Fixtures: real services (MariaDB, Prefect server) and per-test isolated datasets.

Under CI=true a missing service fails the test; elsewhere it is skipped with the reason.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support import services


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest tests first, then the other slow ones: the two workers pick tests in this
    order, so no multi-minute test starts last and runs alone at the end."""
    items.sort(key=lambda item: 0 if item.get_closest_marker("heavy") else
               1 if item.get_closest_marker("slow") else 2)  # fmt: skip


@pytest.fixture(autouse=True)
def isolated_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's ~/.retrain (its settings file included). No serving
    supervisor is left running unless a test asks for one (RETRAIN_SUPERVISE=true): one that
    restarts what a test stops on purpose would make that test lie."""
    monkeypatch.setenv("RETRAIN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RETRAIN_ENV_FILE", raising=False)
    monkeypatch.setenv("RETRAIN_SUPERVISE", "false")


@pytest.fixture(scope="session")
def mysql_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a real MySQL-compatible server: RETRAIN_TEST_MYSQL_URL, or a MariaDB we start."""
    given = os.environ.get("RETRAIN_TEST_MYSQL_URL")
    if given:
        yield given
        return
    if services.find_mysql_server() is None:
        services.need_service("no mariadbd/mysqld binary found")
    with services.mariadb_server(tmp_path_factory.mktemp("mariadb")) as url:
        yield url


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prefect server for this test session, which asks for its auth string as a
    server on a network should; flows run in-process, and the processes tests start (their
    environment copies this one's), send it."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    auth = f"retrain-tests:{uuid.uuid4().hex}"
    try:
        server = services.prefect_server(tmp_path_factory.mktemp("prefect"), auth=auth)
        api = server.__enter__()
    except RuntimeError as err:
        services.need_service(f"prefect server did not start: {err}")
    os.environ["PREFECT_API_AUTH_STRING"] = auth
    try:
        with temporary_settings(updates={PREFECT_API_URL: api, PREFECT_API_AUTH_STRING: auth}):
            yield api
    finally:
        os.environ.pop("PREFECT_API_AUTH_STRING", None)
        server.__exit__(None, None, None)


@pytest.fixture(params=["sqlite", "mysql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each data-path test runs on the embedded SQLite store and on real MariaDB."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'warehouse.db'}"
    return request.getfixturevalue("mysql_url")


@pytest.fixture
def dataset() -> str:
    """A dataset name (table prefix) no other test uses."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str, dataset: str
) -> Iterator[dict]:
    """Settings environment for one isolated test: own home, store URL, dataset (iris rules
    and data under a unique table prefix) and serving port; a model server the test leaves
    running is stopped by its recorded pid."""
    from retrain.io.bundled_iris import write_bundled_iris

    values = {
        "RETRAIN_SERVE_PORT": str(services.free_port()),
        "RETRAIN_HEALTH_TIMEOUT": "90",
        "RETRAIN_HOME": str(tmp_path / "home"),
        "RETRAIN_DB_URL": db_url,
        "RETRAIN_DATASET": dataset,
        "RETRAIN_SCHEMA": str(Path(__file__).parents[1] / "retrain/config/schemas/iris.yaml"),
        "RETRAIN_SOURCE": str(write_bundled_iris(tmp_path / "bundled")),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    yield values
    services.stop_model_server(Path(values["RETRAIN_HOME"]))


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict]]]:
    """A webhook on loopback that keeps every JSON body it is sent."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/hook", received
    httpd.shutdown()
    httpd.server_close()

"""The serving supervisor against real processes: the fish model served behind a real HAProxy,
its model server killed with SIGKILL while a busy process per core keeps them loaded, then the
proxy killed, then the model server hung (SIGSTOP), then a model that cannot load any more:
answers again within 60 s each time, one alert per restart, and a crash loop that stops
retrying with one alert."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from retrain.config.settings import Settings, load_settings
from retrain.io import tracking
from retrain.io.alerts import Alert
from retrain.serving import deploy, haproxy, model_server
from retrain.serving.supervisor import Supervisor
from tests.support.fish import MODEL, log_and_register, raw_rows
from tests.support.services import free_port, stop_model_server, stop_pid, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def fish_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    tracking_uri, _ = log_and_register(tmp_path / "store")
    for key, value in {
        "RETRAIN_HOME": str(tmp_path / "home"), "MLFLOW_TRACKING_URI": tracking_uri,
        "RETRAIN_MODEL_NAME": MODEL, "RETRAIN_DATASET": "fish",
        "RETRAIN_SERVE_PORT": str(free_port()), "RETRAIN_HEALTH_TIMEOUT": "90",
        "RETRAIN_PROXY": "haproxy",
    }.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    settings = load_settings()
    try:
        yield settings
    finally:
        stop_model_server(settings.home)


@contextmanager
def busy_cores() -> Iterator[None]:
    """A process spinning per core, as a tune keeps both cores of this machine busy (only
    around the first recovery: the suite's other worker shares these cores)."""
    spin = [sys.executable, "-c", "while True: pass"]
    spinners = [  # each in its own session, so that stop_pid stops it
        subprocess.Popen(spin, start_new_session=True) for _ in range(os.cpu_count() or 2)
    ]
    try:
        yield
    finally:
        for spinner in spinners:
            stop_pid(spinner)


def rounds_until_answering(supervisor: Supervisor, url: str, timeout: float = 60) -> float:
    """Run supervisor rounds (as `supervise_forever` does, 1 s apart) until `url` answers
    predictions; returns the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        supervisor.check()
        try:
            if len(model_server.invoke(url, raw_rows(), timeout=5)) == 3:
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(1)
    raise AssertionError(f"{url} did not answer again within {timeout} s")


@pytest.mark.heavy
def test_a_killed_model_server_or_proxy_answers_again_and_a_crash_loop_stops(
    fish_settings: Settings,
) -> None:
    settings, alerts = fish_settings, []
    served = deploy.serve_start(settings, "1", settings.health_timeout)
    assert served.proxy and served.public_url == settings.serve_url
    supervisor = Supervisor(settings, max_restarts=4, notify=lambda a: alerts.append(a))
    assert supervisor.check() is None and alerts == []  # healthy: nothing to do

    with busy_cores():
        kill_model_server(served)
        assert rounds_until_answering(supervisor, settings.serve_url) < 60
    again = model_server.read_state(settings.home)
    assert again is not None, [a.reason for a in alerts]
    assert again.pid != served.pid and again.version == "1" and again.proxy
    assert [a.extra["restarted"] for a in alerts] == ["model server"]
    assert model_server.session_members(served) == []  # the killed server's uvicorn went too

    os.kill(again.proxy["pid"], signal.SIGKILL)
    assert rounds_until_answering(supervisor, settings.serve_url) < 60
    assert model_server.read_state(settings.home).proxy["pid"] != again.proxy["pid"]
    assert [a.extra["restarted"] for a in alerts] == ["model server", "proxy"]

    hung = model_server.read_state(settings.home)  # alive, but answers nothing: SIGSTOP
    for pid in model_server.session_members(hung):
        os.kill(pid, signal.SIGSTOP)
    assert rounds_until_answering(supervisor, settings.serve_url) < 60
    assert model_server.read_state(settings.home).pid != hung.pid
    assert model_server.session_members(hung) == []  # the hung server was stopped, not left behind
    assert [a.extra["restarted"] for a in alerts] == ["model server", "proxy", "model server"]

    break_the_model(settings)
    kill_model_server(model_server.read_state(settings.home))
    deadline = time.monotonic() + 180
    while supervisor.gave_up_on is None and time.monotonic() < deadline:
        supervisor.check()
        time.sleep(1)
    failures = [a for a in alerts if a.kind == "failure"]
    assert len(failures) == 1 and "not retrying" in failures[0].reason
    assert supervisor.check() is None and supervisor.check() is None  # it stays quiet
    assert [a.kind for a in alerts].count("failure") == 1
    assert isinstance(alerts[0], Alert) and alerts[0].source == "retrain"


def test_restarts_older_than_the_window_do_not_make_a_crash_loop() -> None:
    now = time.monotonic()
    spread = Supervisor(load_settings(), max_restarts=3, window=600)
    spread.restarts = [now - 900, now - 700, now - 10, now - 5]  # two inside the window
    assert not spread.crash_looping() and len(spread.restarts) == 2
    close = Supervisor(load_settings(), max_restarts=3, window=600)
    close.restarts = [now - 500, now - 10, now - 5]
    assert close.crash_looping()


def kill_model_server(served: model_server.Served) -> None:
    """SIGKILL to every process of the model server (`mlflow models serve` and its uvicorn),
    by pid: the server dies as in an OOM kill."""
    for pid in model_server.session_members(served):
        os.kill(pid, signal.SIGKILL)


def break_the_model(settings: Settings) -> None:
    """Make the served version unloadable for real: its serialized pipeline is garbage."""
    client = tracking.make_client(settings.tracking_uri)
    source = client.get_model_version(MODEL, "1").source
    logged = client.get_logged_model(source.split("/")[-1])
    files = list(Path(logged.artifact_location.removeprefix("file://")).rglob("pipeline.joblib"))
    assert files
    files[0].write_bytes(b"not a model")


def test_the_supervisor_leaves_a_swap_in_progress_alone(fish_settings: Settings) -> None:
    """While a deploy holds the serving lock, a round does nothing, even with nothing alive."""
    record = model_server.Served(1, "127.0.0.1", free_port(), "1", "models:/fish_model/1", 0.0, "x")
    model_server.write_state(fish_settings.home, record)
    supervisor = Supervisor(fish_settings, notify=lambda a: pytest.fail(f"alerted: {a}"))
    with model_server.serving_lock(fish_settings.home):
        assert supervisor.check() is None
    assert haproxy.recorded(fish_settings.home) is None


def answers(url: str) -> bool:
    try:
        return len(model_server.invoke(url, raw_rows(), timeout=5)) == 3
    except OSError:
        return False


def test_serve_start_leaves_one_supervisor_that_heals_a_kill_and_stops_with_serve_stop(
    fish_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plain-machine path: `retrain serve start` (as run, deploy and rollback do) leaves
    a detached supervisor recorded in serving.json; a second one exits at once; a SIGKILLed
    model server answers again within 60 s with no one running rounds by hand."""
    monkeypatch.setenv("RETRAIN_SUPERVISE", "true")
    home, retrain = fish_settings.home, str(Path(sys.executable).parent / "retrain")
    try:
        started = subprocess.run(
            [retrain, "serve", "start", "--version", "1"], capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip
        assert started.returncode == 0, started.stderr[-2000:]
        watcher = wait_for(lambda: model_server.live_supervisor(home), 60, "no supervisor recorded")
        assert f"supervisor pid {watcher['pid']}" in started.stdout
        second = subprocess.run(
            [retrain, "serve", "supervise", "--if-none"], capture_output=True, text=True,
            timeout=60,
        )  # fmt: skip
        assert second.returncode == 0 and "already watches" in second.stderr
        assert deploy.keep_supervised(load_settings()) == watcher["pid"]

        served = model_server.read_state(home)
        kill_model_server(served)
        killed_at = time.monotonic()
        wait_for(lambda: answers(fish_settings.serve_url), 60, "the champion did not answer")
        assert time.monotonic() - killed_at < 60
        assert model_server.read_state(home).pid != served.pid
        assert model_server.live_supervisor(home) == watcher  # the same one, still recorded

        stopped = subprocess.run(
            [retrain, "serve", "stop"], capture_output=True, text=True, timeout=120
        )
        assert f"stopped the serving supervisor (pid {watcher['pid']})" in stopped.stdout
        assert model_server.process_start(watcher["pid"]) != watcher["proc_start"]
        assert not answers(fish_settings.serve_url)
    finally:
        stop_model_server(home)

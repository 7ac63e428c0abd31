"""The flows against a real Prefect server, and the `retrain` command as a person runs it."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from retrain.errors import StageFailed
from retrain.io import engines, locks, tracking
from retrain.serving import haproxy, model_server
from tests.integration.helpers import GOOD_ROWS, HEADER, write_csv
from tests.support.services import free_port, model_events, stop_model_server, wait_for

pytestmark = pytest.mark.integration
RETRAIN = str(Path(sys.executable).parent / "retrain")


async def _flow_runs(since: datetime) -> dict[str, tuple[str, str]]:
    """State of each flow's in-process runs created since `since` (the session server is
    shared with the deployment tests, whose schedules keep adding runs)."""
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        runs = [
            r
            for r in await client.read_flow_runs()
            if r.created >= since and r.deployment_id is None
        ]
        names = {f.id: f.name for f in await client.read_flows()}
    return {names[r.flow_id]: (r.state.type.value, r.name) for r in runs}


async def _flow_run_ids(since: datetime) -> dict[str, object]:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        runs = [r for r in await client.read_flow_runs() if r.created >= since]
        names = {f.id: f.name for f in await client.read_flows()}
    tagged = {names[r.flow_id]: r.tags for r in runs if r.deployment_id is None}
    assert "stage-tune" in tagged["tune"] and "stage-clean" in tagged["clean"], tagged
    return {names[r.flow_id]: r.id for r in runs if r.deployment_id is None}


def assert_nightly_run_recorded(since: datetime, tracking_uri: str, dataset: str) -> None:
    """What the nightly run left on the Prefect server and in MLflow: every stage's subflow
    completed and named for the dataset and day, the summary and promotion artifacts, the
    tuning progress at 100, and the version and parent run tagged with the nightly run."""
    from retrain.io import tracking

    runs = asyncio.run(_flow_runs(since))
    runs_ids = asyncio.run(_flow_run_ids(since))
    assert {runs[name][0] for name in ("retrain", "ingest", "clean", "tune")} == {"COMPLETED"}
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    assert runs["tune"][1].startswith(f"tune-{dataset}-{today}-")
    artifacts = asyncio.run(_artifacts(since))
    (nightly,) = [a for a in artifacts["nightly-summary"] if a.flow_run_id == runs_ids["retrain"]]
    for stage in ("ingest", "clean", "tune", "promote", "deploy"):
        assert f"| {stage} | " in nightly.data
    assert "**Decision: promoted**" in nightly.data and "Serving: http://127.0.0.1:" in nightly.data
    (promotion,) = [a for a in artifacts["promotion"] if a.flow_run_id == runs_ids["retrain"]]
    assert "**Decision: promoted**" in promotion.data  # written by the nightly run, after deploy
    client = tracking.make_client(tracking_uri)
    version = client.get_model_version(f"{dataset}_model", "1")
    parent = client.get_run(version.run_id)
    for tags in (version.tags, parent.data.tags):  # the nightly run, not the tune subflow
        assert tags["prefect.flow_run_id"] == str(runs_ids["retrain"])
        assert tags["prefect.tune_flow_run_id"] == str(runs_ids["tune"])
    (progress,) = artifacts["tuning-progress"]
    assert progress.type == "progress" and progress.data == 100.0


async def _artifacts(since: datetime) -> dict[str, list]:
    """The latest version of each artifact key created since `since`."""
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        found = [a for a in await client.read_artifacts() if a.created >= since]
    by_key: dict[str, list] = {}
    for artifact in found:
        by_key.setdefault(artifact.key, []).append(artifact)
    return by_key


async def _task_run_names(since: datetime) -> set[str]:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return {run.name for run in await client.read_task_runs() if run.created >= since}


def run_cli(args: list[str], environ: dict, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [RETRAIN, *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=Path(__file__).parents[2],
    )


@pytest.fixture
def cli_env(prefect_api: str, tmp_path: Path) -> Iterator[dict]:
    """Environment for the console script as the quick start has it (the zero-config iris
    dataset), in its own home and SQLite store, on the test Prefect server and a free serving
    port (a server left running is stopped by its recorded pid)."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("RETRAIN_")}
    yield {
        **inherited,
        "RETRAIN_SERVE_PORT": str(free_port()),
        "PREFECT_API_URL": prefect_api,
        "RETRAIN_HOME": str(tmp_path / "home"),
        "RETRAIN_DB_URL": f"sqlite:///{tmp_path / 'warehouse.db'}",
        "RETRAIN_TRIALS": "3",  # the commands' behaviour, not the search, is under test
        "RETRAIN_SUPERVISE": "false",  # a test that wants the serving supervisor says so
    }
    stop_model_server(tmp_path / "home")


def last_error_line(result: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return result.stderr.strip().splitlines()[-1]


def assert_predict_prints_rows_and_logs_one_run(cli_env: dict) -> None:
    from retrain.io import tracking

    result = run_cli(["predict", "--sample", "5"], cli_env)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert "prediction" in lines[0] and "target" in lines[0] and len(lines) == 7
    assert lines[-1].startswith("5 rows in ") and "accuracy" in lines[-1]
    client = tracking.make_client(f"sqlite:///{cli_env['RETRAIN_HOME']}/mlflow.db")
    experiment = client.get_experiment_by_name("iris_classification_experiment-inference")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.metrics["rows"] == 5 and "latency_ms" in run.data.metrics
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["predictions.csv"]


@pytest.mark.heavy
def test_run_twice_loads_once(cli_env: dict, receiver: tuple[str, list[dict]]) -> None:
    """... with the endpoint asking for a bearer token that only the settings file names:
    `serve status` and `predict` send it, an anonymous request gets 401."""
    events_url, events = receiver
    cli_env = {**cli_env, "RETRAIN_EVENTS_URL": events_url}
    token = f"tok-{uuid.uuid4().hex}"
    home = Path(cli_env["RETRAIN_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "retrain.env").write_text(f"RETRAIN_SERVE_TOKEN={token}\n")
    since = datetime.now(UTC)
    first = run_cli(["run"], {**cli_env, "RETRAIN_SUPERVISE": "true"})
    assert first.returncode == 0, first.stderr[-3000:]
    assert_nightly_run_recorded(since, f"sqlite:///{cli_env['RETRAIN_HOME']}/mlflow.db", "iris")
    assert "loaded 150 rows as batch" in first.stdout and "150 cleaned, 0 rejected" in first.stdout
    assert "registered version 1 as challenger" in first.stdout
    url = f"http://127.0.0.1:{cli_env['RETRAIN_SERVE_PORT']}"
    assert "champion: version 1, holdout AUROC" in first.stdout and url in first.stdout
    watcher = None  # `run` left a supervisor, which names itself in serving.json at once
    for _ in range(120):
        if watcher := model_server.live_supervisor(Path(cli_env["RETRAIN_HOME"])):
            break
        time.sleep(0.5)
    status = run_cli(["serve", "status"], cli_env)
    assert "version 1 (is the champion), healthy" in status.stdout, status.stderr[-2000:]
    assert watcher and f"supervised by pid {watcher['pid']}" in status.stdout
    assert "champion as read from retrain's alias log" in status.stdout
    assert "asks for a bearer token: RETRAIN_SERVE_TOKEN is accepted" in status.stdout
    with pytest.raises(urllib.error.HTTPError) as refused:
        model_server.invoke(url, iris_rows(2))
    assert refused.value.code == 401 and "Bearer" in refused.value.headers["WWW-Authenticate"]
    assert model_server.invoke(url, iris_rows(2), token=token) and model_server.ping_url(url)
    first_moves = [(e["alias"], e["version"], e["previous"]) for e in events]
    assert first_moves == [("challenger", "1", None), ("champion", "1", None)]
    assert all(e["event"] == "retrain.alias.moved" and e["model"] == "iris_model" for e in events)
    assert all(e["flow_run_id"] for e in events)  # the tune and the promote flow runs
    assert "first champion" in events[1]["why"]
    assert_predict_prints_rows_and_logs_one_run(cli_env)
    before_second = datetime.now(UTC)
    second = run_cli(["run"], cli_env)
    assert second.returncode == 0
    kept = wait_for(lambda: model_events("iris_model", before_second).get("kept"), 60,
                    "the retrain.model.kept event of the second run")  # fmt: skip
    assert kept[0].payload["challenger"] == "2" and kept[0].payload["champion"] == "1"
    assert "already loaded" in second.stdout and "registered version 2" in second.stdout
    assert "kept the champion over challenger version 2" in second.stdout
    history = run_cli(["history"], cli_env).stdout.splitlines()
    assert [line.split()[2] for line in history[1:]] == ["kept", "promoted"]
    assert [(e["alias"], e["version"], e["previous"]) for e in events[2:]] == [
        ("challenger", "2", "1")
    ]  # kept: only the challenger moved
    assert_drift_rollback_stop_and_start(cli_env)
    rolled = [(e["alias"], e["version"], e["previous"]) for e in events[3:5]]
    assert rolled == [("previous_champion", "1", None), ("champion", "2", "1")]
    assert "rolled back by hand from version 1 to 2" in events[4]["why"]


def iris_rows(count: int) -> pd.DataFrame:
    from sklearn.datasets import load_iris

    return load_iris(as_frame=True).data.head(count)


def shifted_iris(petal_cm: float) -> list[str]:
    """Iris rows with every petal length moved by `petal_cm`: a batch that drifts."""
    from sklearn.datasets import load_iris

    iris = load_iris()
    rows = []
    for (a, b, petal, d), label in zip(iris.data, iris.target, strict=True):
        rows.append(f"{a:g},{b:g},{petal + petal_cm:g},{d:g},{iris.target_names[label]}")
    return rows


def pid_alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()


def assert_drift_rollback_stop_and_start(cli_env: dict) -> None:
    """The serving commands a person runs by hand, on the two versions `run` left: drift of
    the latest batch, `rollback --to` the kept one, `serve stop` (server and proxy, port
    closed), `serve start` (the champion, answering again)."""
    home, port = Path(cli_env["RETRAIN_HOME"]), int(cli_env["RETRAIN_SERVE_PORT"])
    shifted = write_csv(home / "in", "shifted.csv", shifted_iris(petal_cm=2.5))
    for step in (["ingest", "--source", str(shifted)], ["clean"]):
        assert run_cli(step, cli_env).returncode == 0
    drift = run_cli(["drift"], cli_env)
    assert drift.returncode == 0, drift.stderr[-2000:]
    assert drift.stdout.startswith("batch ") and "features drifted" in drift.stdout
    assert "petal length (cm)" in drift.stdout.splitlines()[0], drift.stdout
    back = run_cli(["rollback", "--to", "2"], cli_env)
    assert back.returncode == 0, back.stderr[-2000:]
    assert "serving version 2 (was 1)" in back.stdout
    status = run_cli(["serve", "status"], cli_env)
    assert "version 2 (is the champion), healthy" in status.stdout, status.stdout
    assert_a_move_by_hand_is_seen_with_check_registry(cli_env)
    served, front = model_server.read_state(home), haproxy.recorded(home)
    assert served and front and model_server.ping_url(served.public_url)
    stop = run_cli(["serve", "stop"], cli_env)
    assert stop.returncode == 0, stop.stderr[-2000:]
    assert f"stopped haproxy (pid {front.pid})" in stop.stdout
    assert f"stopped version 2 (pid {served.pid})" in stop.stdout
    assert not pid_alive(served.pid) and not pid_alive(front.pid)
    assert not model_server.port_in_use("127.0.0.1", port) and model_server.read_state(home) is None
    start = run_cli(["serve", "start", "--no-supervise"], cli_env)
    assert start.returncode == 0, start.stderr[-2000:]
    assert f"serving version 2 at http://127.0.0.1:{port}" in start.stdout
    assert model_server.ping_url(f"http://127.0.0.1:{port}")


def assert_a_move_by_hand_is_seen_with_check_registry(cli_env: dict) -> None:
    """@champion moved outside retrain (as in the MLflow UI): the quick status still reads
    retrain's log; `--check-registry` reads the registry and says that they disagree."""
    client = tracking.make_client(f"sqlite:///{cli_env['RETRAIN_HOME']}/mlflow.db")
    client.set_registered_model_alias("iris_model", "champion", "1")
    try:
        quick = run_cli(["serve", "status"], cli_env)
        assert "version 2 (is the champion)" in quick.stdout, quick.stdout
        checked = run_cli(["serve", "status", "--check-registry"], cli_env)
        assert "version 2 (champion is 1)" in checked.stdout, checked.stdout
        assert "champion as read from MLflow's registry (checked)" in checked.stdout
        assert "alias log says version 2" in checked.stdout
    finally:
        client.set_registered_model_alias("iris_model", "champion", "2")


def test_bad_option_value_is_one_line_exit_2(cli_env: dict) -> None:
    result = run_cli(["tune", "--objective", "f1"], cli_env)
    assert result.returncode == 2
    assert "bad setting objective" in last_error_line(result)


def test_several_workers_on_sqlite_are_refused_with_the_fix(cli_env: dict) -> None:
    result = run_cli(["tune", "--workers", "2"], cli_env)
    assert result.returncode == 2
    assert "set RETRAIN_DB_URL" in last_error_line(result)


def test_a_stage_without_prefect_api_url_uses_the_local_server_running(cli_env: dict) -> None:
    """No temporary server is started when `prefect server start` already runs here: the
    server is found through Prefect's own host and port settings, and the run is recorded.
    The server's auth string comes from the settings file alone, as on a server's worker."""
    from urllib.parse import urlsplit

    since = datetime.now(UTC)
    api = urlsplit(cli_env["PREFECT_API_URL"])
    hidden = ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING")
    environ = {k: v for k, v in cli_env.items() if k not in hidden}
    home = Path(cli_env["RETRAIN_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "retrain.env").write_text(
        f"PREFECT_API_AUTH_STRING={cli_env['PREFECT_API_AUTH_STRING']}\n"
        f"PREFECT_SERVER_API_HOST={api.hostname}\nPREFECT_SERVER_API_PORT={api.port}\n"
    )
    result = run_cli(["ingest"], environ)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"using the Prefect server running at {cli_env['PREFECT_API_URL']}" in result.stderr
    assert "Starting temporary server" not in result.stderr
    runs = asyncio.run(_flow_runs(since))
    assert runs["ingest"][0] == "COMPLETED" and runs["ingest"][1].startswith("ingest-iris-")


def test_the_prefect_server_refuses_anonymous_requests_and_the_cli_says_what_to_set(
    cli_env: dict,
) -> None:
    """The test server asks for its auth string: an anonymous request gets 401, and a
    command without the string ends with one line naming the variable to set."""
    api = cli_env["PREFECT_API_URL"]
    for path, body in (("/version", None), ("/flow_runs/filter", b"{}")):
        request = urllib.request.Request(api + path, data=body, method="POST" if body else "GET")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 401
    environ = {k: v for k, v in cli_env.items() if k != "PREFECT_API_AUTH_STRING"}
    result = run_cli(["ingest"], environ)
    assert result.returncode == 1
    line = last_error_line(result)
    assert "401" in line and "PREFECT_API_AUTH_STRING" in line, line


def test_missing_file_is_bad_usage_and_answers_at_once(cli_env: dict, tmp_path: Path) -> None:
    started = time.monotonic()
    result = run_cli(["ingest", "--source", str(tmp_path / "nope.csv")], cli_env)
    assert result.returncode == 2
    assert last_error_line(result).startswith("retrain: ") and "no such file" in result.stderr
    assert time.monotonic() - started < 15


def test_undecodable_file_exits_2_with_the_encoding_hint(cli_env: dict, tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes((HEADER + "\n5.1,3.5,1.4,0.2,s\xe9tosa\n").encode("latin-1"))
    result = run_cli(["ingest", "--source", str(path)], cli_env)
    assert result.returncode == 2
    line = last_error_line(result)
    assert "line 2 is not valid utf-8" in line and "--encoding" in line
    ok = run_cli(["ingest", "--source", str(path), "--encoding", "latin-1"], cli_env)
    assert ok.returncode == 0 and "loaded 1 rows" in ok.stdout


def test_quarantine_exits_1_alerts_with_its_link_then_readmit_admits(
    cli_env: dict, tmp_path: Path, receiver
) -> None:
    url, received = receiver
    ui = "http://prefect.example:4200"
    alerting = {**cli_env, "RETRAIN_ALERT_URL": url, "PREFECT_UI_URL": ui}
    folder = tmp_path / "in"
    write_csv(folder, "a_good.csv", GOOD_ROWS)
    write_csv(folder, "b_bad.csv", [GOOD_ROWS[0], "x,1,1,1,setosa", "1,1,1,1,rose"])
    assert run_cli(["ingest", "--source", str(folder)], cli_env).returncode == 0
    result = run_cli(["clean"], alerting)
    assert result.returncode == 1
    line = last_error_line(result)
    assert "quarantined: 2 of 3 rows failed validation" in line and "--readmit" in line
    (alert,) = received  # posted by the failure hook before the command returned
    assert alert["kind"] == "failure" and alert["stage"] == "clean"
    assert "quarantined: 2 of 3 rows" in alert["reason"]
    assert alert["link"] == f"{ui}/runs/flow-run/{alert['flow_run_id']}"
    batch = line.split("--readmit ")[1].rstrip("`")
    readmit = run_cli(["clean", "--readmit", batch[:8]], cli_env)
    assert readmit.returncode == 0, readmit.stderr[-2000:]
    assert f"batch {batch}: 1 cleaned, 2 rejected" in readmit.stdout


def test_unreachable_database_names_the_host_not_the_password(cli_env: dict) -> None:
    port = free_port()
    environ = {**cli_env, "RETRAIN_DB_URL": f"mysql+pymysql://app:s3cretpw@127.0.0.1:{port}/db"}
    result = run_cli(["ingest"], environ)
    assert result.returncode == 1
    line = last_error_line(result)
    assert f"127.0.0.1:{port}" in line and "RETRAIN_DB_URL" in line
    assert "s3cretpw" not in result.stderr + result.stdout
    assert result.stderr.count("Retry") >= 3


def model_servers_of(tracking_uri: str) -> list[int]:
    """Pids of `mlflow models serve` processes started for this tracking store."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if b"models" in cmdline and b"serve" in cmdline and tracking_uri.encode() in environ:
            pids.append(int(proc.name))
    return pids


def error_lines(stderr: str) -> list[str]:
    """The lines that say what went wrong, then the end of the output."""
    errors = [line for line in stderr.splitlines() if "ERROR" in line or "Error" in line]
    return [*errors[-5:], stderr[-1500:]]


@pytest.mark.heavy
def test_two_overlapping_runs_wait_in_turn_and_leave_one_champion_served_by_one_server(
    cli_env: dict, tmp_path: Path
) -> None:
    """The test holds the promotion lock while both runs tune, so both certainly reach the
    guarded section together; once it lets go, one promotes and deploys while the other
    waits for it by name (removing the lock turns this red)."""
    env = {**cli_env, "RETRAIN_TRIALS": "3"}
    logs = [tmp_path / f"run{i}.log" for i in range(2)]
    engine = engines.make_engine(env["RETRAIN_DB_URL"])
    with locks.held(engine, "promotion", "the-test", wait_seconds=0):
        runs = [
            subprocess.Popen([RETRAIN, "run"], env=env, cwd=Path(__file__).parents[2],
                             stdout=log.open("w"), stderr=subprocess.STDOUT, text=True)
            for log in logs
        ]  # fmt: skip
        wait_for(
            lambda: all("promotion lock, held by the-test" in log.read_text() for log in logs)
            or any(run.poll() is not None for run in runs),
            600, "both runs waiting for the lock the test holds",
        )  # fmt: skip
    codes = [run.wait(timeout=600) for run in runs]
    outputs = [log.read_text() for log in logs]
    if codes != [0, 0]:  # the whole error lines, which an assertion's repr would shorten
        pytest.fail(f"exit codes {codes}:\n" + "\n".join(
            line for out in outputs for line in error_lines(out)))  # fmt: skip
    assert all("promotion lock, held by the-test" in out for out in outputs)
    host = socket.gethostname()
    waited_for_other = [
        f"promotion lock, held by {host}:{other.pid} " in out
        for out, other in zip(outputs, reversed(runs), strict=True)
    ]
    assert sorted(waited_for_other) == [False, True], "exactly one run waits for the other"
    history = run_cli(["history"], env).stdout.splitlines()[1:]
    assert [line.split()[2] for line in history].count("promoted") == 1
    status = run_cli(["serve", "status"], env)
    assert "(is the champion), healthy" in status.stdout, status.stderr[-2000:]
    tracking_uri = f"sqlite:///{Path(env['RETRAIN_HOME']) / 'mlflow.db'}"
    assert len(model_servers_of(tracking_uri)) == 1


def test_promote_waits_retrain_lock_wait_seconds_then_names_the_holder(cli_env: dict) -> None:
    """RETRAIN_LOCK_WAIT reaches the promotion section of a real `retrain promote`."""
    engine = engines.make_engine(cli_env["RETRAIN_DB_URL"])
    with locks.held(engine, "promotion", "the-test", wait_seconds=0):
        result = run_cli(["promote"], {**cli_env, "RETRAIN_LOCK_WAIT": "2"})
    assert result.returncode == 1, result.stderr[-2000:]
    line = last_error_line(result)
    assert "the promotion lock is held by the-test since" in line and "waited 2 s" in line


def test_promote_waits_for_the_prefect_promotion_limit_too(cli_env: dict) -> None:
    """With the data store's lock free, the `retrain-promotion` slot on the server (held
    here by the test) still keeps `retrain promote` out, for RETRAIN_LOCK_WAIT seconds."""
    from prefect.concurrency.sync import concurrency

    asyncio.run(_ensure_promotion_limit())
    with concurrency("retrain-promotion", occupy=1):
        result = run_cli(["promote"], {**cli_env, "RETRAIN_LOCK_WAIT": "2"})
    assert result.returncode == 1, result.stderr[-2000:]
    assert "retrain-promotion" in last_error_line(result), result.stderr[-2000:]


async def _ensure_promotion_limit() -> None:
    """The limit the bootstrap creates, on this test server (1 slot)."""
    from prefect import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectNotFound

    async with get_client() as client:
        try:
            await client.read_global_concurrency_limit_by_name("retrain-promotion")
        except ObjectNotFound:
            await client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name="retrain-promotion", limit=1)
            )


def test_the_lock_waits_its_time_names_its_holder_and_expires(env: dict) -> None:
    """`RETRAIN_LOCK_WAIT` bounds the wait; a lock left by a dead run expires; the holder
    may take it again (the nightly flow and its stage subflows)."""
    engine = engines.make_engine(env["RETRAIN_DB_URL"])
    heard: list[str] = []
    with locks.held(engine, "promotion", "first", wait_seconds=0):
        with locks.held(engine, "promotion", "first", wait_seconds=0):
            pass  # re-entrant for its owner
        started = time.monotonic()
        second = locks.held(engine, "promotion", "second", wait_seconds=1, on_wait=heard.append)
        with pytest.raises(StageFailed, match=r"held by first since .* waited 1 s"), second:
            pass
        assert time.monotonic() - started >= 1 and len(heard) == 1 and heard[0].startswith("first")
    assert locks.try_acquire(engine, "promotion", "dead", ttl_seconds=0.01) is None
    time.sleep(2.1)  # DateTime columns keep whole seconds on MariaDB
    with locks.held(engine, "promotion", "next", wait_seconds=0):
        assert locks.try_acquire(engine, "promotion", "other", 60).startswith("next since")

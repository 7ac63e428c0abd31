"""One real `mlflow models serve` of the fish model, instrumented as retrain serves it, behind
a real HAProxy: it answers raw rows (a null, an unseen category) with labels or probabilities;
every row it answers lands in `<dataset>_predictions` on the test MariaDB and in its Prometheus
metrics, which a real Prometheus scrapes through the proxy (with the nightly figures from a real
Pushgateway, and the stack's alert rules); when the store goes away (account locked,
connections killed) no request fails and the drops are counted exactly; and the nightly run
logs a served day once."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from retrain.config.settings import load_settings
from retrain.io import tracking
from retrain.io.engines import make_engine
from retrain.io.prediction_log import Record, predictions_table, write_rows
from retrain.model import logged_model
from retrain.model.instruments import ServingContext
from retrain.monitoring import inference_runs
from retrain.serving import haproxy, model_server
from retrain.serving.deploy import compare_answers
from tests.support.fish import (
    LABELS,
    MODEL,
    PASSENGERS,
    known_rows,
    log_and_register,
    raw_rows,
    training_rows,
)
from tests.support.services import (
    bearer,
    free_port,
    http_answer,
    post_invocations,
    prometheus_server,
    pushgateway_server,
    wait_for,
)

# one worker serves the module-scoped model for every test here (--dist loadgroup)
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.xdist_group("served_model")]
RETRAIN = str(Path(sys.executable).parent / "retrain")
TOKENS = haproxy.Tokens(f"serve-{uuid.uuid4().hex}", f"metrics-{uuid.uuid4().hex}")
CAPACITY = 40  # records the log holds while the store is away: small, so drops happen


@dataclass(frozen=True)
class ServedFish:
    served: model_server.Served
    front: haproxy.Proxy
    guarded: haproxy.Proxy  # a second proxy before the same server that asks for TOKENS
    tracking_uri: str
    version: str
    dataset: str
    user: str
    log_url: str
    admin_url: str

    def rows_logged(self) -> int:
        with create_engine(self.admin_url).connect() as conn:
            exists = conn.execute(text(f"SHOW TABLES LIKE '{self.dataset}_predictions'")).first()
            if not exists:
                return 0
            return conn.execute(text(f"SELECT COUNT(*) FROM {self.dataset}_predictions")).scalar()

    def admin(self, *statements: str) -> None:
        with create_engine(self.admin_url, isolation_level="AUTOCOMMIT").connect() as conn:
            for statement in statements:
                conn.execute(text(statement))


def log_user(admin_url: str) -> tuple[str, str]:
    """A MariaDB account of its own for the served model's log (so it can be locked), URL."""
    user, password = f"log{uuid.uuid4().hex[:8]}", secrets.token_hex(8)
    with create_engine(admin_url, isolation_level="AUTOCOMMIT").connect() as conn:
        conn.execute(text(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY '{password}'"))
        conn.execute(text(f"GRANT ALL ON retrain.* TO '{user}'@'127.0.0.1'"))
    url = make_url(admin_url).set(username=user, password=password)
    return user, url.render_as_string(hide_password=False)


@pytest.fixture(scope="module")
def fish(mysql_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedFish]:
    folder = tmp_path_factory.mktemp("served-fish")
    tracking_uri, version = log_and_register(folder)
    user, log_url = log_user(mysql_url)
    dataset, metrics_port = f"fish{uuid.uuid4().hex[:6]}", free_port()
    context = ServingContext(
        dataset, MODEL, version, log_url, "127.0.0.1", metrics_port, CAPACITY, PASSENGERS
    )  # fmt: skip
    home, uri = folder / "home", tracking.model_uri(MODEL, version)
    served = model_server.start(
        home, tracking_uri, uri, version, "127.0.0.1", free_port(), metrics_port,
        context.to_environment(),
    )  # fmt: skip
    front = haproxy.start(home, "127.0.0.1", free_port())
    (folder / "guarded").mkdir()
    guarded = haproxy.start(folder / "guarded", "127.0.0.1", free_port(), TOKENS)
    fish = ServedFish(
        served, front, guarded, tracking_uri, version, dataset, user, log_url, mysql_url
    )
    try:
        model_server.wait_healthy(home, served, 180)
        haproxy.switch(front, served.port, served.metrics_port)
        haproxy.switch(guarded, served.port, served.metrics_port)
        yield fish
    finally:
        haproxy.stop(guarded)
        haproxy.stop(front)
        model_server.stop(served)
        fish.admin(f"DROP USER '{user}'@'127.0.0.1'")


def metric(text_: str, name: str, labels: str = "") -> float:
    """One sample of Prometheus text (0 when absent)."""
    pattern = re.escape(name + (f"{{{labels}}}" if labels else "")) + r" ([0-9.e+-]+)"
    found = re.search(rf"^{pattern}$", text_, re.M)
    return float(found.group(1)) if found else 0.0


def scrape(fish: ServedFish) -> str:
    with urllib.request.urlopen(fish.served.metrics_url, timeout=5) as answer:
        return answer.read().decode()


def settled_rows(fish: ServedFish, timeout: float = 30) -> int:
    """The rows logged once the log has written or dropped every row the model answered."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = scrape(fish)
        answered = sum(
            float(value)
            for value in re.findall(r"^retrain_model_predictions_total\{.*\} (\S+)$", now, re.M)
        )
        settled = metric(now, "retrain_prediction_log_written_total") + metric(
            now, "retrain_prediction_log_dropped_total"
        )
        if settled == answered:
            return fish.rows_logged()
        time.sleep(0.2)
    raise AssertionError(f"the prediction log did not settle within {timeout} s")


def wait_for_rows(fish: ServedFish, expected: int, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while (found := fish.rows_logged()) != expected and time.monotonic() < deadline:
        time.sleep(0.2)
    return found


def test_served_version_answers_raw_rows_and_probabilities(fish: ServedFish) -> None:
    model, example = logged_model.load_version_and_example(fish.tracking_uri, MODEL, fish.version)
    labels = model_server.invoke(fish.served.url, raw_rows())
    assert len(labels) == 3 and set(labels) <= set(LABELS)
    assert compare_answers(model.predict_labels(example).tolist(), labels) is None
    split = json.loads(raw_rows().assign(target="pike", id=7).to_json(orient="split"))
    assert post_invocations(fish.served.url, {"dataframe_split": split}) == labels
    table = pd.DataFrame(
        post_invocations(
            fish.served.url, {"dataframe_split": split, "params": {"probabilities": True}}
        )
    )
    assert list(table.columns) == ["label", *(f"proba_{c}" for c in LABELS)]
    assert table["label"].tolist() == labels
    served_proba = table.drop(columns="label").to_numpy()
    assert np.allclose(served_proba.sum(axis=1), 1.0)
    # the same numbers as in-process: a null boolean reached the Pipeline as NaN, not False
    assert np.allclose(served_proba, model.predict_proba(raw_rows()))


def status_of(url: str, token: str | None = None, body: dict | None = None) -> int:
    return http_answer(url, body, headers=bearer(token), timeout=10)[0]


def test_a_token_guarded_endpoint_answers_only_with_the_token(fish: ServedFish) -> None:
    """The proxy asks for the serve token everywhere but the health checks; the metrics
    token opens only /metrics (Prometheus's credential, scraped in the test below)."""
    url, rows = fish.guarded.url, raw_rows()
    body = {"dataframe_split": json.loads(rows.to_json(orient="split"))}
    for token, expected in ((None, 401), ("wrong-token-0123456789", 401),
                            (TOKENS.metrics, 401), (TOKENS.serve, 200)):  # fmt: skip
        assert status_of(f"{url}/invocations", token, body) == expected, token
    for path in ("/ping", "/health"):
        assert status_of(url + path) == 200
    for path in ("/metrics", "/metrics/proxy"):
        assert status_of(url + path) == 401
        assert status_of(url + path, TOKENS.metrics) == status_of(url + path, TOKENS.serve) == 200
    answered = model_server.invoke(url, rows, token=TOKENS.serve)
    assert answered == model_server.invoke(fish.front.url, rows)
    assert model_server.token_accepted(url, TOKENS.serve) is True
    assert model_server.token_accepted(url, "wrong-token-0123456789") is False
    assert model_server.token_accepted(fish.front.url, None) is None


def logged_by_role(fish: ServedFish) -> dict[tuple[str, str | None], int]:
    """Rows of the prediction log by version and role ({} before the first row is written)."""
    if not fish.rows_logged():
        return {}
    with create_engine(fish.admin_url).connect() as conn:
        query = (f"SELECT model_version, role, COUNT(*) FROM {fish.dataset}_predictions "
                 "GROUP BY model_version, role")  # fmt: skip
        rows = conn.execute(text(query))
        return {(str(version), role): count for version, role, count in rows}


def test_a_split_gives_the_second_version_its_share_and_no_client_its_failures(
    fish: ServedFish, tmp_path: Path
) -> None:
    """A real second model server (a strict version: it fails on a colour it never saw) takes
    20 % of the requests beside the fish champion; its rows are logged with its version and
    role. Its failures are 500s that HAProxy retries on the champion: no client sees one."""
    folder = Path(fish.tracking_uri.removeprefix("sqlite:///")).parent
    version = log_and_register(folder, strict=True)[1]
    metrics_port = free_port()
    context = ServingContext(fish.dataset, MODEL, version, fish.log_url, "127.0.0.1",
                             metrics_port, CAPACITY, PASSENGERS, role="canary")  # fmt: skip
    canary = model_server.start(
        tmp_path, fish.tracking_uri, tracking.model_uri(MODEL, version), version, "127.0.0.1",
        free_port(), metrics_port, context.to_environment(),
    )  # fmt: skip
    front = haproxy.start(tmp_path, "127.0.0.1", free_port())
    try:
        model_server.wait_healthy(tmp_path, canary, 180)
        front = haproxy.switch(front, fish.served.port, fish.served.metrics_port)
        haproxy.split(front, canary.port, canary.metrics_port, 20)
        before = logged_by_role(fish)
        for _ in range(50):
            assert len(model_server.invoke(front.url, known_rows())) == 3
        by_slot = haproxy.requests_by_slot(front)
        assert by_slot[haproxy.idle_slot(front)] == 10 and by_slot[front.slot] == 40
        settled_rows(fish)

        def canary_rows() -> int:
            key = (version, "canary")
            return logged_by_role(fish).get(key, 0) - before.get(key, 0)

        deadline = time.monotonic() + 30
        while canary_rows() < 30 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert canary_rows() == 30  # 10 requests of 3 rows, logged with the canary's role
        for _ in range(30):  # an unseen colour: the canary fails, the champion answers
            assert len(model_server.invoke(front.url, raw_rows())) == 3
        canary_metrics = urllib.request.urlopen(f"{front.url}/metrics/{haproxy.idle_slot(front)}")
        failed = metric(canary_metrics.read().decode(), "retrain_model_requests_total",
                        'status="error"')  # fmt: skip
        # about a fifth of the 30 requests went to it first (the retries shift the round
        # robin by a pick or two) and failed there; every client got its answer above
        assert 4 <= failed <= 9
    finally:
        haproxy.stop(front)
        model_server.stop(canary)


def typed_csv(folder: Path) -> Path:
    """A file as users have them: whole numbers in a numeric column and in a categorical one
    (codes), a nullable integer column with a gap, booleans, an id column beside."""
    path = folder / "rows.csv"
    path.write_text(
        "id,size,count,member,colour\n1,3,4,true,1\n2,1,,false,2\n3,2,7,,3\n4,0,1,true,\n"
    )
    return path


def post_status(url: str, body: dict) -> tuple[int, str]:
    """The HTTP status and body of a POST to /invocations, errors included."""
    request = urllib.request.Request(
        f"{url}/invocations", data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_the_champion_scores_a_users_own_file_in_python_and_over_rest(
    fish: ServedFish, tmp_path: Path
) -> None:
    import mlflow.pyfunc

    source = pd.read_csv(typed_csv(tmp_path))  # int64, float with NaN, object booleans
    frames = {
        "as read": source,
        "nullable Int64": source.astype({"count": "Int64", "size": "int64"}),
        "codes as Int64": source.assign(colour=source["colour"].astype("Int64")),
    }
    mlflow.set_tracking_uri(fish.tracking_uri)
    loaded = mlflow.pyfunc.load_model(tracking.model_uri(MODEL, fish.version))
    expected = model_server.invoke(fish.served.url, source)
    for what, frame in frames.items():
        assert loaded.predict(frame).tolist() == expected, what
    split = json.loads(source.to_json(orient="split"))
    assert post_status(fish.served.url, {"dataframe_split": split})[0] == 200


def test_a_missing_column_or_a_value_of_the_wrong_kind_is_a_400_that_names_it(
    fish: ServedFish,
) -> None:
    rows = raw_rows()
    lacking = json.loads(rows.drop(columns=["count", "colour"]).to_json(orient="split"))
    status, body = post_status(fish.served.url, {"dataframe_split": lacking})
    assert status == 400 and "count" in body and "colour" in body and "missing" in body
    typo = json.loads(rows.assign(size=["1.5", "abc", "2"]).to_json(orient="split"))
    status, body = post_status(fish.served.url, {"dataframe_split": typo})
    assert status == 400 and "'size'" in body and "'abc'" in body
    not_whole = json.loads(rows.assign(count=[1, 2.5, 3]).to_json(orient="split"))
    status, body = post_status(fish.served.url, {"dataframe_split": not_whole})
    assert status == 400 and "'count'" in body and "2.5" in body
    nulls = json.loads(rows.assign(colour=None, count=None, id=[7, 8, 9]).to_json(orient="split"))
    status, body = post_status(fish.served.url, {"dataframe_split": nulls})
    assert status == 200 and len(json.loads(body)["predictions"]) == 3


def test_every_answered_row_is_logged_and_counted(fish: ServedFish, tmp_path: Path) -> None:
    rows_before = settled_rows(fish)
    before = scrape(fish)
    answers = [model_server.invoke(fish.served.url, raw_rows()) for _ in range(12)]
    assert wait_for_rows(fish, rows_before + 36) == rows_before + 36
    after = scrape(fish)
    ok = 'status="ok"'
    assert (
        metric(after, "retrain_model_requests_total", ok)
        - metric(before, "retrain_model_requests_total", ok)
        == 12
    )
    per_class = {
        label: metric(after, "retrain_model_predictions_total", f'label="{label}"')
        - metric(before, "retrain_model_predictions_total", f'label="{label}"')
        for label in LABELS
    }
    assert per_class == {label: sum(a.count(label) for a in answers) for label in LABELS}
    assert (
        metric(after, "retrain_model_latency_seconds_count")
        - metric(before, "retrain_model_latency_seconds_count")
        == 12
    )
    info = f'dataset="{fish.dataset}",model="{MODEL}",role="champion",version="{fish.version}"'
    assert metric(after, "retrain_model_info", info) == 1.0
    with create_engine(fish.admin_url).connect() as conn:
        last = conn.execute(
            text(f"SELECT * FROM {fish.dataset}_predictions ORDER BY id DESC LIMIT 3")
        ).mappings().all()  # fmt: skip
    assert [row["prediction"] for row in reversed(last)] == answers[-1]
    assert len({row["request_id"] for row in last}) == 1 and last[0]["latency_ms"] > 0
    assert {row["model_version"] for row in last} == {fish.version}
    assert {row["role"] for row in last} == {"champion"}
    first_input = json.loads(last[-1]["inputs"])
    assert first_input == {"size": 0.2, "count": None, "member": 1.0, "colour": "red"}
    summary = subprocess.run(
        [RETRAIN, "predictions", "--days", "1"], capture_output=True, text=True,
        env={"PATH": str(Path(sys.executable).parent), "RETRAIN_HOME": str(tmp_path),
             "RETRAIN_DB_URL": fish.log_url, "RETRAIN_DATASET": fish.dataset},
    )  # fmt: skip
    assert summary.returncode == 0, summary.stderr[-1500:]
    header, today = summary.stdout.splitlines()[:2]
    assert header.split()[:3] == ["day", "requests", "rows"]
    assert today.split()[1:3] == [str((rows_before + 36) // 3), str(rows_before + 36)]


def test_a_store_that_goes_away_fails_no_request_and_counts_drops(fish: ServedFish) -> None:
    rows_before = settled_rows(fish)
    dropped_before = metric(scrape(fish), "retrain_prediction_log_dropped_total")
    with create_engine(fish.admin_url).connect() as conn:
        sessions = conn.execute(
            text("SELECT id FROM information_schema.processlist WHERE user = :u"),
            {"u": fish.user},
        ).scalars().all()  # fmt: skip
    fish.admin(
        f"ALTER USER '{fish.user}'@'127.0.0.1' ACCOUNT LOCK",
        *(f"KILL CONNECTION {session}" for session in sessions),
    )
    one_row = raw_rows().iloc[:1]
    try:
        model_server.invoke(fish.served.url, one_row)  # the writer takes it and starts retrying
        wait_for(
            lambda: "retrain_prediction_log_store_up 0.0" in scrape(fish),
            30, "the log's writer retrying the first request", every=0.1,
        )  # fmt: skip
        assert metric(scrape(fish), "retrain_prediction_log_queued_requests") == 0
        answers = [model_server.invoke(fish.served.url, one_row) for _ in range(120)]
        assert all(len(answer) == 1 for answer in answers)  # every request answered
        assert fish.rows_logged() == rows_before  # nothing reached the locked store
        dropped = metric(scrape(fish), "retrain_prediction_log_dropped_total") - dropped_before
        assert dropped == 120 - CAPACITY  # the queue held CAPACITY, the rest were counted
    finally:
        fish.admin(f"ALTER USER '{fish.user}'@'127.0.0.1' ACCOUNT UNLOCK")
    # the store is back: the held record and the queued ones are written, none twice
    assert wait_for_rows(fish, rows_before + 1 + CAPACITY, 60) == rows_before + 1 + CAPACITY
    assert "retrain_prediction_log_store_up 1.0" in scrape(fish)


def test_the_nightly_run_logs_a_served_day_once_and_prunes_past_retention(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETRAIN_HOME", str(tmp_path))
    monkeypatch.setenv("RETRAIN_DATASET", "fishday")
    settings = load_settings()
    engine = make_engine(settings.database_url)
    table, today = predictions_table("fishday"), datetime.now(UTC).replace(tzinfo=None)
    frame = raw_rows().iloc[:2]
    records = [
        Record("old", today - timedelta(days=40), frame, ["pike", "pike"], 3.0),
        Record("y1", today - timedelta(days=1), frame, ["bream", "pike"], 2.0),
        Record("y2", today - timedelta(days=1), frame.iloc[:1], ["pike"], 8.0),
        Record("now", today, frame.iloc[:1], ["perch"], 1.0),
    ]
    write_rows(engine, table, records, "3")
    client = tracking.make_client(settings.tracking_uri)
    yesterday = (today - timedelta(days=1)).date()
    first = inference_runs.report_served_day(engine, client, settings, yesterday)
    again = inference_runs.report_served_day(engine, client, settings, yesterday)
    assert (first.summary.requests, first.summary.rows, first.pruned) == (2, 3, 2)
    assert again.run_id == first.run_id and again.pruned == 0  # one run per day, pruned once
    run = client.get_run(first.run_id)
    assert run.info.run_name == f"served-{yesterday.isoformat()}"
    assert run.data.metrics["requests"] == 2 and run.data.metrics["share_pike"] == 2 / 3
    assert run.data.metrics["latency_p50_ms"] == 5.0


def fish_schema(folder: Path) -> Path:
    """The fish rows' schema file as `retrain schema infer` writes it, `id` their id."""
    frame, y = training_rows()
    source, schema = folder / "fish.csv", folder / "fish.yaml"
    frame.assign(id=[f"f{i}" for i in range(len(frame))], species=y).to_csv(source, index=False)
    done = subprocess.run(
        [RETRAIN, "schema", "infer", "--source", str(source), "--target", "species",
         "--id", "id", "--output", str(schema)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return schema


def test_labels_a_day_later_give_the_served_models_realized_auroc(
    fish: ServedFish, prefect_api: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame, y = training_rows(90)
    ids = [f"late-{i}" for i in range(len(frame))]
    sent = frame.assign(id=ids)
    before = settled_rows(fish)
    split = json.loads(sent.to_json(orient="split", index=False))
    body = {"dataframe_split": split, "params": {"probabilities": True}}
    answered = pd.DataFrame(post_invocations(fish.served.url, body))
    assert wait_for_rows(fish, before + len(sent)) == before + len(sent)
    # the next day: labels for every row, one of them twice (the later one wins), and one
    # for an id the model never answered (kept and counted)
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S")
    truth = pd.DataFrame({"id": ids, "species": y, "labelled_at": tomorrow})
    wrong_first = pd.DataFrame({"id": [ids[0]], "species": ["pike" if y[0] != "pike" else "bream"],
                                "labelled_at": ["2000-01-01"]})  # fmt: skip
    stranger = pd.DataFrame({"id": ["never-seen"], "species": ["pike"], "labelled_at": tomorrow})
    labels_file = tmp_path / "labels.csv"
    pd.concat([wrong_first, truth, stranger]).to_csv(labels_file, index=False)
    env = {"PATH": str(Path(sys.executable).parent), "RETRAIN_HOME": str(tmp_path / "home"),
           "RETRAIN_DB_URL": fish.log_url, "RETRAIN_DATASET": fish.dataset,
           "RETRAIN_SCHEMA": str(fish_schema(tmp_path)), "PREFECT_API_URL": prefect_api,
           "PREFECT_API_AUTH_STRING": os.environ["PREFECT_API_AUTH_STRING"],
           "MLFLOW_TRACKING_URI": fish.tracking_uri, "RETRAIN_MODEL_NAME": MODEL}  # fmt: skip
    loaded = subprocess.run(
        [RETRAIN, "labels", "--source", str(labels_file)], capture_output=True, text=True, env=env
    )
    assert loaded.returncode == 0, loaded.stderr[-1500:]
    assert "91 labels (1 repeated keys" in loaded.stdout and "1 match no logged" in loaded.stdout
    shown = subprocess.run(
        [RETRAIN, "performance", "--days", "1", "--json"], capture_output=True, text=True, env=env
    )
    assert shown.returncode == 0, shown.stderr[-1500:]
    days = [json.loads(line) for line in shown.stdout.splitlines()]
    [today] = [day for day in days if day["version"] == fish.version]  # the split's canary aside
    others = sum(n for (v, _), n in logged_by_role(fish).items() if v != fish.version)
    assert today["labelled"] == len(sent)
    assert today["predictions"] == before - others + len(sent)  # unlabelled answers count
    by_hand = roc_auc_score(
        y, answered[[f"proba_{c}" for c in LABELS]].to_numpy(), multi_class="ovo", labels=LABELS
    )
    assert abs(today["auroc"] - by_hand) < 1e-6
    assert today["auroc_low"] <= today["auroc"] <= today["auroc_high"]
    with create_engine(fish.admin_url).connect() as conn:
        keys = conn.execute(
            text(f"SELECT row_key FROM {fish.dataset}_predictions WHERE row_key LIKE 'late-%'")
        ).scalars().all()  # fmt: skip
    assert sorted(keys) == sorted(ids)
    # the performance flow: the same day as an MLflow run, no verdict on 90 rows
    from flows.performance import performance

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    verdict = performance(days=1)
    assert verdict.counted == [] and not verdict.degraded
    client = tracking.make_client(fish.tracking_uri)
    experiment = inference_runs.inference_experiment(client, load_settings())
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    run_id = tracking.find_run(client, experiment, f"tags.`retrain.realized_day` = '{day}'")
    metrics = client.get_run(run_id).data.metrics
    assert metrics[f"realized_auroc_v{fish.version}"] == pytest.approx(today["auroc"])
    assert metrics[f"labelled_v{fish.version}"] == len(sent)


def query(prometheus: str, expr: str) -> float | None:
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as answer:
        result = json.loads(answer.read())["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def test_prometheus_scrapes_the_model_through_the_proxy_and_the_nightly_figures(
    fish: ServedFish, tmp_path: Path
) -> None:
    from retrain.io.nightly_metrics import NightlyFigures, publish_nightly

    target = f"127.0.0.1:{fish.guarded.port}"  # scraped with the metrics token alone
    rules = Path(__file__).parents[2] / "docker/prometheus/alerts.yml"
    with pushgateway_server(tmp_path) as gateway:
        figures = NightlyFigures("fishnight", False, "rolled_back", 150, 140, 10, 0.91, 0.93)
        assert publish_nightly(figures, tmp_path, gateway) is None
        jobs = {"model": ("/metrics", target, TOKENS.metrics),
                "proxy": ("/metrics/proxy", target, TOKENS.metrics),
                "nightly": ("/metrics", gateway[7:], None)}  # fmt: skip
        with prometheus_server(tmp_path, jobs, rules) as prometheus:
            for _ in range(10):
                model_server.invoke(fish.guarded.url, raw_rows(), token=TOKENS.serve)
            answered = metric(scrape(fish), "retrain_model_requests_total", 'status="ok"')
            ok = 'sum(retrain_model_requests_total{job="model",status="ok"})'
            assert settled(prometheus, ok, lambda v: v == answered) == answered >= 10
            responses = 'sum(haproxy_backend_http_responses_total{proxy="models",code="2xx"})'
            assert settled(prometheus, responses, lambda v: v >= 10) >= 10
            share = 'retrain_nightly_rejected_share{dataset="fishnight"}'
            assert settled(prometheus, share, lambda v: True) == 10 / 150
            deadline = time.monotonic() + 30
            while not firing(prometheus) and time.monotonic() < deadline:
                time.sleep(0.5)
            assert firing(prometheus) == ["RetrainPromotionFailed"]


def settled(prometheus: str, expr: str, done, timeout: float = 30) -> float | None:
    """The query's value once `done(value)` holds (scrapes come every second)."""
    deadline = time.monotonic() + timeout
    while (value := query(prometheus, expr)) is None or not done(value):
        if time.monotonic() > deadline:
            return value
        time.sleep(0.5)
    return value


def firing(prometheus: str) -> list[str]:
    with urllib.request.urlopen(f"{prometheus}/api/v1/alerts", timeout=5) as answer:
        alerts = json.loads(answer.read())["data"]["alerts"]
    return sorted({a["labels"]["alertname"] for a in alerts if a["state"] == "firing"})

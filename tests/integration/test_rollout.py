"""Rollouts with real components: the iris champion served by `mlflow models serve` behind a
real HAProxy, a second real model server for the candidate, the flows run on the session's
real Prefect server, the alert sent to a real local receiver, the prediction log on SQLite.

The candidates are real scikit-learn Pipelines with a real fault: one takes the log of its
inputs and fails (a 500) on a row with a negative value, which the champion answers; one
pushes its probabilities towards one class."""

from __future__ import annotations

import contextvars
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from sqlalchemy import text

from retrain.data.features import prepare_features
from retrain.data.split import dataset_of
from retrain.io import audit, engines, store, tracking
from retrain.io.bundled_iris import write_bundled_iris
from retrain.promotion import promote
from retrain.promotion.rules import PromotionRules
from retrain.serving import haproxy, model_server, rollout
from retrain.serving.supervisor import Supervisor
from retrain.training.tuning import log_and_register
from tests.integration.test_promote_and_serve import (
    COLUMNS,
    context,
    deploy_now,
    promote_now,
    register,
    strong_model,
)
from tests.integration.test_tune import load_and_clean
from tests.support.services import model_events, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow,
              pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]  # fmt: skip


@pytest.fixture
def served_champion(env: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_api: str,
                    receiver) -> list[dict]:  # fmt: skip
    """Iris loaded, cleaned, version 1 promoted and served behind HAProxy; the bake checks
    every second and judges from 10 requests; alerts go to the receiver (its bodies are
    returned). The candidate a test leaves running is stopped by its recorded pid."""
    url, received = receiver
    for key, value in {"RETRAIN_ALERT_URL": url, "RETRAIN_BAKE_CHECK_SECONDS": "1",
                       "RETRAIN_GUARD_MIN_REQUESTS": "10"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    load_and_clean(write_bundled_iris(tmp_path / "src"))
    register(strong_model())
    assert promote_now().promoted
    served = deploy_now()
    assert served.proxied, "the rollout tests need HAProxy (./dev test installs it)"
    yield received
    model_server.stop_recorded(Path(env["RETRAIN_HOME"]), model_server.CANDIDATE)


def attempt_row(engine, dataset: str, version: str | None = None, attempt_id: int | None = None):
    """The one `promotions` row of `version` (or with id `attempt_id`)."""
    (row,) = [a for a in audit.recent_attempts(engine, dataset)
              if a.challenger_version == version or a.id == attempt_id]  # fmt: skip
    return row


def register_pipeline(pipeline: Pipeline) -> str:
    """Fit a whole Pipeline (no standard preprocessing) on the training rows; register it."""
    settings, engine, tables, client = context()
    with engine.connect() as conn:
        data = dataset_of(store.read_cleaned(conn, tables), settings.load_schema())
    pipeline.fit(prepare_features(data.train, data.kinds), data.labels(data.train))
    experiment = tracking.ensure_experiment(client, settings.experiment, settings.artifact_root)
    run = tracking.start_parent_run(client, experiment, "tune", {"retrain.stage": "tune"})
    return log_and_register(settings, client, run, pipeline, data, {})


def log_scale_model() -> Pipeline:
    """Logistic regression on log inputs: a real model that fails on a negative value."""
    return Pipeline([("log", FunctionTransformer(np.log)),
                     ("clf", LogisticRegression(max_iter=500))])  # fmt: skip


def pushed_model() -> Pipeline:
    """A model that puts most of its probability on setosa: the same labels to learn, its
    scores shifted towards one class."""
    weights = {"setosa": 60.0, "versicolor": 1.0, "virginica": 1.0}
    return Pipeline([("clf", LogisticRegression(C=0.05, class_weight=weights, max_iter=500))])


def iris_rows(n: int, seed: int, negative: bool = False) -> pd.DataFrame:
    """`n` real iris rows with a little noise, as traffic would bring them."""
    from sklearn.datasets import load_iris

    rng = np.random.default_rng(seed)
    flowers = load_iris().data
    picked = flowers[rng.integers(0, len(flowers), n)] * rng.normal(1.0, 0.03, (n, 4))
    rows = pd.DataFrame(picked.round(2), columns=COLUMNS)
    if negative:
        rows.iloc[0, 1] = -1.0  # the log model fails on this request; the champion answers it
    return rows


def send(n: int, url: str, failing_every: int = 0) -> int:
    """`n` requests of 3 rows; every `failing_every`-th carries a negative value. Returns
    how many requests a client saw fail (each is retried by nobody but HAProxy)."""
    failed = 0
    for i in range(n):
        rows = iris_rows(3, i, negative=bool(failing_every) and i % failing_every == 0)
        try:
            assert len(model_server.invoke(url, rows)) == 3
        except OSError:
            failed += 1
    return failed


def logged_rows(settings) -> dict[tuple[str, str], int]:
    engine = engines.make_engine(settings.database_url)
    query = (
        f"SELECT model_version, role, COUNT(*) FROM {settings.dataset}_predictions GROUP BY 1, 2"
    )
    with engine.connect() as conn:
        return {(str(v), str(r)): int(n) for v, r, n in conn.execute(text(query))}


def wait_logged(settings, rows: int) -> dict[tuple[str, str], int]:
    """The prediction log once its writers have flushed `rows` rows in all."""
    return wait_for(lambda: (got := logged_rows(settings)) and sum(got.values()) >= rows and got,
                    30, f"{rows} rows in the prediction log")  # fmt: skip


def test_an_ab_split_at_20_percent_sends_a_fifth_of_the_rows_and_its_report_compares_both(
    served_champion: list[dict],
) -> None:
    from flows.promote import promote as promote_flow
    from flows.rollout import bake, report

    settings, _, _, client = context()
    version = register(RandomForestClassifier(n_estimators=15, random_state=3))
    rollout.start_split(settings, version, "ab", 20, minutes=0.05)
    assert rollout.in_progress(settings.home) == f"rollout of version {version} in progress"
    night = promote_flow(challenger=version)  # the next night's promotion waits its turn
    assert not night.promoted and night.decision.reason == rollout.in_progress(settings.home)
    url = model_server.read_state(settings.home).public_url
    assert send(100, url) == 0
    logged = wait_logged(settings, 300 + 6)  # two smoke requests of 3 rows each
    share = logged[(version, "ab")] / (logged[(version, "ab")] + logged[("1", "champion")])
    assert 0.15 <= share <= 0.25, logged
    haproxy.stop(haproxy.recorded(settings.home))  # the supervisor restarts it, split kept
    said = Supervisor(settings, notify=lambda alert: None).check()
    assert said and "has its 20% again" in said, said
    assert send(50, url) == 0
    again = wait_logged(settings, 306 + 150)
    # 10 of the 50 requests (3 rows each) by weighted round robin; one more or fewer when the
    # proxy retried a slow request on the other slot (seen with three suites' worth of load)
    assert abs(again[(version, "ab")] - logged[(version, "ab")] - 30) <= 3, (logged, again)
    end = bake()
    assert end.outcome == "ended" and rollout.read_rollout(settings.home) is None
    assert tracking.alias_version(client, settings.model_name, "champion") == "1"
    assert model_server.read_state(settings.home, model_server.CANDIDATE) is None
    assert rollout.read_rollout(settings.home, rollout.LAST).outcome == "ended"
    assert send(10, url) == 0  # the champion alone again
    reading = report()
    assert (reading.champion.version, reading.candidate.version) == ("1", version)
    assert reading.candidate.requests + reading.champion.requests >= 100
    assert reading.candidate.p95_ms is not None and sum(reading.candidate.class_shares.values())
    runs = client.search_runs(
        [tracking.ensure_experiment(client, f"{settings.experiment}-inference")],
        f"tags.`retrain.rollout_version` = '{version}'",
    )
    assert runs and runs[0].data.metrics["candidate_requests"] == reading.candidate.requests


def test_a_canary_failing_a_third_of_its_requests_is_rolled_back_and_no_client_fails(
    served_champion: list[dict],
) -> None:
    from flows.rollout import bake

    settings, engine, _, client = context()
    version = register_pipeline(log_scale_model())
    rollout.start_split(settings, version, "canary", 50, minutes=5)
    url = model_server.read_state(settings.home).public_url
    assert send(60, url, failing_every=3) == 0  # HAProxy retried every 500 on the champion
    started = time.monotonic()
    end = bake()
    assert time.monotonic() - started < 60, "the breach ends the bake at once"
    assert end.outcome == "rolled_back" and end.breach.metric == "error_rate"
    assert 0.2 <= end.breach.value <= 0.5
    assert rollout.read_rollout(settings.home) is None
    assert model_server.read_state(settings.home, model_server.CANDIDATE) is None
    assert tracking.alias_version(client, settings.model_name, "champion") == "1"
    row = attempt_row(engine, settings.dataset, version=version)
    assert row.decision == "rolled_back" and "error_rate" in row.reason
    alert = [r for r in served_champion if r["kind"] == "failure" and r["stage"] == "rollout"]
    assert alert and "error_rate" in alert[0]["reason"]
    events = wait_for(lambda: model_events(settings.model_name).get("rolled_back"), 30,
                      "the rolled_back event")  # fmt: skip
    assert events[0].payload["metric"] == "error_rate"
    assert send(10, url) == 0


def test_a_canary_whose_probabilities_shift_is_rolled_back_by_the_stability_guard(
    served_champion: list[dict],
) -> None:
    from flows.rollout import start_rollout

    settings, engine, _, client = context()
    version = register_pipeline(pushed_model())
    url = model_server.read_state(settings.home).public_url

    said: list[str] = []  # the flow splits, then bakes while this thread sends the traffic
    here = contextvars.copy_context()  # the session's Prefect server for the thread's flow too
    baking = threading.Thread(
        target=lambda: said.append(here.run(start_rollout, version, "canary", 50, 5))
    )
    baking.start()
    wait_for(lambda: rollout.read_rollout(settings.home), 120, "the canary's split")
    failed = send(80, url)
    baking.join(120)
    assert failed == 0 and said and said[0].startswith("rolled_back: psi"), said
    assert tracking.alias_version(client, settings.model_name, "champion") == "1"
    row = attempt_row(engine, settings.dataset, version=version)
    assert row.decision == "rolled_back" and "psi" in row.reason


def test_a_healthy_canary_is_promoted_at_the_end_of_its_bake(served_champion: list[dict]) -> None:
    from flows.rollout import bake

    settings, engine, _, client = context()
    version = register(RandomForestClassifier(n_estimators=30, random_state=5))
    rollout.start_split(settings, version, "canary", 20, minutes=0.25)
    url = model_server.read_state(settings.home).public_url
    assert send(170, url) == 0
    logged = wait_logged(settings, 510 + 6)
    share = logged[(version, "canary")] / (logged[(version, "canary")] + logged[("1", "champion")])
    assert 0.15 <= share <= 0.25, logged  # a 20% canary gets 20% +- 5% of the logged rows
    end = bake()
    assert end.outcome == "promoted", end.describe()
    guards = {r.metric: r for r in end.reading.readings}
    assert guards["psi"].judged and guards["error_rate"].judged and guards["p95_ms"].judged
    assert tracking.alias_version(client, settings.model_name, "champion") == version
    assert tracking.alias_version(client, settings.model_name, "previous_champion") == "1"
    served = model_server.read_state(settings.home)
    assert served.version == version and model_server.ping_url(served.public_url)
    assert send(5, url) == 0
    row = attempt_row(engine, settings.dataset, version=version)
    assert row.decision == "promoted"
    assert logged_rows(settings).get((version, "canary")), "the canary's rows carry its role"


def pending_promotion(version: str) -> int:
    """A promotion of `version` held for its rollout (any challenger passes the margin)."""
    settings, engine, tables, client = context()
    report = promote.promote_if_better(
        engine, tables, client, settings, PromotionRules(min_improvement=-1.0), None, version,
        hold=True,
    )  # fmt: skip
    assert report.pending and tracking.alias_version(client, settings.model_name, "champion") == "1"
    row = attempt_row(engine, settings.dataset, attempt_id=report.attempt_id)
    assert row.decision == "pending"
    return report.attempt_id


def paused_run(name: str) -> object:
    """The flow run called `name` once it is paused (waiting for its form)."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    def look() -> object | None:
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name]))
            )
        return next((r for r in runs if r.state and r.state.is_paused()), None)

    return wait_for(look, 120, f"flow run {name} paused")


def test_an_approval_resumed_through_the_api_promotes_with_the_name_and_comment(
    served_champion: list[dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.flow_runs import resume_flow_run

    from flows.approval import approval

    monkeypatch.setenv("RETRAIN_APPROVAL", "required")
    settings, engine, _, client = context()
    version = register(RandomForestClassifier(n_estimators=30, random_state=7))
    attempt = pending_promotion(version)
    ended: list = []
    # the thread runs on the session's Prefect server too (its settings live in the context)
    here = contextvars.copy_context()
    waiting = threading.Thread(target=lambda: ended.append(here.run(approval, version, attempt)))
    waiting.start()
    run = paused_run(f"approval-{settings.dataset}-{version}")
    form = run.state.state_details.run_input_keyset
    assert form, "the paused run asks for its form"
    resume_flow_run(run.id, run_input={"decision": "approve", "name": "Ada", "comment": "fine"})
    waiting.join(300)
    assert ended and ended[0].outcome == "promoted", ended
    assert tracking.alias_version(client, settings.model_name, "champion") == version
    assert model_server.read_state(settings.home).version == version
    row = attempt_row(engine, settings.dataset, attempt_id=attempt)
    assert row.decision == "promoted" and row.reason == "approved by Ada: fine"


def test_an_approval_left_unanswered_keeps_the_champion_and_alerts_nobody(
    served_champion: list[dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.approval import approval

    monkeypatch.setenv("RETRAIN_APPROVAL", "required")
    monkeypatch.setenv("RETRAIN_APPROVAL_HOURS", str(8 / 3600))  # eight seconds
    settings, engine, _, client = context()
    version = register(RandomForestClassifier(n_estimators=30, random_state=8))
    attempt = pending_promotion(version)
    end = approval(version, attempt)
    assert end.outcome == "kept" and "no approval within" in end.reason
    assert tracking.alias_version(client, settings.model_name, "champion") == "1"
    assert model_server.read_state(settings.home).version == "1"
    row = attempt_row(engine, settings.dataset, attempt_id=attempt)
    assert row.decision == "kept" and "no approval within" in row.reason
    assert not [r for r in served_champion if r["kind"] == "failure"]


def test_a_shadow_answers_the_replayed_requests_unseen_and_is_rolled_back_when_it_disagrees(
    served_champion: list[dict],
) -> None:
    from flows.rollout import bake

    settings, engine, _, client = context()
    version = register_pipeline(pushed_model())
    rollout.start_split(settings, version, "shadow", 10, minutes=5)
    url = model_server.read_state(settings.home).public_url
    assert send(60, url) == 0
    wait_logged(settings, 180 + 6)
    end = bake()
    assert end.outcome == "rolled_back" and end.breach.metric in ("disagreement", "psi"), end
    assert end.rollout.compared >= 180, end.rollout  # every row of the 60 requests replayed
    logged = logged_rows(settings)  # (its last rows may die with it in its log's queue)
    assert {role for v, role in logged if v == version} == {"shadow"}, "no client reached it"
    assert tracking.alias_version(client, settings.model_name, "champion") == "1"
    row = attempt_row(engine, settings.dataset, version=version)
    assert row.decision == "rolled_back"


def settled_rows(settings) -> dict[tuple[str, str], int]:
    """The prediction log's counts once no writer has added a row for two seconds."""
    last = None
    for _ in range(30):
        now = logged_rows(settings)
        if now == last:
            return now
        last = now
        time.sleep(2)
    raise AssertionError(f"the prediction log kept growing: {last}")


def test_aborting_by_hand_sends_everything_back_and_keeps_the_champion(
    served_champion: list[dict],
) -> None:
    """`rollout abort` of a 50% canary: the candidate is stopped, every later request goes to
    the champion, its held promotion is `kept` with the reason, no alias moves and no failure
    alert goes out; a shadow's abort settles its row the same way."""
    from flows.rollout import abort_now

    settings, engine, _, client = context()
    url = model_server.read_state(settings.home).public_url
    for mode in ("canary", "shadow"):
        pipeline = RandomForestClassifier(n_estimators=10, random_state=7)
        version = register(pipeline) if mode == "canary" else register_pipeline(pushed_model())
        attempt = pending_promotion(version)
        rollout.start_split(settings, version, mode, 50, minutes=30, attempt_id=attempt)
        candidate = model_server.read_state(settings.home, model_server.CANDIDATE)
        assert candidate is not None and model_server.is_running(candidate)
        start = settled_rows(settings)
        assert send(20, url) == 0
        during = wait_logged(settings, sum(start.values()) + 60)
        if mode == "canary":
            assert during.get((version, mode), 0) > start.get((version, mode), 0), during
        said = abort_now(f"{mode}: no time to watch it")
        assert "aborted" in said, said
        assert not rollout.in_progress(settings.home)
        assert not model_server.is_running(candidate), "the candidate is stopped"
        before = settled_rows(settings)
        assert send(20, url) == 0
        after = wait_logged(settings, sum(before.values()) + 60)
        assert after.get((version, mode), 0) == before.get((version, mode), 0)  # none reached it
        assert after[("1", "champion")] - before[("1", "champion")] == 60
        row = attempt_row(engine, settings.dataset, attempt_id=attempt)
        assert row.decision == "kept" and f"{mode}: no time to watch it" in row.reason, row
        assert tracking.alias_version(client, settings.model_name, "champion") == "1"
    assert not [r for r in served_champion if r["kind"] == "failure"]

"""Promotion and serving with real `mlflow models serve` processes behind a real HAProxy
(RETRAIN_PROXY=auto, which `./dev test` installs) or on the main port itself
(RETRAIN_PROXY=off, what a machine without HAProxy does), MLflow on SQLite in a temp dir and the
data store on SQLite (the promotions table also on MariaDB)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import RandomForestClassifier
from sklearn.tree import DecisionTreeClassifier

from retrain.config.settings import Settings, load_settings
from retrain.data.features import prepare_features
from retrain.data.split import dataset_of
from retrain.errors import StageFailed
from retrain.io import alias_log, audit, store, tracking
from retrain.io.bundled_iris import write_bundled_iris
from retrain.model import logged_model
from retrain.promotion import promote
from retrain.promotion.rules import PromotionRules
from retrain.serving import deploy, haproxy, model_server
from retrain.serving.deploy import serve_verified
from retrain.serving.model_server import ServeFailed
from retrain.training.families import fit_model, pipeline_of
from retrain.training.tuning import log_and_register
from tests.integration.test_tune import load_and_clean
from tests.support.services import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


ON_SQLITE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture
def direct(monkeypatch: pytest.MonkeyPatch) -> None:
    """Serve without the proxy: the model server itself owns the main port."""
    monkeypatch.setenv("RETRAIN_PROXY", "off")


def behind_proxy(settings: Settings) -> bool:
    served = model_server.read_state(settings.home)
    return served is not None and served.proxy is not None


@pytest.fixture
def served_env(env: dict, tmp_path: Path) -> dict:
    """Iris loaded and cleaned (the env fixture gives a free serving port and stops, by its
    recorded pid, any server a test leaves running)."""
    load_and_clean(write_bundled_iris(tmp_path / "src"))
    return env


def context() -> tuple[Settings, store.Engine, store.DatasetTables, tracking.MlflowClient]:
    settings = load_settings()
    engine, tables = store.open_dataset(settings)
    return settings, engine, tables, tracking.make_client(settings.tracking_uri)


def register(model) -> str:
    """Fit `model` behind the standard preprocessing on the training rows; log and register it
    as the challenger."""
    settings, engine, tables, client = context()
    with engine.connect() as conn:
        data = dataset_of(store.read_cleaned(conn, tables), settings.load_schema())
    pipeline = fit_model(
        pipeline_of(model, data.kinds),
        prepare_features(data.train, data.kinds),
        data.labels(data.train),
        data.kinds,
    )
    experiment = tracking.ensure_experiment(client, settings.experiment, settings.artifact_root)
    run = tracking.start_parent_run(client, experiment, "tune", {"retrain.stage": "tune"})
    return log_and_register(settings, client, run, pipeline, data, {})


def promote_now(rules: PromotionRules | None = None) -> promote.PromotionReport:
    settings, engine, tables, client = context()
    return promote.promote_if_better(engine, tables, client, settings, rules or PromotionRules())


def deploy_now(promotion=None, **kwargs):
    settings, engine, _, client = context()
    return deploy.deploy_champion(engine, client, settings, promotion, **kwargs)


def weak_model() -> DecisionTreeClassifier:
    """A stump: it tells setosa from the rest and no more, so it answers ROWS differently
    from the strong model (versicolor and virginica get one label)."""
    return DecisionTreeClassifier(max_depth=1, random_state=0)


def strong_model() -> RandomForestClassifier:
    return RandomForestClassifier(n_estimators=30, random_state=0)


COLUMNS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
# one row of each species
ROWS = pd.DataFrame(
    [[5.1, 3.5, 1.4, 0.2], [6.0, 2.9, 4.5, 1.5], [6.3, 3.3, 6.0, 2.5]], columns=COLUMNS
)


def answers(settings: Settings) -> list:
    """The labels the main port answers for ROWS."""
    served = model_server.read_state(settings.home)
    return list(model_server.invoke(served.public_url, ROWS))


def labels_of(settings: Settings, version: str) -> list:
    """The labels a registered version gives ROWS, in this process."""
    model = logged_model.load_version(settings.tracking_uri, settings.model_name, version)
    return list(model.predict_labels(ROWS))


@pytest.mark.parametrize("db_url", ["mysql"], indirect=True)
def test_first_promotion_then_a_better_one_is_served(served_env: dict) -> None:
    settings, engine, _, client = context()
    first = register(weak_model())
    report = promote_now()
    assert (
        report.promoted and report.champion is None and "first champion" in report.decision.reason
    )
    deployed = deploy_now(report)
    assert deployed.changed and model_server.read_state(settings.home).version == first
    assert answers(settings) == labels_of(settings, first)
    better = register(strong_model())
    report = promote_now()
    assert report.promoted and report.challenger_auroc > report.champion_auroc
    deployed = deploy_now(report)
    assert deployed.previous_version == first and behind_proxy(settings)
    assert model_server.read_state(settings.home).version == better
    assert answers(settings) == labels_of(settings, better) != labels_of(settings, first)
    aliases = tracking.read_aliases(client, settings.model_name)
    assert aliases == {"champion": better, "challenger": better, "previous_champion": first}
    version = client.get_model_version(settings.model_name, better)
    assert version.tags["validation_status"] == "passed"
    logged = client.get_run(version.run_id).data
    assert logged.metrics["promotion_challenger_auroc"] == report.challenger_auroc
    assert logged.metrics["promotion_champion_auroc"] == report.champion_auroc
    assert logged.metrics["promoted"] == 1.0
    assert logged.tags["retrain.promotion_decision"] == "promoted"
    rows = audit.recent_attempts(engine, settings.dataset)
    assert [r.decision for r in rows] == ["promoted", "promoted"]


@ON_SQLITE
def test_a_worse_challenger_is_kept_out_and_the_champion_keeps_serving(served_env: dict) -> None:
    settings, engine, _, client = context()
    champion = register(strong_model())
    deploy_now(promote_now())
    served_before = model_server.read_state(settings.home)
    worse = register(DummyClassifier(strategy="prior"))
    report = promote_now()
    assert not report.promoted and "does not beat" in report.decision.reason
    assert tracking.alias_version(client, settings.model_name, "champion") == champion
    tags = client.get_model_version(settings.model_name, worse).tags
    assert tags["validation_status"] == "failed" and "does not beat" in tags["validation_reason"]
    kept = client.get_run(client.get_model_version(settings.model_name, worse).run_id).data
    assert kept.metrics["promoted"] == 0.0 and kept.tags["retrain.promotion_decision"] == "kept"
    assert model_server.read_state(settings.home) == served_before and model_server.ping(
        served_before
    )
    assert audit.recent_attempts(engine, settings.dataset)[0].decision == "kept"


@ON_SQLITE
def test_rollback_by_command_serves_the_previous_champion(served_env: dict) -> None:
    settings, engine, _, client = context()
    first = register(weak_model())
    deploy_now(promote_now())
    second = register(strong_model())
    deploy_now(promote_now())
    _, deployed = deploy.rollback_champion(engine, client, settings)
    assert deployed.version == first and model_server.read_state(settings.home).version == first
    aliases = tracking.read_aliases(client, settings.model_name)
    assert aliases["champion"] == first and aliases["previous_champion"] == second
    assert audit.recent_attempts(engine, settings.dataset)[0].decision == "rolled_back"


def champion_served_then_promoted() -> tuple[str, str, promote.PromotionReport]:
    """A weak champion serving, a strong challenger promoted over it and not yet deployed."""
    old = register(weak_model())
    deploy_now(promote_now())
    new = register(strong_model())
    return old, new, promote_now()


def corrupt_model_files(client: tracking.MlflowClient, settings: Settings, version: str) -> None:
    """Make a registered version unloadable for real: its serialized model is garbage."""
    import mlflow

    source = client.get_model_version(settings.model_name, version).source
    logged = mlflow.MlflowClient(settings.tracking_uri).get_logged_model(source.split("/")[-1])
    folder = Path(logged.artifact_location.removeprefix("file://"))
    files = list(folder.rglob("pipeline.joblib"))
    assert files, f"no pipeline.joblib under {folder}"
    files[0].write_bytes(b"not a model")


def assert_rolled_back(settings: Settings, client, engine, old: str, new: str) -> None:
    served = model_server.read_state(settings.home)
    assert served is not None and served.version == old and model_server.ping(served)
    aliases = tracking.read_aliases(client, settings.model_name)
    assert aliases["champion"] == old and aliases["challenger"] == new
    assert aliases["previous_champion"] is None
    assert client.get_model_version(settings.model_name, new).tags["validation_status"] == "failed"
    assert audit.recent_attempts(engine, settings.dataset)[0].decision == "rolled_back"
    run = client.get_run(client.get_model_version(settings.model_name, new).run_id).data
    assert run.tags["retrain.promotion_decision"] == "rolled_back"


@ON_SQLITE
def test_a_model_that_cannot_load_is_rolled_back(
    served_env: dict, receiver: tuple[str, list[dict]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Also: every alias move is sent to RETRAIN_EVENTS_URL and kept in retrain's alias log,
    the rollback's moves with their reason."""
    monkeypatch.setenv("RETRAIN_EVENTS_URL", receiver[0])
    settings, engine, _, client = context()
    old, new, report = champion_served_then_promoted()
    corrupt_model_files(client, settings, new)
    with pytest.raises(ServeFailed, match="cannot be loaded") as err:
        deploy_now(report)
    assert f"rolled back: version {old} answers /ping at http://" in str(err.value)
    assert_rolled_back(settings, client, engine, old, new)
    moves = [(e["alias"], e["version"], e["previous"]) for e in receiver[1]]
    assert moves[-2:] == [("champion", old, new), ("previous_champion", None, old)]
    assert all(e["why"].startswith("rolled back: deploy of version") for e in receiver[1][-2:])
    assert ("champion", new, old) in moves  # the promotion that was undone
    logged = alias_log.last_move(engine, settings.model_name, "champion")
    assert logged is not None and (logged.version, logged.previous) == (old, new)


@ON_SQLITE
def test_a_wrong_smoke_answer_is_rolled_back(served_env: dict) -> None:
    settings, engine, _, client = context()
    old, new, report = champion_served_then_promoted()

    def always_wrong(expected: list, served: list) -> str | None:  # test-only seam
        return "injected mismatch"

    with pytest.raises(ServeFailed, match="injected mismatch"):
        deploy_now(report, check=always_wrong)
    assert_rolled_back(settings, client, engine, old, new)


@ON_SQLITE
def test_a_health_timeout_is_rolled_back_and_the_old_version_keeps_serving(
    served_env: dict,
) -> None:
    settings, engine, _, client = context()
    old, new, report = champion_served_then_promoted()
    with pytest.raises(ServeFailed, match="did not answer /ping within"):
        deploy_now(report, health_timeout=0.5)
    assert_rolled_back(settings, client, engine, old, new)


@ON_SQLITE
def test_a_port_held_by_another_program_is_never_touched(served_env: dict) -> None:
    import socket

    settings, engine, _, client = context()
    new = register(strong_model())
    report = promote_now()
    with socket.socket() as squatter:
        squatter.bind((settings.serve_host, settings.serve_port))
        squatter.listen()
        with pytest.raises(ServeFailed, match="held by a process retrain did not start") as err:
            deploy_now(report)
        assert "rolled back: no version answers /ping" in str(err.value)  # nothing served
        assert model_server.port_in_use(settings.serve_host, settings.serve_port)
    assert tracking.alias_version(client, settings.model_name, "champion") is None
    assert client.get_model_version(settings.model_name, new).tags["validation_status"] == "failed"
    assert audit.recent_attempts(engine, settings.dataset)[0].decision == "rolled_back"


@ON_SQLITE
def test_no_champion_means_nothing_to_deploy(served_env: dict) -> None:
    with pytest.raises(StageFailed, match="no champion to serve"):
        deploy_now()


@ON_SQLITE
def test_the_same_version_is_not_restarted(served_env: dict) -> None:
    settings, *_ = context()
    register(strong_model())
    deploy_now(promote_now())
    before = model_server.read_state(settings.home)
    again = serve_verified(settings, before.version)
    assert not again.changed and model_server.read_state(settings.home) == before
    assert model_server.ping(before)  # the very process recorded before keeps answering


@ON_SQLITE
def test_a_failure_on_the_main_port_serves_the_old_version_there_again(
    served_env: dict, direct: None
) -> None:
    settings, engine, _, client = context()
    old, new, report = champion_served_then_promoted()
    old_pid = model_server.read_state(settings.home).pid
    calls = []

    def fails_on_the_main_port(expected: list, served: list) -> str | None:  # test-only seam
        calls.append(served)
        return "injected mismatch on the main port" if len(calls) == 2 else None

    with pytest.raises(ServeFailed, match="on the main port"):
        deploy_now(report, check=fails_on_the_main_port)
    assert len(calls) == 2 and model_server.read_state(settings.home).pid != old_pid
    assert_rolled_back(settings, client, engine, old, new)


def hammer(url: str, frame: pd.DataFrame, stop: threading.Event, log: list) -> None:
    """Send one-row requests until told to stop; log (time, answer or None)."""
    while not stop.is_set():
        try:  # a slow answer is not a failure: the machine may be loaded mid-deploy
            log.append((time.monotonic(), tuple(model_server.invoke(url, frame, timeout=20))))
        except OSError:
            log.append((time.monotonic(), None))
            time.sleep(0.02)


@ON_SQLITE
@pytest.mark.parametrize("proxy", ["auto", "off"])
def test_clients_see_no_wrong_answer_and_fail_only_inside_the_downtime(
    served_env: dict, proxy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Behind the proxy no request fails during a swap; without it, failures stay inside the
    reported downtime window. Never an answer neither version would give."""
    monkeypatch.setenv("RETRAIN_PROXY", proxy)
    settings, *_ = context()
    old, new, report = champion_served_then_promoted()
    before, after = tuple(labels_of(settings, old)), tuple(labels_of(settings, new))
    assert before != after, "the two versions must answer differently for the check to bite"
    stop, log = threading.Event(), []
    client_thread = threading.Thread(target=hammer, args=(settings.serve_url, ROWS, stop, log))
    client_thread.start()
    try:
        wait_for(lambda: len(log) >= 10, 60, "ten answers from the old version")
        deployed = deploy_now(report)
        swapped = time.monotonic()
        wait_for(lambda: sum(at > swapped for at, _ in log) >= 10, 60, "ten answers after it")
    finally:
        stop.set()
        client_thread.join()
    answered = [answer for _, answer in log if answer is not None]
    failed = [at for at, answer in log if answer is None]
    assert set(answered) <= {before, after} and answered[0] == before
    assert {answer for at, answer in log if at > swapped} == {after}  # only the new version
    assert behind_proxy(settings) == (proxy == "auto")
    if proxy == "auto":  # measured by the client: no request failed across the swap
        assert failed == [] and deployed.downtime_seconds == 0.0
    else:
        assert all(deployed.down_from <= at <= deployed.down_until + 0.5 for at in failed)


@ON_SQLITE
def test_without_haproxy_the_haproxy_setting_refuses_and_auto_serves_on_the_port_itself(
    served_env: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HAProxy absent (a fault `./dev test` never leaves on the machine, so the one lookup
    is replaced): RETRAIN_PROXY=haproxy refuses to deploy, auto serves without it. The same
    deploy checks RETRAIN_PREDICTION_LOG=off and RETRAIN_SUPERVISE=off: the model server is
    given no log store, and no supervisor is left."""
    monkeypatch.setattr(haproxy, "binary", lambda: None)
    monkeypatch.setenv("RETRAIN_PROXY", "auto")
    monkeypatch.setenv("RETRAIN_PREDICTION_LOG", "off")
    monkeypatch.setenv("RETRAIN_SUPERVISE", "off")
    settings, *_ = context()
    register(strong_model())
    deployed = deploy_now(promote_now())
    served = model_server.read_state(settings.home)
    assert deployed.changed and not deployed.proxied and served.proxy is None
    assert served.public_url == settings.serve_url
    assert answers(settings) == labels_of(settings, served.version)
    environ = Path(f"/proc/{served.pid}/environ").read_bytes().split(b"\0")
    (serving,) = [e for e in environ if e.startswith(b"RETRAIN_SERVING=")]
    assert json.loads(serving.split(b"=", 1)[1])["log_url"] is None
    assert deployed.supervisor is None and model_server.live_supervisor(settings.home) is None
    model_server.stop(served)
    model_server.write_state(settings.home, None)
    monkeypatch.setenv("RETRAIN_PROXY", "haproxy")
    with pytest.raises(ServeFailed, match="RETRAIN_PROXY=haproxy but haproxy is not installed"):
        deploy_now()
    assert not model_server.port_in_use(settings.serve_host, settings.serve_port)

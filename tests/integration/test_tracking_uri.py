"""The logged pyfunc model on a real SQLite tracking store: logging and registering leave the
process's MLflow URIs and environment as they were, older flavors still load, the quick
champion lookup agrees with MLflow's client, and an unreachable tracking server is one line."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
import mlflow.sklearn
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from retrain.config.settings import load_settings
from retrain.io import engines, tracking
from retrain.model import logged_model
from retrain.model.aliases import Aliases
from retrain.model.champion_lookup import look_up_champion
from tests.support.fish import (
    LABELS,
    MODEL,
    log_and_register,
    raw_rows,
    store_uris,
    training_rows,
)
from tests.support.services import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def environment() -> dict[str, str]:
    """os.environ but MLflow's telemetry session id, which MLflow's own background thread
    drops when it cannot reach its telemetry server (offline), whatever we call."""
    return {k: v for k, v in os.environ.items() if not k.startswith("_MLFLOW_TELEMETRY")}


@pytest.mark.parametrize("outside", ["elsewhere.db", None])
def test_logging_and_registering_leave_the_process_uris_and_env_alone(
    outside: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whether MLFLOW_TRACKING_URI names another store or is unset, the process's MLflow URIs
    and environment are what they were, and that other store is never touched."""
    other = f"sqlite:///{tmp_path / outside}" if outside else None
    if other:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", other)
    else:
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    before = (mlflow.get_tracking_uri(), mlflow.get_registry_uri(), environment())
    tracking_uri, version = log_and_register(tmp_path / "store")
    model, example = logged_model.load_version_and_example(tracking_uri, MODEL, version)
    loaded = logged_model.load_version(tracking_uri, MODEL, version)
    assert (mlflow.get_tracking_uri(), mlflow.get_registry_uri(), environment()) == before
    assert os.environ.get("MLFLOW_TRACKING_URI") == other
    assert not (tmp_path / "elsewhere.db").exists()
    assert list(model.classes) == LABELS and len(model.predict_labels(example)) == 3
    assert np.allclose(loaded.predict_proba(raw_rows()).sum(axis=1), 1.0)


def test_an_older_sklearn_flavor_version_still_loads(tmp_path: Path) -> None:
    """Versions logged before the pyfunc wrapper (numeric features, sklearn flavor)."""
    tracking_uri, artifact_root = store_uris(tmp_path)
    client = tracking.make_client(tracking_uri)
    experiment = tracking.ensure_experiment(client, "old", artifact_root)
    run = tracking.start_parent_run(client, experiment, "t", {})
    frame, y = training_rows()
    numeric = frame[["size"]]
    estimator = LogisticRegression().fit(numeric, y)
    with tracking.fluent_store(tracking_uri), mlflow.start_run(run_id=run):
        info = mlflow.sklearn.log_model(estimator, name="model", input_example=numeric[:3])
    logged = tracking.LoggedModel(run, info.model_uri, tracking_uri, info.model_id)
    version = tracking.register_version(client, MODEL, logged, {})
    model = logged_model.load_version(tracking_uri, MODEL, version)
    assert np.allclose(model.predict_proba(frame), estimator.predict_proba(numeric))
    assert model.predict_labels(frame).tolist() == estimator.predict(numeric).tolist()


def test_the_quick_champion_lookup_agrees_with_the_mlflow_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`serve status` reads @champion without MLflow, from retrain's alias log: what the client
    gives, set, moved and unset through the alias owner; a move made outside retrain (as by
    hand in the MLflow UI) is seen by `check_registry`, which says the two disagree."""
    tracking_uri, _ = store_uris(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    monkeypatch.setenv("RETRAIN_DB_URL", f"sqlite:///{tmp_path / 'warehouse.db'}")
    monkeypatch.setenv("RETRAIN_MODEL_NAME", MODEL)
    monkeypatch.setenv("RETRAIN_HOME", str(tmp_path / "home"))
    settings = load_settings()
    empty = look_up_champion(settings)
    assert empty.version is None and "no move in retrain's log" in empty.source
    (_, first), (_, second) = log_and_register(tmp_path), log_and_register(tmp_path)
    client = tracking.make_client(tracking_uri)
    engine = engines.make_engine(settings.database_url)
    aliases = Aliases(client, engine, MODEL)
    for version in (first, second):
        aliases.crown(version, "test")
        quick = look_up_champion(settings)
        assert quick.version == tracking.alias_version(client, MODEL, "champion") == version
        assert quick.source == "retrain's alias log"
    assert tracking.alias_version(client, MODEL, "previous_champion") == first
    aliases.move("champion", None, "test")
    assert look_up_champion(settings).version is None
    client.set_registered_model_alias(MODEL, "champion", first)  # by hand, outside retrain
    checked = look_up_champion(settings, check_registry=True)
    assert checked.version == first and "moved outside retrain" in checked.disagreement


def test_a_tracking_server_that_does_not_answer_is_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from retrain.errors import StageFailed

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    port = free_port()
    uri = f"http://127.0.0.1:{port}"  # nothing listens there
    with pytest.raises(StageFailed) as failed, tracking.reporting_errors(uri):
        tracking.ensure_experiment(tracking.make_client(uri), "nowhere")
    message = str(failed.value)
    assert message.startswith(f"MLflow call to the tracking server http://127.0.0.1:{port}")
    assert "check MLFLOW_TRACKING_URI" in message and "\n" not in message

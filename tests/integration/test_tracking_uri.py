"""The logged pyfunc model on a real SQLite tracking store and a real `mlflow models serve`:
logging and registering leave the process's MLflow URIs and environment as they were, and the
served version answers raw rows (a null, an unseen category) with labels or probabilities."""

from __future__ import annotations

import json
import os
from pathlib import Path

import mlflow
import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

from retrain import registry, server, tracking
from retrain.deploy import compare_answers
from retrain.pyfunc import prepare_features
from tests.support.services import free_port, post_invocations

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KINDS = {"size": "numeric", "count": "integer", "member": "boolean", "colour": "categorical"}
NULLABLE = {"count", "member", "colour"}
LABELS = ["bream", "perch", "pike"]
MODEL = "fish_model"


def training_rows(rows: int = 60) -> tuple[pd.DataFrame, np.ndarray]:
    """Mixed kinds with nulls; `member` tells the classes apart (missing for perch)."""
    rng = np.random.default_rng(1)
    y = np.array(LABELS)[np.arange(rows) % 3]
    frame = pd.DataFrame(
        {
            "size": rng.normal(size=rows) + np.arange(rows) % 3,
            "count": pd.array(rng.integers(0, 9, rows), dtype="Int64"),
            "member": pd.Series([False, None, True] * (rows // 3), dtype=object),
            "colour": rng.choice(["red", "blue", "green"], rows),
        }
    )
    frame.loc[::7, "colour"] = None
    frame.loc[::5, "count"] = pd.NA
    return frame, y


def fitted_pipeline() -> Pipeline:
    encoder = OrdinalEncoder(
        handle_unknown="use_encoded_value", unknown_value=np.nan, encoded_missing_value=np.nan
    )
    prep = ColumnTransformer([("cat", encoder, ["colour"])], remainder="passthrough")
    model = RandomForestClassifier(n_estimators=10, random_state=0)
    pipeline = Pipeline([("prep", prep), ("clf", model)])
    frame, y = training_rows()
    return pipeline.fit(prepare_features(frame, KINDS), y)


def raw_rows() -> pd.DataFrame:
    """Rows as the source has them: a null in each nullable feature, an unseen category."""
    return pd.DataFrame(
        {
            "size": [0.2, 1.1, 2.3],
            "count": [None, 4, 2],
            "member": [True, None, False],
            "colour": ["red", None, "violet"],
        }
    )


def store_uris(folder: Path) -> tuple[str, str]:
    """A SQLite tracking store and its artifact root, both under `folder` (without a root the
    artifacts would land in ./mlruns of the working directory)."""
    return f"sqlite:///{folder / 'mlflow.db'}", str(folder / "artifacts")


def log_and_register(folder: Path) -> tuple[str, str]:
    """(tracking URI, registered version) of a model logged through tracking.log_model."""
    tracking_uri, artifact_root = store_uris(folder)
    client = tracking.make_client(tracking_uri)
    experiment = tracking.ensure_experiment(client, "fish", artifact_root)
    run = tracking.start_parent_run(client, experiment, "tune", {"retrain.stage": "tune"})
    logged = tracking.log_model(tracking_uri, run, fitted_pipeline(), raw_rows(), KINDS, NULLABLE)
    return tracking_uri, tracking.register_challenger(client, MODEL, logged, {})


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
    model, example = tracking.load_version_and_example(tracking_uri, MODEL, version)
    loaded = tracking.load_version(tracking_uri, MODEL, version)
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
    version = tracking.register_challenger(client, MODEL, logged, {})
    model = tracking.load_version(tracking_uri, MODEL, version)
    assert np.allclose(model.predict_proba(frame), estimator.predict_proba(numeric))
    assert model.predict_labels(frame).tolist() == estimator.predict(numeric).tolist()


def test_the_quick_alias_lookup_agrees_with_the_mlflow_client(tmp_path: Path) -> None:
    """`serve status` reads @champion without MLflow: one SELECT that must give what the client
    gives, set, moved and unset (an MLflow that renamed its alias table would fail here)."""
    assert registry.quick_alias_version(store_uris(tmp_path)[0], MODEL, "champion") is None
    (tracking_uri, first), (_, second) = log_and_register(tmp_path), log_and_register(tmp_path)
    client = tracking.make_client(tracking_uri)
    for version in (first, second):
        client.set_registered_model_alias(MODEL, "champion", version)
        quick = registry.quick_alias_version(tracking_uri, MODEL, "champion")
        assert quick == tracking.alias_version(client, MODEL, "champion") == version
    client.delete_registered_model_alias(MODEL, "champion")
    assert registry.quick_alias_version(tracking_uri, MODEL, "champion") is None


def test_served_version_answers_raw_rows_and_probabilities(tmp_path: Path) -> None:
    tracking_uri, version = log_and_register(tmp_path)
    model, example = tracking.load_version_and_example(tracking_uri, MODEL, version)
    home = tmp_path / "home"
    uri = tracking.model_uri(MODEL, version)
    served = server.start(home, tracking_uri, uri, version, "127.0.0.1", free_port())
    try:
        server.wait_healthy(home, served, 180)
        labels = server.invoke(served.url, raw_rows())
        assert len(labels) == 3 and set(labels) <= set(LABELS)
        assert compare_answers(model.predict_labels(example).tolist(), labels) is None
        split = json.loads(raw_rows().assign(target="pike", id=7).to_json(orient="split"))
        assert post_invocations(served.url, {"dataframe_split": split}) == labels
        table = pd.DataFrame(
            post_invocations(
                served.url, {"dataframe_split": split, "params": {"probabilities": True}}
            )
        )
    finally:
        server.stop(served)
    assert list(table.columns) == ["label", *(f"proba_{c}" for c in LABELS)]
    assert table["label"].tolist() == labels
    served_proba = table.drop(columns="label").to_numpy()
    assert np.allclose(served_proba.sum(axis=1), 1.0)
    # the same numbers as in-process: a null boolean reached the Pipeline as NaN, not False
    assert np.allclose(served_proba, model.predict_proba(raw_rows()))


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

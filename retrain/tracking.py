"""The MLflow adapter: runs, trial children, the logged model and the registry.

Every function takes its `MlflowClient` (or tracking URI) as an argument; nothing here reads
global configuration, so the flows choose the tracking store.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import mlflow.data
import pandas as pd
import skops.io
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.models import infer_signature
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

PINNED = ("scikit-learn", "pandas", "numpy", "scipy", "skops")


def make_client(tracking_uri: str) -> MlflowClient:
    """A client for one tracking store (SQLite file, or a tracking server URL)."""
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def ensure_experiment(client: MlflowClient, name: str) -> str:
    """The experiment's id, creating it on first use."""
    found = client.get_experiment_by_name(name)
    return found.experiment_id if found else client.create_experiment(name)


def start_parent_run(
    client: MlflowClient, experiment_id: str, name: str, tags: dict[str, str]
) -> str:
    """Open the parent run of a tuning study; returns its id."""
    return client.create_run(experiment_id, run_name=name, tags=tags).info.run_id


def log_trial(
    client: MlflowClient,
    experiment_id: str,
    parent_id: str,
    number: int,
    params: dict[str, Any],
    metrics: dict[str, float],
) -> str:
    """One nested child run per trial, written in a single batch."""
    run = client.create_run(
        experiment_id, tags={MLFLOW_PARENT_RUN_ID: parent_id, MLFLOW_RUN_NAME: f"trial-{number}"}
    )
    now = int(time.time() * 1000)
    client.log_batch(
        run.info.run_id,
        metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
        params=[Param(k, str(v)) for k, v in params.items()],
        tags=[RunTag("optuna.trial", str(number))],
    )
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def log_parent_summary(
    client: MlflowClient, run_id: str, params: dict[str, Any], metrics: dict[str, float]
) -> None:
    now = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
        params=[Param(f"best_{k}", str(v)) for k, v in params.items()],
    )


def log_steps(
    client: MlflowClient, run_id: str, series: dict[str, list[tuple[int, float]]]
) -> None:
    """Metrics with steps (a learning curve), one batch per series."""
    now = int(time.time() * 1000)
    for key, points in series.items():
        client.log_batch(run_id, metrics=[Metric(key, float(v), now, step) for step, v in points])


def log_figures(client: MlflowClient, run_id: str, figures: dict[str, Any]) -> None:
    """Each matplotlib figure as a PNG under `plots/`."""
    for name, figure in figures.items():
        client.log_figure(run_id, figure, f"plots/{name}")


def pip_requirements() -> list[str]:
    """Explicit requirements (inferring them costs seconds in a subprocess)."""
    from importlib.metadata import version

    return [f"mlflow=={mlflow.__version__}", *(f"{p}=={version(p)}" for p in PINNED)]


@dataclass(frozen=True)
class LoggedModel:
    run_id: str
    model_uri: str


def log_model(tracking_uri: str, run_id: str, model: Any, example: pd.DataFrame) -> LoggedModel:
    """Log the fitted model under `run_id` with signature, input example and the exact skops
    types it needs (MLflow refuses untrusted types unless they are listed)."""
    trusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    signature = infer_signature(example, model.predict(example))
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run(run_id=run_id):
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=signature,
            input_example=example,
            pip_requirements=pip_requirements(),
            skops_trusted_types=trusted,
        )
    return LoggedModel(run_id, info.model_uri)


def log_training_data(tracking_uri: str, run_id: str, parts: dict[str, pd.DataFrame]) -> None:
    """Lineage: each part (training, holdout rows) as a dataset input and a CSV snapshot, so a
    version keeps what it saw after the tables grow."""
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run(run_id=run_id), tempfile.TemporaryDirectory() as tmp:
        for name, frame in parts.items():
            mlflow.log_input(mlflow.data.from_pandas(frame, name=name), context=name)
            frame.to_csv(Path(tmp) / f"{name}.csv", index=False)
        mlflow.log_artifacts(tmp, artifact_path="data")


def register_challenger(
    client: MlflowClient, model_name: str, logged: LoggedModel, tags: dict[str, str]
) -> str:
    """Register a new version, tag it pending and point `challenger` at it; returns the version."""
    try:
        client.get_registered_model(model_name)
    except mlflow.exceptions.MlflowException:
        client.create_registered_model(model_name)
    version = client.create_model_version(
        model_name,
        logged.model_uri,
        run_id=logged.run_id,
        tags={"validation_status": "pending", **tags},
    )
    client.set_registered_model_alias(model_name, "challenger", version.version)
    return str(version.version)

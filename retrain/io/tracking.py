"""The MLflow adapter: runs, trial children, the logged model and the registry.

Every function takes its `MlflowClient` (or tracking URI) as an argument; nothing here reads
global configuration, so the flows choose the tracking store.
"""

from __future__ import annotations

import fcntl
import functools
import getpass
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from retrain.errors import StageFailed

if TYPE_CHECKING:  # the model flavours, pandas and scikit-learn load only where they are used
    import pandas as pd

FLUENT_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
# What the logged model needs beside mlflow: the Pipeline's libraries, joblib for its artifact,
# cloudpickle for the wrapper. lightgbm is added when the Pipeline uses it.
PINNED = ("scikit-learn", "pandas", "numpy", "scipy", "joblib", "cloudpickle")


@dataclass(frozen=True)
class FluentState:
    """The process-wide URIs as `mlflow.get_*_uri()` answer them, and the two variables."""

    tracking_uri: str
    registry_uri: str
    variables: dict[str, str | None]


def save_fluent() -> FluentState:
    return FluentState(
        mlflow.get_tracking_uri(),
        mlflow.get_registry_uri(),
        {name: os.environ.get(name) for name in FLUENT_VARIABLES},
    )


def restore_variables(variables: dict[str, str | None]) -> None:
    for name, value in variables.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def restore_fluent(saved: FluentState) -> None:
    """Put back the URIs and variables of `saved` through public calls. Setting None first
    drops the override `set_*_uri` left, so the URIs follow the variables (or MLflow's
    default) again as they did before; a URI that was set explicitly is set again."""
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)
    restore_variables(saved.variables)
    if mlflow.get_tracking_uri() != saved.tracking_uri:
        mlflow.set_tracking_uri(saved.tracking_uri)
    if mlflow.get_registry_uri() != saved.registry_uri:
        mlflow.set_registry_uri(saved.registry_uri)
    restore_variables(saved.variables)  # `set_*_uri` export what they set


@contextmanager
def fluent_store(tracking_uri: str) -> Iterator[None]:
    """Point MLflow's fluent API at `tracking_uri` for the block. `mlflow.set_tracking_uri`
    also exports MLFLOW_TRACKING_URI (and the registry its own variable); both URIs and both
    variables are restored here, or the next Settings read or fluent call in this process
    would silently follow the last store used (a deleted one, in a test or a bench)."""
    prepare_store(tracking_uri)
    saved = save_fluent()
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        yield
    finally:
        restore_fluent(saved)


@functools.cache
def prepare_store(tracking_uri: str) -> None:
    """Create a SQLite store's tables once, under a file lock. MLflow migrates an empty SQLite
    store on first open without one, and two processes doing it at once (two overlapping
    `retrain run`s on a fresh machine) corrupt each other's migration."""
    if not tracking_uri.startswith("sqlite:///"):
        return
    database = Path(tracking_uri.removeprefix("sqlite:///"))
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.with_name(database.name + ".init-lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        client.search_experiments(max_results=1)
        client.search_registered_models(max_results=1)


def describe_store(tracking_uri: str) -> str:
    """Where a tracking URI points, for messages: never a password."""
    parts = urlsplit(tracking_uri)
    if parts.scheme in ("http", "https"):
        return f"the tracking server {parts.scheme}://{parts.hostname}:{parts.port or ''}"
    return f"the tracking store {tracking_uri}"


@contextmanager
def reporting_errors(tracking_uri: str) -> Iterator[None]:
    """An MLflow failure (a server down, a refused request) as one line that says what to do."""
    try:
        yield
    except MlflowException as err:
        detail = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise StageFailed(
            f"MLflow call to {describe_store(tracking_uri)} failed ({detail}); {next_step(err)}"
        ) from err


def next_step(err: MlflowException) -> str:
    """What to check after a failed MLflow call: the credentials for a 401, the user's
    permissions for a 403, else the URI and the server."""
    text = str(err)
    if "error code 401" in text:
        return ("the server asks for a user: set MLFLOW_TRACKING_USERNAME and "
                "MLFLOW_TRACKING_PASSWORD (environment or settings file)")  # fmt: skip
    if "error code 403" in text:
        return ("MLFLOW_TRACKING_USERNAME may not do this: use the user that owns the "
                "experiment and the registered model, or have the admin grant it EDIT")  # fmt: skip
    return "check MLFLOW_TRACKING_URI and that the tracking server is up"


def make_client(tracking_uri: str) -> MlflowClient:
    """A client for one tracking store (SQLite file, or a tracking server URL)."""
    prepare_store(tracking_uri)
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


# Earlier MLflow 3 UIs opened an experiment with this tag in the model-training view; 3.17
# ignores it (a per-browser preference decides), so retrain's links carry the view instead
# (retrain.links.ML_VIEW). Kept for the UIs that still read it.
TRAINING_EXPERIMENT = {"mlflow.experimentKind": "custom_model_development"}


def ensure_experiment(client: MlflowClient, name: str, artifact_root: str | None = None) -> str:
    """The experiment's id, creating it on first use (its artifacts under `artifact_root`
    when given; a tracking server chooses its own)."""
    found = client.get_experiment_by_name(name)
    if found:
        return found.experiment_id
    location = f"{artifact_root.rstrip('/')}/{name}" if artifact_root else None
    return client.create_experiment(name, artifact_location=location, tags=TRAINING_EXPERIMENT)


def source_tags(code_version: str) -> dict[str, str]:
    """MLflow's own Source and User columns, and the code version, for a run retrain opens."""
    return {
        "mlflow.source.type": "JOB",
        "mlflow.source.name": "retrain tune",
        "mlflow.user": getpass.getuser(),
        "retrain.code_version": code_version,
    }


def log_params(client: MlflowClient, run_id: str, params: dict[str, str]) -> None:
    client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()])


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
    """One nested child run per trial, created with its trial number (a worker killed
    between two calls leaves no child run that names no trial), then written in one batch."""
    tags = {MLFLOW_PARENT_RUN_ID: parent_id, MLFLOW_RUN_NAME: f"trial-{number}",
            "optuna.trial": str(number)}  # fmt: skip
    run = client.create_run(experiment_id, tags=tags)
    now = int(time.time() * 1000)
    client.log_batch(
        run.info.run_id,
        metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
        params=[Param(k, str(v)) for k, v in params.items()],
    )
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def end_run(client: MlflowClient, run_id: str, status: str = "FINISHED") -> None:
    client.set_terminated(run_id, status)


def tag_run(client: MlflowClient, run_id: str, key: str, value: str) -> None:
    client.set_tag(run_id, key, value)


def log_files(
    client: MlflowClient, run_id: str, texts: dict[str, str], dicts: dict[str, dict] | None = None
) -> None:
    """Text artifacts (name: content) and JSON artifacts (name: dict) of a run."""
    for name, content in texts.items():
        client.log_text(run_id, content, name)
    for name, content in (dicts or {}).items():
        client.log_dict(run_id, content, name)


def log_file(client: MlflowClient, run_id: str, path: str) -> None:
    client.log_artifact(run_id, path)


def find_run(client: MlflowClient, experiment_id: str, filter_string: str) -> str | None:
    """The id of the first run matching `filter_string`, or None."""
    found = client.search_runs([experiment_id], filter_string, max_results=1)
    return found[0].info.run_id if found else None


def version_started_at(client: MlflowClient, model_name: str, version: str) -> int:
    """When the run that logged the version started (ms since the epoch)."""
    run_id = client.get_model_version(model_name, version).run_id
    return int(client.get_run(run_id).info.start_time)


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
    """Each matplotlib figure as a PNG under `plots/`, uploaded in one call."""
    with tempfile.TemporaryDirectory() as tmp:
        for name, figure in figures.items():
            figure.savefig(Path(tmp) / name)
        client.log_artifacts(run_id, tmp, "plots")


def uses_lightgbm(pipeline: Any) -> bool:
    """True when the Pipeline (or any estimator nested in it, also inside a calibrator's
    frozen estimator) comes from lightgbm."""
    return any(
        type(part).__module__.split(".")[0] == "lightgbm" for part in estimators_in(pipeline)
    )


def estimators_in(model: Any, depth: int = 0) -> list[Any]:
    """The model and every estimator its params hold, nested ones too (a few levels)."""
    found = [model]
    if depth < 4 and hasattr(model, "get_params"):
        for value in model.get_params(deep=True).values():
            if hasattr(value, "get_params") and value is not model:
                found += estimators_in(value, depth + 1)
    return found


def pip_requirements(pipeline: Any = None) -> list[str]:
    """Explicit requirements (inferring them costs seconds in a subprocess)."""
    from importlib.metadata import version

    packages = [
        *PINNED,
        *(["lightgbm"] if pipeline is not None and uses_lightgbm(pipeline) else []),
    ]
    return [f"mlflow=={mlflow.__version__}", *(f"{p}=={version(p)}" for p in packages)]


@dataclass(frozen=True)
class LoggedModel:
    run_id: str
    model_uri: str
    tracking_uri: str
    model_id: str


def log_pyfunc(
    tracking_uri: str,
    run_id: str,
    python_model: Any,
    artifacts: dict[str, str],
    signature: Any,
    example: pd.DataFrame,
    requirements: list[str],
) -> LoggedModel:
    """Log a pyfunc `python_model` (with its artifact files) under `run_id` as `model`."""
    import mlflow.pyfunc

    with fluent_store(tracking_uri), mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=python_model,
            artifacts=artifacts,
            signature=signature,
            input_example=example,
            pip_requirements=requirements,
        )
    return LoggedModel(run_id, info.model_uri, tracking_uri, info.model_id)


MAX_INPUT_TAG = 500  # characters MLflow keeps in a dataset input's tag value


def log_training_data(
    tracking_uri: str,
    run_id: str,
    parts: dict[str, pd.DataFrame],
    max_bytes: int,
    source: dict[str, dict[str, str]] | None = None,
) -> dict[str, bool]:
    """Lineage: each part (training, holdout rows) as a dataset input (digest, row count,
    and as input tags `source[part]`: the SQL it came from), and a CSV snapshot when it is
    under `max_bytes`, so a version keeps what it saw after the tables grow without a night's
    logging costing hundreds of MB. Returns which parts got a snapshot."""
    import mlflow.data

    source = source or {}
    kept = {name: estimated_csv_bytes(frame) <= max_bytes for name, frame in parts.items()}
    with (
        fluent_store(tracking_uri),
        mlflow.start_run(run_id=run_id),
        tempfile.TemporaryDirectory() as tmp,
    ):
        for name, frame in parts.items():
            tags = {"retrain.rows": str(len(frame)), **source.get(name, {})}
            tags = {key: value[:MAX_INPUT_TAG] for key, value in tags.items()}
            log_input_once(mlflow.data.from_pandas(frame, name=name), name, tags)
            if kept[name]:
                frame.to_csv(Path(tmp) / f"{name}.csv", index=False)
        if any(kept.values()):
            mlflow.log_artifacts(tmp, artifact_path="data")
    return kept


def log_input_once(dataset: object, context: str, tags: dict[str, str], tries: int = 4) -> None:
    """Log a dataset input of the active run. Two runs logging the same rows at once (a
    nightly and a manual run) race on the store's unique (experiment, name, digest) row; the
    loser's retry finds the winner's dataset and links it."""
    import mlflow

    for attempt in range(tries):
        try:
            mlflow.log_input(dataset, context=context, tags=tags)
            return
        except Exception as err:
            said = str(err)
            duplicate = "UNIQUE constraint failed" in said or "Duplicate entry" in said
            if not duplicate or attempt == tries - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


def estimated_csv_bytes(frame: pd.DataFrame, sample: int = 1000) -> int:
    """The size a CSV of `frame` would have, from its first rows (writing it to find out would
    cost what the cap saves)."""
    if frame.empty:
        return 0
    head = frame.head(sample)
    return int(len(head.to_csv(index=False).encode()) * len(frame) / len(head))


def register_version(
    client: MlflowClient, model_name: str, logged: LoggedModel, tags: dict[str, str]
) -> str:
    """Register a new version tagged pending (no alias moves here); returns the version."""
    try:
        client.get_registered_model(model_name)
    except MlflowException as err:
        if not is_missing(err):
            raise
        client.create_registered_model(model_name)
    # A SQL registry resolves the `models:/m-...` source through a default MlflowClient(),
    # that is the process-wide tracking URI: point it at the store that holds the model.
    with fluent_store(logged.tracking_uri):
        version = client.create_model_version(
            model_name,
            logged.model_uri,
            run_id=logged.run_id,
            tags={"validation_status": "pending", **tags},
            model_id=logged.model_id,  # a tracking server refuses a models:/m-... source without it
        )
    return str(version.version)


ALIASES = ("champion", "challenger", "previous_champion")


def alias_version(client: MlflowClient, model_name: str, alias: str) -> str | None:
    """The version an alias points at, or None. Read one alias at a time: the alias lists in
    search results are not reliable on SQL stores."""
    try:
        return str(client.get_model_version_by_alias(model_name, alias).version)
    except MlflowException as err:
        if is_missing(err):
            return None
        raise


def version_exists(client: MlflowClient, model_name: str, version: str) -> bool:
    try:
        client.get_model_version(model_name, version)
    except MlflowException as err:
        if is_missing(err):
            return False
        raise
    return True


# How MLflow's registry says "no such model, version or alias" (a missing alias is an invalid
# parameter there). Anything else, a 401 or 403 of a server with auth, a server error, is a
# failure to report, never an absent alias: a promotion must not take it for "no champion".
MISSING = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


def is_missing(err: MlflowException) -> bool:
    return err.error_code in MISSING


def read_aliases(client: MlflowClient, model_name: str) -> dict[str, str | None]:
    """Where every alias of the contract points now (a snapshot to restore on rollback)."""
    return {alias: alias_version(client, model_name, alias) for alias in ALIASES}


def set_alias(client: MlflowClient, model_name: str, alias: str, version: str | None) -> None:
    """Point `alias` at `version`, or remove it (None: the alias must exist). Only
    `model.aliases` calls this; it knows where the alias pointed before."""
    if version is not None:
        client.set_registered_model_alias(model_name, alias, version)
    else:
        client.delete_registered_model_alias(model_name, alias)


def set_validation(
    client: MlflowClient, model_name: str, version: str, status: str, reason: str | None = None
) -> None:
    """Tag a version `validation_status` (and `validation_reason` when given)."""
    client.set_model_version_tag(model_name, version, "validation_status", status)
    if reason is not None:
        client.set_model_version_tag(model_name, version, "validation_reason", reason[:5000])


def log_promotion(
    client: MlflowClient,
    model_name: str,
    version: str,
    decision: str,
    challenger_auroc: float | None = None,
    champion_auroc: float | None = None,
    extra: dict[str, float | None] | None = None,
) -> None:
    """The promotion comparison on the run that produced `version` (the night's tuning run),
    so champion and challenger AUROC and the decision chart night after night in MLflow. A
    later rollback logs `rolled_back` over the decision (the metric keeps both steps)."""
    run_id = client.get_model_version(model_name, version).run_id
    now = int(time.time() * 1000)
    values = {
        "promotion_challenger_auroc": challenger_auroc,
        "promotion_champion_auroc": champion_auroc,
        "promoted": float(decision == "promoted"),
        **(extra or {}),
    }
    client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), now, 0) for k, v in values.items() if v is not None],
        tags=[RunTag("retrain.promotion_decision", decision)],
    )


def describe_run(client: MlflowClient, run_id: str, markdown: str) -> None:
    """The run's description in the MLflow UI (rendered as markdown)."""
    client.set_tag(run_id, "mlflow.note.content", markdown)


def version_facts(client: MlflowClient, model_name: str, version: str) -> tuple[dict, float | None]:
    """A version's tags and the holdout AUROC its run logged (`test_auroc`)."""
    found = client.get_model_version(model_name, version)
    return dict(found.tags), client.get_run(found.run_id).data.metrics.get("test_auroc")


def describe_version(client: MlflowClient, model_name: str, version: str, markdown: str) -> None:
    """The version's description in the MLflow UI (rendered as markdown)."""
    client.update_model_version(model_name, version, description=markdown)


def model_uri(model_name: str, version: str) -> str:
    return f"models:/{model_name}/{version}"


def download_version(tracking_uri: str, model_name: str, version: str, folder: str) -> str:
    """The version's model folder, downloaded under `folder` from the given store only (a
    `models:/` URI would be resolved through the process-wide registry URI instead)."""
    location = make_client(tracking_uri).get_model_version_download_uri(model_name, version)
    return mlflow.artifacts.download_artifacts(
        location, dst_path=folder, tracking_uri=tracking_uri, registry_uri=tracking_uri
    )


def model_flavors(local: str) -> set[str]:
    """The flavours a downloaded model folder was logged with."""
    from mlflow.models import Model

    return set(Model.load(local).flavors)


def load_python_model(local: str) -> Any:
    """The python_model object inside a downloaded pyfunc model folder."""
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(local).unwrap_python_model()


def load_sklearn(local: str) -> Any:
    """The estimator inside a downloaded model folder of the sklearn flavour."""
    import mlflow.sklearn

    return mlflow.sklearn.load_model(local)


def signature_names(local: str) -> tuple[list[str], list[str]]:
    """(output column names, required input column names) of a downloaded model's signature;
    empty lists when it logged none."""
    from mlflow.models import Model

    signature = Model.load(local).signature
    if signature is None:
        return [], []
    outputs = signature.outputs.input_names() if signature.outputs else []
    required = [str(spec.name) for spec in signature.inputs.inputs if spec.required]
    return [str(n) for n in outputs], required


def load_input_example(local: str) -> pd.DataFrame:
    """The input example logged with a downloaded model folder."""
    from mlflow.models import Model

    return Model.load(local).load_input_example(local)

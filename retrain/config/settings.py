"""The one typed settings object, read from the environment when asked for (never at import)."""

from __future__ import annotations

import os
import re
import zoneinfo
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from retrain.errors import BadInput

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

    from retrain.config.dataset_schema import DatasetSchema

DEFAULT_CHUNK_ROWS = 25_000
BUNDLED_SCHEMAS = Path(__file__).parent / "schemas"
WORK_POOL = "retrain-pool"  # the process work pool of prefect.yaml
FAMILIES = ("random_forest", "logreg", "hgb", "lightgbm")
# What a pattern-checked setting allows, in words (the error message says them, not the regex).
PATTERN_WORDS = {
    "dataset": "letters, digits and _, starting with a letter, at most 41 characters",
    "proxy": "auto, haproxy or off",
    "rollout": "direct, canary or shadow",
    "approval": "off or required",
    "objective": "auroc or accuracy",
    "artifacts_uri": "an object-store URI such as s3://bucket/prefix",
    "serve_token": "at least 16 characters among letters, digits and . _ ~ + / = -",
    "metrics_token": "at least 16 characters among letters, digits and . _ ~ + / = -",
}
TOKEN_PATTERN = r"^[A-Za-z0-9._~+/=-]{16,}$"  # RFC 6750's token characters, long enough
SECRET_FIELDS = ("serve_token", "metrics_token")  # never echoed in an error line
TYPE_WORDS = {
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
    "string": "text",
}
BOUND_ERRORS = ("greater_than", "greater_than_equal", "less_than", "less_than_equal")


class Settings(BaseSettings):
    """Every tunable of retrain; each field is the env variable RETRAIN_<NAME> unless noted."""

    model_config = SettingsConfigDict(env_prefix="RETRAIN_", extra="ignore", env_ignore_empty=True)

    home: Path = Field(Path("~/.retrain"), description="state folder: stores, artifacts, serving")
    db_url: str | None = Field(None, description="SQLAlchemy URL of the data store")
    mlflow_tracking_uri: str | None = Field(
        None,
        validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "RETRAIN_MLFLOW_TRACKING_URI"),
        description="MLflow tracking URI (MLflow's own variable)",
    )
    dataset: str | None = Field(
        None,
        pattern=r"^[A-Za-z][A-Za-z0-9_]{0,40}$",
        description="dataset name and table prefix; default: the schema's name, else iris",
    )
    schema_path: Path | None = Field(
        None,
        validation_alias=AliasChoices("RETRAIN_SCHEMA", "RETRAIN_SCHEMA_PATH"),
        description="pandera YAML schema of the dataset; default: the bundled iris schema",
    )
    source: str | None = Field(
        None, description="file, folder or glob loaded when no --source is given"
    )
    target: str | None = Field(None, description="label column; default: the schema's target")
    positive_class: str | None = Field(
        None, description="positive label of a binary target; default: the schema's"
    )
    model_name: str | None = Field(None, description="registered model; default <dataset>_model")
    experiment: str | None = Field(
        None, description="MLflow experiment; default <dataset>_classification_experiment"
    )
    artifacts_uri: str | None = Field(
        None,
        pattern=r"^(s3|gs|wasbs|hdfs)://[^/\s]+(/\S*)?$",
        description="where new experiments keep their artifacts, e.g. s3://bucket/prefix (with "
        "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and MLFLOW_S3_ENDPOINT_URL for S3-compatible "
        "storage); existing experiments keep theirs",
    )
    serve_host: str = "127.0.0.1"
    serve_port: int = Field(1234, ge=1, le=65535)
    serve_token: str | None = Field(
        None,
        pattern=TOKEN_PATTERN,
        repr=False,
        description="bearer token the served model asks for (checked by the proxy; /ping and "
        "/health stay open); required when RETRAIN_SERVE_HOST reaches beyond loopback",
    )
    metrics_token: str | None = Field(
        None,
        pattern=TOKEN_PATTERN,
        repr=False,
        description="bearer token that opens only /metrics (Prometheus's credential); the "
        "serve token opens it too",
    )
    alert_url: str | None = None
    events_url: str | None = Field(
        None, description="receives a JSON event for every alias move (RETRAIN_EVENTS_URL)"
    )
    mlflow_ui_url: str | None = Field(
        None,
        description="the MLflow UI a person opens (`mlflow ui` on an embedded store): run ids "
        "and versions in logs, artifacts and alerts become links; default: a tracking "
        "server's own URL",
    )
    proxy: str = Field(
        "auto",
        pattern="^(auto|haproxy|off)$",
        description="reverse proxy on the main port for swaps that fail no request: auto "
        "(HAProxy when installed), haproxy (required), off",
    )
    pushgateway_url: str | None = Field(
        None, description="Prometheus Pushgateway that receives the nightly run's metrics"
    )
    drift_threshold: float = Field(
        0.5, ge=0.0, le=1.0,
        description="share of drifted features above which retrain.data.drifted is emitted",
    )  # fmt: skip
    drift_retrain: bool = Field(
        False,
        description="the bootstrap adds an automation: retrain-manual on retrain.data.drifted",
    )
    supervise: bool = Field(
        True,
        description="a supervisor watches what retrain serves (restarts a dead model server): "
        "deploy, rollback, serve start and the worker leave one running",
    )
    prediction_log: bool = Field(
        True, description="record every row the served model answers in <dataset>_predictions"
    )
    prediction_buffer: int = Field(
        10_000, ge=1, description="requests the prediction log holds while the store is away"
    )
    prediction_retention_days: int = Field(
        30, ge=1, description="days of the prediction log the nightly run keeps"
    )
    encoding: str = Field("utf-8", description="text encoding of source CSV files")
    max_reject_fraction: float = Field(0.2, ge=0.0, le=1.0)
    trials: int = Field(20, ge=1, description="most Optuna trials per tuning run")
    tune_sample_rows: int = Field(
        100_000, ge=100, description="above this many training rows, tune on a stratified sample"
    )
    tune_prune: bool = Field(True, description="stop trials that are behind after a fold round")
    tune_budget: float = Field(
        300.0,
        gt=0,
        le=24 * 3600,
        description="seconds the whole tuning study may take (trials is a cap)",
    )
    family: str = Field(
        "auto",
        description="model families to search: auto (lightgbm, or hgb where LightGBM cannot "
        "load), one name or a comma list of random_forest, logreg, hgb, lightgbm",
    )
    objective: str = Field("auroc", pattern="^(auroc|accuracy)$", description="metric to maximise")
    seed: int = Field(42, description="seed of the sampler, the folds and the models")
    workers: int = Field(1, ge=1, le=64, description="trial workers sharing one Optuna study")
    optuna_storage: str | None = Field(
        None, description="Optuna RDB storage URL for several workers; default: RETRAIN_DB_URL"
    )
    dask_address: str | None = Field(
        None,
        description="scheduler of an existing Dask cluster for the trial workers (default: a "
        "local cluster of --workers processes)",
    )
    spark_master: str = Field(
        "local[*]", description="Spark master of `retrain score` (spark://host:7077 for a cluster)"
    )
    tune_heartbeat: int = Field(
        30, ge=1,
        description="seconds between a trial's heartbeats; a trial silent for two is failed "
        "and retried",
    )  # fmt: skip
    min_improvement: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="a challenger must beat the champion's AUROC by more than this",
    )
    min_auroc: float = Field(0.5, ge=0.0, le=1.0, description="floor for the first champion")
    max_brier_increase: float | None = Field(
        None, ge=0.0, description="keep the champion when the challenger's holdout Brier score "
        "is worse by more than this (default: calibration does not decide)",
    )  # fmt: skip
    require_significance: bool = Field(
        False, description="also require a paired bootstrap to find the challenger better"
    )
    confidence: float = Field(0.95, gt=0.5, lt=1.0, description="confidence of that bootstrap")
    health_timeout: float = Field(
        120.0, gt=0, description="seconds a model server may take to answer /ping"
    )
    lock_wait: float = Field(
        1800.0, ge=0, description="seconds a run waits for another run's promotion to end"
    )
    timezone: str = Field("UTC", description="IANA timezone of the nightly schedule")
    chunk_rows: int = Field(DEFAULT_CHUNK_ROWS, ge=1, description="rows per bulk-load chunk")
    snapshot_max_bytes: int = Field(
        5_000_000, ge=0, description="largest CSV snapshot of training/holdout rows logged"
    )
    holdout: str = Field(
        "auto",
        pattern="^(auto|time|batch|hash)$",
        description="holdout rows: time (the newest by the time column), batch (the newest "
        "by their batch's load time), hash (a fixed fifth by row hash); auto: time when the "
        "schema names a timestamp, else hash",
    )
    holdout_days: float | None = Field(
        None, gt=0, description="a time holdout's days before the newest row (default: newest 20%)"
    )
    time_column: str | None = Field(
        None,
        description="the time column of a time holdout (default: the schema's first timestamp)",
    )
    train_window_days: str | None = Field(
        None,
        pattern=r"^(auto|[0-9]+(\.[0-9]+)?)$",
        description="days of rows before the newest the model trains on (default: all "
        "history); auto: tuning picks the window, judged forward in time",
    )
    train_max_rows: int | None = Field(
        None, ge=100, description="most training rows, newest first (default: no cap)"
    )
    refit: str = Field(
        "auto",
        pattern=r"^(auto|window\+holdout|training)$",
        description="what the registered model is fit on after the holdout judged it: "
        "window+holdout (the newest rows too), training (as judged); auto: window+holdout "
        "with a time holdout, else training",
    )
    degradation_margin: float = Field(
        0.02, ge=0.0, le=1.0,
        description="realized AUROC this far below the holdout AUROC counts as a bad day",
    )  # fmt: skip
    degradation_days: int = Field(
        2, ge=1, description="bad labelled days among the last RETRAIN_DEGRADATION_WINDOW "
        "that raise retrain.model.degraded",
    )  # fmt: skip
    degradation_retrain: bool = Field(
        False, description="the bootstrap adds retrain-on-degradation (retrain.model.degraded "
        "runs retrain-manual)",
    )  # fmt: skip
    degradation_window: int = Field(
        5, ge=1, description="labelled days the degradation verdict looks back on"
    )
    rollout: str = Field(
        "direct",
        pattern="^(direct|shadow|canary)$",
        description="how a promoted challenger reaches traffic: direct (the verified swap), "
        "canary (RETRAIN_CANARY_PERCENT of requests through a bake), shadow (the champion's "
        "logged requests replayed to it through a bake; no client sees its answers)",
    )
    canary_percent: float = Field(
        10, gt=0, lt=100, description="share of requests (percent) a canary answers"
    )
    bake_minutes: float = Field(
        60, gt=0, le=7 * 24 * 60,
        description="how long a canary must hold its guard metrics before it is champion",
    )  # fmt: skip
    bake_check_seconds: float = Field(
        60, gt=0, le=3600, description="how often the bake reads the guard metrics"
    )
    guard_max_error_rate: float = Field(
        0.05, ge=0.0, le=1.0, description="the candidate's failed share of its requests"
    )
    guard_max_p95_ratio: float = Field(
        2.0, gt=1.0, description="candidate p95 latency over the champion's, same period"
    )
    guard_p95_slack_ms: float = Field(
        25.0, ge=0.0, description="milliseconds of p95 a candidate may add beyond that ratio"
    )
    guard_max_psi: float = Field(
        0.2, gt=0.0,
        description="population stability index of the candidate's probabilities against "
        "the champion's (0.1: a shift, 0.2: a large one)",
    )  # fmt: skip
    guard_max_auroc_drop: float = Field(
        0.02, ge=0.0, le=1.0,
        description="realized AUROC the candidate may trail the champion by, once labels came",
    )  # fmt: skip
    approval: str = Field(
        "off",
        pattern="^(off|required)$",
        description="required: a person approves each promotion in the Prefect UI (after a "
        "canary's bake, or instead of it with a direct rollout)",
    )
    approval_hours: float = Field(
        24, gt=0, le=24 * 30,
        description="hours an approval waits for an answer; then the champion stays",
    )  # fmt: skip
    guard_max_disagreement: float = Field(
        0.2, ge=0.0, le=1.0,
        description="share of replayed rows a shadow may answer unlike the champion did",
    )  # fmt: skip
    guard_min_requests: int = Field(
        20, ge=1, description="candidate requests before a guard judges at all"
    )

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("family")
    @classmethod
    def _known_families(cls, value: str) -> str:
        names = [n.strip() for n in value.split(",") if n.strip()]
        if names == ["auto"]:
            return "auto"
        unknown = [n for n in names if n not in FAMILIES]
        if unknown or not names:
            raise ValueError(f"unknown families {unknown or [value]}; choose from {FAMILIES}")
        return ",".join(dict.fromkeys(names))

    @field_validator("timezone")
    @classmethod
    def _iana_timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (KeyError, ValueError, OSError):
            raise ValueError(
                "not an IANA time zone; use a name such as UTC, Europe/Paris or America/New_York"
            ) from None
        return value

    @model_validator(mode="after")
    def _names_follow_dataset(self) -> Settings:
        """The dataset is RETRAIN_DATASET, else the schema's `name:`, else iris; the model and
        experiment names follow it, so two datasets never share a champion."""
        if self.dataset is None:
            name = read_schema_name(self.schema_file)
            self.dataset = dataset_name(name) if name else "iris"
        self.model_name = self.model_name or f"{self.dataset}_model"
        self.experiment = self.experiment or f"{self.dataset}_classification_experiment"
        return self

    @property
    def families(self) -> tuple[str, ...]:
        """Each name of RETRAIN_FAMILY alone (a comma list searches several); `auto` is
        resolved by `retrain.training.families.resolve_families` where the models load."""
        return tuple(self.family.split(","))

    def load_schema(self) -> DatasetSchema:
        """The dataset's schema file, with RETRAIN_TARGET / RETRAIN_POSITIVE_CLASS applied."""
        from retrain.config.dataset_schema import load_dataset_schema

        return load_dataset_schema(self.schema_file, self.target, self.positive_class)

    def check_schema_file(self) -> None:
        """Refuse now a schema file that cannot be read or is no YAML mapping with columns
        (quick, without pandera: its own rules are checked where the schema loads)."""
        check_schema_file(self.schema_file)

    @property
    def mlflow_ui(self) -> str | None:
        """The MLflow UI's base URL for links, None when nobody serves one."""
        from retrain.links import mlflow_ui

        return mlflow_ui(self.tracking_uri, self.mlflow_ui_url)

    @property
    def serve_url(self) -> str:
        return f"http://{self.serve_host}:{self.serve_port}"

    @property
    def database_url(self) -> str:
        """RETRAIN_DB_URL, or the embedded SQLite warehouse under RETRAIN_HOME."""
        return self.db_url or f"sqlite:///{self.home / 'warehouse.db'}"

    @property
    def optuna_storage_url(self) -> str:
        """Where the workers of one study meet: RETRAIN_OPTUNA_STORAGE or the data store."""
        return self.optuna_storage or self.database_url

    @property
    def tracking_uri(self) -> str:
        """MLFLOW_TRACKING_URI, or the embedded SQLite tracking store under RETRAIN_HOME."""
        return self.mlflow_tracking_uri or f"sqlite:///{self.home / 'mlflow.db'}"

    @property
    def artifact_root(self) -> str | None:
        """Where new experiments keep their artifacts: RETRAIN_ARTIFACTS_URI (an object store)
        when set; else, for an embedded (file) tracking store, under RETRAIN_HOME, not in the
        working directory; a tracking server keeps its own."""
        if self.artifacts_uri:
            return self.artifacts_uri
        if self.tracking_uri.startswith(("sqlite:", "file:", "/")):
            return (self.home / "artifacts").as_uri()
        return None

    @property
    def schema_file(self) -> Path:
        """The dataset's pandera schema: RETRAIN_SCHEMA, or the bundled iris schema."""
        return self.schema_path or BUNDLED_SCHEMAS / "iris.yaml"


def read_schema_name(path: Path) -> str | None:
    """The schema file's `name:`, or None (for choosing the dataset name)."""
    try:
        document = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    name = document.get("name") if isinstance(document, dict) else None
    return str(name) if name else None


def dataset_name(stem: str) -> str:
    """A file stem as a dataset name (a table prefix): letters, digits and underscores."""
    name = re.sub(r"[^A-Za-z0-9_]+", "_", stem).strip("_")[:40] or "dataset"
    return name if name[0].isalpha() else f"t{name}"[:40]


def env_file() -> Path:
    """The settings file every retrain process reads (the CLI, a worker, its flow runs):
    RETRAIN_ENV_FILE, else `retrain.env` in the home the environment names (RETRAIN_HOME or
    ~/.retrain). A missing default file is simply no file; a named one must exist."""
    named = os.environ.get("RETRAIN_ENV_FILE")
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise BadInput(
                f"RETRAIN_ENV_FILE names {path}, which is not a file; create it or unset it"
            )
        return path
    return Path(os.environ.get("RETRAIN_HOME") or "~/.retrain").expanduser() / "retrain.env"


# The variables of the tools retrain drives that the settings file may carry: Prefect's (the
# API URL and its auth string), MLflow's (tracking URI and credentials, S3 endpoint) and the
# AWS SDK's (object-store credentials).
TOOL_PREFIXES = ("PREFECT_", "MLFLOW_", "AWS_")


def export_tool_variables() -> list[str]:
    """Copy the settings file's Prefect, MLflow and AWS variables into this process's
    environment, where the environment does not set them already; returns their names.

    Those libraries read their own variables, Prefect once when it is imported, so every
    entry point (the CLI, the worker, the bootstrap) calls this before importing them; the
    processes they start (flow runs, model servers) inherit the result."""
    from dotenv import dotenv_values

    path = env_file()
    if not path.is_file():
        return []
    exported = []
    for name, value in dotenv_values(path, encoding="utf-8").items():
        if name.startswith(TOOL_PREFIXES) and value is not None and name not in os.environ:
            os.environ[name] = value
            exported.append(name)
    return exported


def load_settings(**overrides: object) -> Settings:
    """Read the environment and the settings file now. The environment wins over the file,
    and explicit, non-None overrides (command-line options, flow parameters) over both."""
    try:
        given = {k: v for k, v in overrides.items() if v is not None}
        return Settings(_env_file=env_file(), _env_file_encoding="utf-8", **given)
    except ValidationError as err:
        errors = err.errors()
        more = f" (and {len(errors) - 1} more bad setting(s))" if len(errors) > 1 else ""
        raise BadInput(setting_error(errors[0]) + more) from err


def check_schema_file(path: Path) -> None:
    """The schema file can be read and is a YAML mapping with `columns`, else BadInput."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or "not UTF-8 text"
        raise BadInput(f"cannot read schema {path} ({reason}); check RETRAIN_SCHEMA") from err
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise BadInput(
            f"schema {path} is not YAML ({str(err).splitlines()[0]}); fix it or check "
            "RETRAIN_SCHEMA"
        ) from err
    if not isinstance(document, dict) or not isinstance(document.get("columns"), dict):
        raise BadInput(
            f"schema {path} is not a pandera YAML schema (no columns); check RETRAIN_SCHEMA"
        )


def setting_error(error: ErrorDetails) -> str:
    """One pydantic error as one line in words: the setting, its value, what is allowed."""
    if not error["loc"]:
        return f"bad settings: {error['msg']}"
    field = str(error["loc"][0])
    value = "<hidden>" if field in SECRET_FIELDS else str(error.get("input"))
    value = value if len(value) <= 80 else value[:77] + "..."
    return f"bad setting {setting_name(field)} '{value}': {allowed_words(field, error)}"


def setting_name(field: str) -> str:
    """How one sets a field, `dataset (RETRAIN_DATASET or its command-line option)`, or the
    variable alone where pydantic reports the alias (MLFLOW_TRACKING_URI)."""
    info = Settings.model_fields.get(field)
    if info is None:
        return field
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        alias = alias.choices[0]
    variable = alias if isinstance(alias, str) else f"RETRAIN_{field.upper()}"
    return f"{field} ({variable} or its command-line option)"


def allowed_words(field: str, error: ErrorDetails) -> str:
    """What the setting allows, from pydantic's error type and context and the field."""
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "string_pattern_mismatch":
        return "use " + PATTERN_WORDS.get(field, f"text matching {ctx.get('pattern')}")
    if kind == "value_error" and "error" in ctx:
        return str(ctx["error"])
    parsed = kind.split("_")[0] if kind.endswith(("_parsing", "_type", "_from_float")) else ""
    if parsed in TYPE_WORDS or kind in BOUND_ERRORS:
        return "use " + expected_words(field, TYPE_WORDS.get(parsed))
    message = error["msg"]
    return message[:1].lower() + message[1:]


def expected_words(field: str, kind: str | None) -> str:
    """`a whole number from 1 to 65535`, `a number above 0`: the field's type and bounds."""
    info = Settings.model_fields.get(field)
    annotation = getattr(info.annotation, "__name__", "") if info else ""
    kind = kind or TYPE_WORDS.get(annotation, "a value")
    limits = {}
    for item in info.metadata if info else ():
        limits |= {k: getattr(item, k) for k in ("ge", "gt", "le", "lt") if hasattr(item, k)}
    if "ge" in limits and "le" in limits:
        return f"{kind} from {limits['ge']:g} to {limits['le']:g}"
    words = {"ge": "at least", "gt": "above", "le": "at most", "lt": "below"}
    parts = [f"{words[k]} {v:g}" for k, v in limits.items()]
    if not parts:
        return kind
    return f"{kind} {'of ' if parts[0].startswith('at') else ''}{' and '.join(parts)}"

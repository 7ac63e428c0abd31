"""The inference experiment `<experiment>-inference` in MLflow: `retrain predict` sends rows to
the served model and keeps the batch as one run (the seed tutorials' "predictions vs real
values" check, as a service); the nightly run adds one run per day of the prediction log."""

from __future__ import annotations

import tempfile
import time
import urllib.error
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd

from retrain.config.settings import Settings
from retrain.data.split import holdout_rows
from retrain.data.training_rows import read_training_rows
from retrain.errors import StageFailed
from retrain.io import prediction_log, store, tracking
from retrain.monitoring import usage
from retrain.serving import model_server


@dataclass(frozen=True)
class PredictionReport:
    rows: pd.DataFrame
    latency_ms: float
    accuracy: float | None
    run_id: str

    def lines(self) -> list[str]:
        out = self.rows.to_string(index=False).splitlines()
        score = "" if self.accuracy is None else f", accuracy {self.accuracy:.3f}"
        out.append(f"{len(self.rows)} rows in {self.latency_ms:.0f} ms{score}")
        return out


def load_rows(settings: Settings, source: Path | None, sample: int | None) -> pd.DataFrame:
    """The rows to send: a CSV file as it is, or the holdout rows of the cleaned table; all of
    them or a seeded sample."""
    if source is not None:
        frame = pd.read_csv(source, encoding=settings.encoding)
    else:
        engine, tables = store.open_dataset(settings)
        frame = read_training_rows(engine, tables, settings)[0]
        frame = frame[holdout_rows(frame, settings)]
    return pick_rows(frame, sample, settings.seed)


def pick_rows(frame: pd.DataFrame, sample: int | None, seed: int) -> pd.DataFrame:
    """All rows, or a seeded sample of them."""
    if sample is None or sample >= len(frame):
        return frame.reset_index(drop=True)
    return frame.sample(n=sample, random_state=seed).reset_index(drop=True)


def refusal(url: str, err: urllib.error.HTTPError) -> str:
    """One line for a refused request: what a 401 needs, else the model server's answer."""
    if err.code == 401:
        return (f"the model endpoint at {url} asks for a bearer token: set RETRAIN_SERVE_TOKEN "
                "to the token it was started with")  # fmt: skip
    detail = err.read().decode(errors="replace")[:300]
    return f"the model server at {url} answered {err.code}: {detail}"


def predict_served(
    settings: Settings, client: tracking.MlflowClient, rows: pd.DataFrame
) -> PredictionReport:
    """Predict `rows` through the served endpoint; log inputs, predictions and latency."""
    served = model_server.read_state(settings.home)
    if served is None:
        raise StageFailed("no model is being served; run `retrain serve start` or `retrain run`")
    schema = settings.load_schema()
    target = schema.target
    # the id and timestamp columns go along: the served model logs them with its answers,
    # so that labels arriving later are joined to what it answered
    sent = [*schema.features, *schema.roles.ids, *schema.roles.timestamps]
    features = rows[[c for c in dict.fromkeys(sent) if c in rows.columns]]
    started = time.perf_counter()
    try:
        predictions = model_server.invoke(served.public_url, features, token=settings.serve_token)
    except urllib.error.HTTPError as err:
        raise StageFailed(refusal(served.public_url, err)) from err
    except OSError as err:
        raise StageFailed(f"the model server at {served.public_url} did not answer: {err}") from err
    latency_ms = (time.perf_counter() - started) * 1000
    out = features.assign(prediction=predictions)
    accuracy = None
    if target in rows.columns:
        out[target] = rows[target].to_numpy()
        accuracy = float((out["prediction"].astype(str) == out[target].astype(str)).mean())
    run_id = log_inference(client, settings, served.version, out, latency_ms, accuracy)
    return PredictionReport(out, latency_ms, accuracy, run_id)


def log_inference(
    client: tracking.MlflowClient,
    settings: Settings,
    version: str,
    out: pd.DataFrame,
    latency_ms: float,
    accuracy: float | None,
) -> str:
    """One run per batch in `<experiment>-inference`, never one run per row."""
    experiment = inference_experiment(client, settings)
    run_id = tracking.start_parent_run(
        client, experiment, "predict", {"retrain.stage": "predict", "model_version": version}
    )
    metrics = {"rows": len(out), "latency_ms": latency_ms}
    if accuracy is not None:
        metrics["accuracy"] = accuracy
    tracking.log_parent_summary(client, run_id, {}, metrics)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "predictions.csv"
        out.to_csv(path, index=False)
        tracking.log_file(client, run_id, str(path))
    tracking.end_run(client, run_id)
    return run_id


def inference_experiment(client: tracking.MlflowClient, settings: Settings) -> str:
    return tracking.ensure_experiment(
        client, f"{settings.experiment}-inference", settings.artifact_root
    )


@dataclass(frozen=True)
class ServedDay:
    """What the nightly run made of one day of the prediction log."""

    day: date
    summary: usage.DaySummary | None
    run_id: str | None
    pruned: int

    def describe(self) -> str:
        kept = f"; pruned {self.pruned} rows past retention" if self.pruned else ""
        if self.summary is None:
            return f"no predictions logged on {self.day.isoformat()}{kept}"
        s = self.summary
        return (
            f"{self.day.isoformat()}: {s.requests} requests, {s.rows} rows, latency p50 "
            f"{s.latency_p50_ms:.1f} ms, p95 {s.latency_p95_ms:.1f} ms (MLflow run "
            f"{self.run_id}){kept}"
        )


def report_served_day(
    engine: store.Engine, client: tracking.MlflowClient, settings: Settings, day: date
) -> ServedDay:
    """Log `day` of the prediction log as one run of the inference experiment (once: a second
    call finds the day's run), then drop rows past RETRAIN_PREDICTION_RETENTION_DAYS."""
    since = datetime(day.year, day.month, day.day)
    window = prediction_log.read_window(engine, settings.dataset, since, since + timedelta(days=1))
    rows = list(window)
    summaries = usage.daily_summaries(pd.DataFrame(rows, columns=usage.LOG_COLUMNS))
    summary, run_id = (summaries[0] if summaries else None), None
    if summary:
        run_id = log_served_day(client, settings, summary)
    pruned = prediction_log.prune_older_than(
        engine, settings.dataset, settings.prediction_retention_days
    )
    return ServedDay(day, summary, run_id, pruned)


def log_served_day(
    client: tracking.MlflowClient, settings: Settings, summary: usage.DaySummary
) -> str:
    """The day's run, `served-<day>`: found by its tag if it exists, else created."""
    experiment, day = inference_experiment(client, settings), summary.day.isoformat()
    found = tracking.find_run(client, experiment, f"tags.`retrain.inference_day` = '{day}'")
    if found:
        return found
    tags = {"retrain.stage": "served-day", "retrain.inference_day": day}
    run_id = tracking.start_parent_run(client, experiment, f"served-{day}", tags)
    tracking.log_parent_summary(client, run_id, {}, summary.metrics())
    tracking.end_run(client, run_id)
    return run_id


def log_rollout_report(
    client: tracking.MlflowClient,
    settings: Settings,
    plan_tags: dict[str, str],
    metrics: dict[str, float],
    table: str,
) -> str:
    """A rollout's per-version report as one run of the inference experiment: each version's
    figures as metrics (`<role>_<figure>`), the table as `rollout.md`."""
    experiment = inference_experiment(client, settings)
    name = f"rollout-{plan_tags['retrain.rollout_version']}"
    run_id = tracking.start_parent_run(
        client, experiment, name, {"retrain.stage": "rollout", **plan_tags}
    )
    tracking.log_parent_summary(client, run_id, {}, metrics)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rollout.md"
        path.write_text(table)
        tracking.log_file(client, run_id, str(path))
    tracking.end_run(client, run_id)
    return run_id

"""What the served model records about itself, inside the `mlflow models serve` process: the
prediction log and the Prometheus metrics (prometheus-client, its own HTTP port).

`retrain.server.start` hands the served process one environment variable, `RETRAIN_SERVING`
(JSON: dataset, model, version, the store URL when the log is on, the metrics port); the pyfunc
wrapper builds `Instruments` from it when MLflow loads the model. Loaded anywhere else (a
deploy's in-process check, `retrain predict`), the variable is absent and nothing is recorded.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, Info, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from retrain.data.features import category_text, row_keys
from retrain.io.prediction_log import PredictionLog, Record, utc_now

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

ENV = "RETRAIN_SERVING"
log = logging.getLogger(__name__)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


@dataclass(frozen=True)
class ServingContext:
    """What the served process needs to know about itself."""

    dataset: str
    model: str
    version: str
    log_url: str | None = None
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None
    log_capacity: int = 10_000
    ids: tuple[str, ...] = ()  # the schema's id columns: a request may send them along
    role: str = "champion"  # champion, or canary, shadow, ab while a rollout runs

    def to_environment(self) -> dict[str, str]:
        return {ENV: json.dumps(asdict(self))}


def context_from_environment() -> ServingContext | None:
    """The context `retrain.server.start` gave this process, or None outside a served model."""
    text = os.environ.get(ENV)
    if not text:
        return None
    fields = json.loads(text)
    return ServingContext(**fields | {"ids": tuple(fields.get("ids") or ())})


class LogCounters(Collector):
    """The prediction log's written and dropped rows, and its backlog, read at scrape time."""

    def __init__(self, prediction_log: PredictionLog) -> None:
        self.prediction_log = prediction_log

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        for name, value, what in (
            ("written", self.prediction_log.written, "rows written to the prediction log"),
            ("dropped", self.prediction_log.dropped, "rows dropped from the log (queue full)"),
        ):
            yield CounterMetricFamily(f"retrain_prediction_log_{name}", what, value=value)
        yield GaugeMetricFamily(
            "retrain_prediction_log_queued_requests",
            "answered requests waiting to be written (past RETRAIN_PREDICTION_BUFFER, dropped)",
            value=self.prediction_log.records.qsize(),
        )
        yield GaugeMetricFamily(
            "retrain_prediction_log_store_up",
            "1 while the log's store takes writes, 0 while its writer retries a refused batch",
            value=int(self.prediction_log.store_up),
        )


class Instruments:
    """Counters, a latency histogram, the version as an info metric, and the prediction log."""

    def __init__(self, context: ServingContext) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "retrain_model_requests", "predict calls by outcome", ["status"],
            registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "retrain_model_latency_seconds", "seconds the model took per predict call",
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.predictions = Counter(
            "retrain_model_predictions", "rows answered, by predicted class", ["label"],
            registry=self.registry,
        )  # fmt: skip
        info = Info("retrain_model", "the served model", registry=self.registry)
        info.info({"model": context.model, "version": context.version,
                   "dataset": context.dataset, "role": context.role})  # fmt: skip
        self.ids = context.ids
        self.prediction_log = (
            PredictionLog(
                context.log_url,
                context.dataset,
                context.version,
                context.log_capacity,
                role=context.role,
            )
            if context.log_url
            else None
        )
        if self.prediction_log:
            self.registry.register(LogCounters(self.prediction_log))
        if context.metrics_port:
            start_http_server(context.metrics_port, context.metrics_host, registry=self.registry)

    def observe(
        self, frame: pd.DataFrame, proba: np.ndarray, classes: np.ndarray, seconds: float
    ) -> None:
        """Record one answered call; cheap (counters and one queue append): the answered
        labels and probabilities, and each row's id key when the request sent the ids."""
        self.requests.labels("ok").inc()
        self.latency.observe(seconds)
        labels = classes[proba.argmax(axis=1)]
        values = [label.item() if hasattr(label, "item") else label for label in labels]
        for label, count in collections.Counter(values).items():
            self.predictions.labels(str(label)).inc(count)
        if self.prediction_log:
            by_class = {category_text(c): proba[:, i] for i, c in enumerate(classes)}
            record = Record(
                str(uuid.uuid4()), utc_now(), frame, values, seconds * 1000,
                row_keys(frame, self.ids), by_class,
            )  # fmt: skip
            self.prediction_log.add(record)

    def failed(self) -> None:
        self.requests.labels("error").inc()


def instruments_from_environment() -> Instruments | None:
    """Instruments for a served process, None elsewhere; a failure to start them is logged and
    serving goes on without them (a model that answers beats one that records)."""
    context = context_from_environment()
    if context is None:
        return None
    try:
        return Instruments(context)
    except Exception:  # any failure here must not stop the model from serving
        log.exception("retrain: serving without metrics and prediction log")
        return None

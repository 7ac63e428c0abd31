"""Serving speed: latency and throughput of the served champion, and what a client sees
during a verified swap against a plain stop-then-start, in one run.

    ./dev python -m bench.serve [--requests 300] [--batches 50]

Everything runs in a temp RETRAIN_HOME on the embedded stores: bundled iris is loaded and
cleaned, a weak model becomes champion and is served, then a stronger one is promoted and
deployed while a client thread sends one-row requests to the main port. Prints p50/p95
single-row latency, rows/s for 100-row batches, the swap's main-port downtime beside a plain
`mlflow models serve` stop-then-start of the same version, and the client's wrong answers
(target 0) and failed requests (target: only inside the downtime window).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import threading
import time
import warnings
from pathlib import Path

import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from retrain import deploy, ingest, promote, server, store, tracking
from retrain.bundled import write_bundled_iris
from retrain.clean import clean_batch
from retrain.dataset import dataset_of
from retrain.deploy import restart
from retrain.features import prepare_features
from retrain.modeling import fit_model, pipeline_of
from retrain.promotion import PromotionRules
from retrain.settings import Settings, load_settings
from retrain.tune import log_and_register


def prepare(home: Path) -> tuple[Settings, object, tracking.MlflowClient]:
    os.environ["RETRAIN_HOME"] = str(home)
    os.environ["RETRAIN_SERVE_PORT"] = str(server.free_port())
    settings = load_settings()
    engine, tables = store.open_dataset(settings)
    report = ingest.load_file(engine, tables, write_bundled_iris(home / "src"), "utf-8")
    clean_batch(engine, tables, settings.load_schema(), report.batch_id, 0.2)
    return settings, (engine, tables), tracking.make_client(settings.tracking_uri)


def register(settings: Settings, stores, client, model) -> pd.DataFrame:
    """Fit `model` behind the standard preprocessing; log and register it as the challenger."""
    engine, tables = stores
    with engine.connect() as conn:
        data = dataset_of(store.read_cleaned(conn, tables), settings.load_schema())
    x = prepare_features(data.train, data.kinds)
    pipeline = fit_model(pipeline_of(model, data.kinds), x, data.labels(data.train), data.kinds)
    experiment = tracking.ensure_experiment(client, settings.experiment, settings.artifact_root)
    run = tracking.start_parent_run(client, experiment, "bench", {})
    log_and_register(settings, client, run, pipeline, data, {})
    return data.holdout[data.features]


def promote_and_deploy(settings: Settings, stores, client):
    engine, tables = stores
    report = promote.promote_if_better(engine, tables, client, settings, PromotionRules())
    return deploy.deploy_champion(engine, client, settings, report)


def latency(url: str, rows: pd.DataFrame, requests: int) -> tuple[float, float]:
    times = []
    for i in range(requests):
        started = time.perf_counter()
        server.invoke(url, rows.iloc[[i % len(rows)]])
        times.append((time.perf_counter() - started) * 1000)
    cuts = statistics.quantiles(times, n=20)
    return statistics.median(times), cuts[18]


def throughput(url: str, rows: pd.DataFrame, batches: int) -> float:
    batch = pd.concat([rows] * (100 // len(rows) + 1)).head(100)
    started = time.perf_counter()
    for _ in range(batches):
        server.invoke(url, batch)
    return 100 * batches / (time.perf_counter() - started)


def swap_under_load(settings: Settings, stores, client, rows: pd.DataFrame):
    """Deploy the promoted challenger while a client sends one-row requests."""
    frame, log, stop = rows.iloc[[0]], [], threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            try:
                log.append((time.monotonic(), tuple(server.invoke(settings.serve_url, frame, 2))))
            except OSError:
                log.append((time.monotonic(), None))
                time.sleep(0.02)

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        deployed = promote_and_deploy(settings, stores, client)
    finally:
        stop.set()
        thread.join()
    return deployed, log, frame


def plain_restart(settings: Settings) -> float:
    """Stop the served version and start it again on the same port: seconds until /ping."""
    old = server.read_state(settings.home)
    started = time.monotonic()
    server.stop(old)
    restart(settings, old, settings.health_timeout)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--batches", type=int, default=50)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        settings, stores, client = prepare(Path(tmp))
        try:
            run(settings, stores, client, args)
        finally:
            left = server.read_state(settings.home)
            if left:
                server.stop(left)


def run(settings: Settings, stores, client, args: argparse.Namespace) -> None:
    rows = register(settings, stores, client, LogisticRegression(C=0.01, max_iter=200))
    promote_and_deploy(settings, stores, client)
    register(settings, stores, client, RandomForestClassifier(200, random_state=0))
    deployed, log, frame = swap_under_load(settings, stores, client, rows)
    allowed = {
        tuple(
            tracking.load_version(settings.tracking_uri, settings.model_name, v).predict_labels(
                frame
            )
        )
        for v in (deployed.previous_version, deployed.version)
    }
    answered = [a for _, a in log if a is not None]
    failed = [t for t, a in log if a is None]
    outside = [t for t in failed if not deployed.down_from <= t <= deployed.down_until + 0.5]
    p50, p95 = latency(settings.serve_url, rows, args.requests)
    rate = throughput(settings.serve_url, rows, args.batches)
    plain = plain_restart(settings)
    print(f"single-row latency ({args.requests} requests): p50 {p50:.1f} ms, p95 {p95:.1f} ms")
    print(f"100-row batches ({args.batches}): {rate:,.0f} rows/s")
    print(
        f"main-port downtime: verified swap {deployed.downtime_seconds:.1f} s, plain "
        f"stop-then-start {plain:.1f} s (ratio {deployed.downtime_seconds / plain:.2f})"
    )
    print(
        f"client during the swap: {len(log)} requests, {len(answered)} answered, "
        f"{sum(a not in allowed for a in answered)} wrong (target 0), {len(failed)} failed, "
        f"{len(outside)} of them outside the downtime window (target 0)"
    )


if __name__ == "__main__":
    main()

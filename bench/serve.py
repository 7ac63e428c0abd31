"""Serving speed and swaps: what clients see during a swap behind HAProxy and without it, and
what the proxy and the prediction log cost per request, in one run.

    ./dev python -m bench.serve [--requests 300] [--batches 50] [--clients 4]

Everything runs in a temp RETRAIN_HOME on the embedded stores: bundled iris is loaded and
cleaned, a weak model becomes champion and is served behind HAProxy (RETRAIN_PROXY=auto), then
a stronger one is promoted and deployed while `--clients` threads send one-row requests to the
main port. Then, on the same version:

- single-row p50/p95 latency and 100-row rows/s through the proxy with the prediction log on,
  against a plain `mlflow models serve` of the same version (no proxy, no log, no metrics):
  the ratio's target is at most 1.15;
- the same swap with RETRAIN_PROXY=off (a rollback to the weak version): the main port goes
  down while the model server restarts, and requests fail inside that window.

Prints each swap's failed requests (target 0 behind the proxy) and wrong answers (target 0).
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

from retrain.config.settings import Settings, load_settings
from retrain.data import ingest
from retrain.data.clean import clean_batch
from retrain.data.features import prepare_features
from retrain.data.split import dataset_of
from retrain.io import store, tracking
from retrain.io.bundled_iris import write_bundled_iris
from retrain.model import logged_model
from retrain.promotion import promote
from retrain.promotion.rules import PromotionRules
from retrain.serving import deploy, haproxy, model_server
from retrain.training.families import fit_model, pipeline_of
from retrain.training.tuning import log_and_register
from tests.support.services import stop_model_server


def prepare(home: Path) -> tuple[Settings, object, tracking.MlflowClient]:
    os.environ["RETRAIN_HOME"] = str(home)
    os.environ["RETRAIN_SERVE_PORT"] = str(model_server.free_port())
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
        model_server.invoke(url, rows.iloc[[i % len(rows)]])
        times.append((time.perf_counter() - started) * 1000)
    cuts = statistics.quantiles(times, n=20)
    return statistics.median(times), cuts[18]


def throughput(url: str, rows: pd.DataFrame, batches: int) -> float:
    batch = pd.concat([rows] * (100 // len(rows) + 1)).head(100)
    started = time.perf_counter()
    for _ in range(batches):
        model_server.invoke(url, batch)
    return 100 * batches / (time.perf_counter() - started)


def swap_under_load(settings: Settings, clients: int, swap) -> tuple[object, list, tuple]:
    """Run `swap()` while `clients` threads send one-row requests to the main port; returns
    its report, the log of (time, answer or None) and the row sent."""
    frame, log, stop = IRIS_ROW, [], threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            try:
                log.append(
                    (time.monotonic(), tuple(model_server.invoke(settings.serve_url, frame, 5)))
                )
            except OSError:
                log.append((time.monotonic(), None))
                time.sleep(0.02)

    threads = [threading.Thread(target=hammer) for _ in range(clients)]
    for thread in threads:
        thread.start()
    try:
        report = swap()
        time.sleep(1)  # requests after the switch, to the new version
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    return report, log, frame


IRIS_ROW = pd.DataFrame(
    [[6.3, 3.3, 6.0, 2.5]],
    columns=["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"],
)


def describe_swap(name: str, settings: Settings, deployed, log: list, frame) -> str:
    allowed = {
        tuple(
            logged_model.load_version(settings.tracking_uri, settings.model_name, v).predict_labels(
                frame
            )
        )
        for v in (deployed.previous_version, deployed.version)
    }
    answered = [a for _, a in log if a is not None]
    failed = sum(a is None for _, a in log)
    return (
        f"{name}: {len(log)} requests, {failed} failed, {sum(a not in allowed for a in answered)} "
        f"wrong; main port down {deployed.downtime_seconds:.1f} s"
    )


def plain_server(settings: Settings, version: str) -> model_server.Served:
    """The same version under a bare `mlflow models serve`: the baseline of a user without
    retrain (no proxy, no metrics, no prediction log)."""
    uri = tracking.model_uri(settings.model_name, version)
    plain = model_server.start(
        settings.home, settings.tracking_uri, uri, version, "127.0.0.1", model_server.free_port()
    )
    model_server.wait_healthy(settings.home, plain, settings.health_timeout)
    return plain


def quiet_behind_haproxy(bench: str) -> None:
    """Silence MLflow's warnings for the bench's output; refuse to run without HAProxy."""
    warnings.filterwarnings("ignore")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    if haproxy.binary() is None:
        raise SystemExit(f"{bench} serves behind HAProxy: apt-get install haproxy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    quiet_behind_haproxy("bench.serve")
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        settings, stores, client = prepare(Path(tmp))
        try:
            run(settings, stores, client, args)
        finally:
            stop_model_server(settings.home)


def run(settings: Settings, stores, client, args: argparse.Namespace) -> None:
    rows = register(settings, stores, client, LogisticRegression(C=0.01, max_iter=200))
    promote_and_deploy(settings, stores, client)
    register(settings, stores, client, RandomForestClassifier(200, random_state=0))
    proxied = swap_under_load(
        settings, args.clients, lambda: promote_and_deploy(settings, stores, client)
    )
    served = model_server.read_state(settings.home)
    p50, p95 = latency(settings.serve_url, rows, args.requests)
    rate = throughput(settings.serve_url, rows, args.batches)
    plain = plain_server(settings, served.version)
    try:
        plain_p50, plain_p95 = latency(plain.url, rows, args.requests)
        plain_rate = throughput(plain.url, rows, args.batches)
    finally:
        model_server.stop(plain)
    stop_model_server(settings.home)
    os.environ["RETRAIN_PROXY"] = "off"
    direct_settings = load_settings()
    engine, _ = stores
    deploy.serve_start(direct_settings, served.version, direct_settings.health_timeout)
    direct = swap_under_load(
        direct_settings, args.clients,
        lambda: deploy.rollback_champion(engine, client, direct_settings)[1],
    )  # fmt: skip
    print(f"single-row latency ({args.requests} requests, ms):")
    print(f"  behind HAProxy, prediction log on: p50 {p50:.2f}, p95 {p95:.2f}")
    print(f"  plain mlflow models serve:         p50 {plain_p50:.2f}, p95 {plain_p95:.2f}")
    print(f"  p50 ratio {p50 / plain_p50:.2f} (target <= 1.15), p95 ratio {p95 / plain_p95:.2f}")
    print(
        f"100-row batches ({args.batches}): {rate:,.0f} rows/s behind HAProxy, "
        f"{plain_rate:,.0f} rows/s plain (ratio {rate / plain_rate:.2f})"
    )
    print(f"swaps under load ({args.clients} clients):")
    print("  " + describe_swap("behind HAProxy", settings, *proxied))
    print("  " + describe_swap("RETRAIN_PROXY=off", direct_settings, *direct))


if __name__ == "__main__":
    main()

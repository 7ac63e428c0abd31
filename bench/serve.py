"""Serving speed and swaps: what clients see during a swap behind HAProxy and without it,
during a canary bake beside a direct swap, and what the proxy and the prediction log cost per
request, in one run.

    ./dev python -m bench.serve [--requests 300] [--batches 50] [--clients 4]
        [--bake-seconds 30] [--canary-percent 10]

Everything runs in a temp RETRAIN_HOME on the embedded stores: bundled iris is loaded and
cleaned, a weak model becomes champion and is served behind HAProxy (RETRAIN_PROXY=auto), then
a stronger one is promoted and deployed while `--clients` threads send one-row requests to the
main port. Then, on the same version:

- single-row p50/p95 latency and 100-row rows/s through the proxy with the prediction log on,
  against a plain `mlflow models serve` of the same version (no proxy, no log, no metrics):
  the ratio's target is at most 1.15;
- a canary behind HAProxy: a refit of the same forest (a third version, the same answers, so
  its guards hold) gets `--canary-percent` of the requests beside the champion for
  `--bake-seconds` (guards read every 2 s, judged from 20 canary requests), then the bake
  promotes it, which serves it with the same verified swap, while the same clients send
  requests;
- the same swap with RETRAIN_PROXY=off (a rollback to the version the canary replaced): the
  main port goes down while the model server restarts, and requests fail inside that window.

Prints each bake check, each swap's failed requests (target 0 behind the proxy) and wrong
answers (target 0), and a table of the client's view of the two ways a version reaches traffic
behind HAProxy: requests, failed requests, and p50/p99 latency of the answered ones, for the
requests sent inside each measured window (the direct swap: the deploy call's start to its end,
the promotion decision before it left out; the canary: the split's start to the bake's end,
its final swap included), and the canary / direct ratio of p50 and p99.
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
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

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
from retrain.serving import bake, deploy, haproxy, model_server, rollout
from retrain.serving.bake import BakeEnd
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


class Window:
    """The monotonic start and end of the call whose requests are measured."""

    start = end = 0.0

    def measure(self, call: Callable[[], object]) -> object:
        self.start = time.monotonic()
        try:
            return call()
        finally:
            self.end = time.monotonic()


def promote_and_deploy(settings: Settings, stores, client, window: Window | None = None):
    engine, tables = stores
    report = promote.promote_if_better(engine, tables, client, settings, PromotionRules())
    return (window or Window()).measure(
        lambda: deploy.deploy_champion(engine, client, settings, report)
    )


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


class Swapped(NamedTuple):
    """A swap under load: its report, the clients' log of (sent, done, answer or None) in
    time.monotonic(), the row sent, and the measured window of the swap."""

    report: object
    log: list
    frame: pd.DataFrame
    window: Window


def swap_under_load(settings: Settings, clients: int, swap: Callable[[Window], object]) -> Swapped:
    """Run `swap(window)` while `clients` threads send one-row requests to the main port; the
    swap marks the part whose requests count with `window.measure`."""
    frame, log, stop, window = IRIS_ROW, [], threading.Event(), Window()

    def hammer() -> None:
        while not stop.is_set():
            sent = time.monotonic()
            try:
                answer = tuple(model_server.invoke(settings.serve_url, frame, 5))
            except OSError:
                answer = None
            log.append((sent, time.monotonic(), answer))
            if answer is None:
                time.sleep(0.02)

    threads = [threading.Thread(target=hammer) for _ in range(clients)]
    for thread in threads:
        thread.start()
    try:
        report = swap(window)
        time.sleep(1)  # requests after the switch, to the new version
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    return Swapped(report, log, frame, window)


IRIS_ROW = pd.DataFrame(
    [[6.3, 3.3, 6.0, 2.5]],
    columns=["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"],
)


def describe_swap(
    name: str, settings: Settings, swapped: Swapped, versions: tuple | None = None
) -> str:
    """Requests, failures and wrong answers (neither of `versions`, by default the deploy's
    previous and new one) over the whole run of the swap, and the main port's downtime."""
    deployed, log, frame = swapped.report, swapped.log, swapped.frame
    allowed = {
        tuple(
            logged_model.load_version(settings.tracking_uri, settings.model_name, v).predict_labels(
                frame
            )
        )
        for v in versions or (deployed.previous_version, deployed.version)
    }
    answered = [a for _, _, a in log if a is not None]
    failed = sum(a is None for _, _, a in log)
    down = f"; main port down {deployed.downtime_seconds:.1f} s" if deployed else ""
    return (
        f"{name}: {len(log)} requests, {failed} failed, {sum(a not in allowed for a in answered)} "
        f"wrong{down}"
    )


class ClientView(NamedTuple):
    """What the clients saw of the requests they sent inside a swap's window."""

    requests: int
    failed: int
    p50_ms: float | None
    p99_ms: float | None


def client_view(swapped: Swapped) -> ClientView:
    start, end = swapped.window.start, swapped.window.end
    inside = [(done - sent, a) for sent, done, a in swapped.log if start <= sent <= end]
    times = sorted(seconds * 1000 for seconds, a in inside if a is not None)
    if len(times) < 2:
        return ClientView(len(inside), len(inside) - len(times), None, None)
    p99 = statistics.quantiles(times, n=100, method="inclusive")[98]
    return ClientView(len(inside), len(inside) - len(times), statistics.median(times), p99)


def canary_bake(
    settings: Settings, stores, client, version: str, percent: float, seconds: float
) -> Callable[[Window], BakeEnd]:
    """The swap of a canary: `version` beside the champion with `percent` of the requests
    for `seconds`, the bake printing each check, then its verdict (a promotion deploys it)."""
    engine, _ = stores

    def split_and_bake() -> BakeEnd:
        rollout.start_split(settings, version, "canary", percent, seconds / 60)
        return bake.bake(engine, client, settings, lambda r: print(f"  bake: {r.line()}"))

    return lambda window: window.measure(split_and_bake)


def table(direct: ClientView, canary: ClientView, percent: float, seconds: float) -> list[str]:
    def ms(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1f}"

    def ratio(a: float | None, b: float | None) -> str:
        return "n/a" if a is None or not b else f"{a / b:.2f}"

    rows = [("direct swap", direct), (f"canary {percent:g}%, {seconds:g} s bake", canary)]
    lines = [f"  {'phase':<26} {'requests':>8} {'failed':>6} {'p50 ms':>7} {'p99 ms':>7}"]
    lines += [f"  {name:<26} {v.requests:>8,} {v.failed:>6,} {ms(v.p50_ms):>7} {ms(v.p99_ms):>7}"
              for name, v in rows]  # fmt: skip
    lines.append(f"  canary / direct: p50 {ratio(canary.p50_ms, direct.p50_ms)}, "
                 f"p99 {ratio(canary.p99_ms, direct.p99_ms)}")  # fmt: skip
    return lines


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
    parser.add_argument("--bake-seconds", type=float, default=30)
    parser.add_argument("--canary-percent", type=float, default=10)
    args = parser.parse_args()
    quiet_behind_haproxy("bench.serve")
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        settings, stores, client = prepare(Path(tmp))
        try:
            run(settings, stores, client, args)
        finally:
            model_server.stop_recorded(settings.home, model_server.CANDIDATE)
            stop_model_server(settings.home)


def run(settings: Settings, stores, client, args: argparse.Namespace) -> None:
    rows = register(settings, stores, client, LogisticRegression(C=0.01, max_iter=200))
    promote_and_deploy(settings, stores, client)
    register(settings, stores, client, RandomForestClassifier(200, random_state=0))
    proxied = swap_under_load(
        settings, args.clients, lambda window: promote_and_deploy(settings, stores, client, window)
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
    os.environ["RETRAIN_BAKE_CHECK_SECONDS"] = "2"
    os.environ["RETRAIN_GUARD_MIN_REQUESTS"] = "20"
    canary_settings = load_settings()
    register(settings, stores, client, RandomForestClassifier(200, random_state=0))
    version = tracking.alias_version(client, settings.model_name, "challenger")
    print(f"canary of version {version} ({args.canary_percent:g}% of requests, "
          f"{args.bake_seconds:g} s bake) beside version {served.version}:")  # fmt: skip
    canary = swap_under_load(
        canary_settings, args.clients,
        canary_bake(canary_settings, stores, client, version, args.canary_percent,
                    args.bake_seconds),
    )  # fmt: skip
    end: BakeEnd = canary.report
    print(f"  {end.describe()}")
    stop_model_server(settings.home)
    os.environ["RETRAIN_PROXY"] = "off"
    direct_settings = load_settings()
    engine, _ = stores
    now_served = tracking.alias_version(client, settings.model_name, "champion")
    deploy.serve_start(direct_settings, now_served, direct_settings.health_timeout)
    direct = swap_under_load(
        direct_settings, args.clients,
        lambda window: window.measure(
            lambda: deploy.rollback_champion(engine, client, direct_settings)[1]
        ),
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
    print("  " + describe_swap("behind HAProxy", settings, proxied))
    baked = canary._replace(report=end.deployed)
    outcome = f"canary bake behind HAProxy ({end.outcome})"
    print("  " + describe_swap(outcome, settings, baked, (served.version, version)))
    print("  " + describe_swap("RETRAIN_PROXY=off", direct_settings, direct))
    print(f"canary bake against direct swap behind HAProxy ({args.clients} clients; requests "
          "sent inside each window, p50/p99 of the answered ones; direct swap: the deploy call, "
          "canary: split start to bake end, its final swap included):")  # fmt: skip
    for line in table(client_view(proxied), client_view(canary), args.canary_percent,
                      args.bake_seconds):  # fmt: skip
        print(line)


if __name__ == "__main__":
    main()

"""What Prefect adds: the whole nightly flow under Prefect against a local server this bench
starts, and the same stages as plain function calls, in one run.

    ./dev python -m bench.overhead [--trials 20]

Each side gets its own temp RETRAIN_HOME (embedded stores) and serving port, and runs ingest,
clean, tune, promote and deploy of the bundled iris data. Prints both wall times and the
ratio (target: Prefect adds under 15%), then the cost of Prefect's ephemeral mode: a
two-task flow in a fresh process with no server, against the same flow on the running server.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from retrain.config.settings import load_settings
from retrain.data import clean, ingest
from retrain.io import store, tracking
from retrain.io.bundled_iris import write_bundled_iris
from retrain.promotion import promote
from retrain.promotion.rules import PromotionRules
from retrain.serving import deploy, model_server
from retrain.training.tuning import TuneConfig, tune_and_register
from tests.support.services import prefect_server, stop_model_server

TINY_FLOW = (
    "from prefect import flow, task\n"
    "@task\ndef one(): return 1\n"
    "@flow\ndef tiny(): return one() + one()\n"
    "tiny()\n"
)


def use_home(home: Path) -> None:
    os.environ["RETRAIN_HOME"] = str(home)
    os.environ["RETRAIN_SERVE_PORT"] = str(model_server.free_port())


def plain_stages(trials: int) -> float:
    """The five stages as plain calls into the core."""
    started = time.perf_counter()
    settings = load_settings(trials=trials)
    engine, tables = store.open_dataset(settings)
    report = ingest.load_file(engine, tables, write_bundled_iris(settings.home / "src"), "utf-8")
    clean.clean_batch(engine, tables, settings.load_schema(), report.batch_id, 0.2)
    client = tracking.make_client(settings.tracking_uri)
    config = TuneConfig(trials=trials, seed=settings.seed)
    tuned = tune_and_register(engine, tables, client, settings, config)
    rules = PromotionRules()
    decision = promote.promote_if_better(
        engine, tables, client, settings, rules, None, tuned.version
    )
    deploy.deploy_champion(engine, client, settings, decision)
    return time.perf_counter() - started


def prefect_flow(trials: int) -> float:
    from flows.retrain import retrain

    started = time.perf_counter()
    summary = retrain(trials=trials)
    seconds = time.perf_counter() - started
    print("\n".join(summary.lines()))
    return seconds


def tiny_flow_seconds(env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", TINY_FLOW], env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        work = Path(tmp)
        with prefect_server(work) as api:
            os.environ["PREFECT_API_URL"] = api
            os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
            timings = {}
            for name, side in (("plain", plain_stages), ("prefect", prefect_flow)):
                use_home(work / name)
                try:
                    timings[name] = side(args.trials)
                finally:
                    stop_model_server(load_settings().home)
            on_server = tiny_flow_seconds(dict(os.environ))
            ephemeral_env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
            ephemeral_env["PREFECT_HOME"] = str(work / "ephemeral-home")
            ephemeral = tiny_flow_seconds(ephemeral_env)
    plain, flow = timings["plain"], timings["prefect"]
    print(f"nightly flow, iris, {args.trials} trials, all five stages incl. a verified deploy")
    print(f"plain function calls : {plain:6.1f} s")
    print(f"Prefect, local server: {flow:6.1f} s  ({(flow / plain - 1) * 100:+.1f}%, target < 15%)")
    print(
        f"two-task flow in a fresh process: {on_server:.1f} s on the running server, "
        f"{ephemeral:.1f} s in ephemeral mode (no server)"
    )


if __name__ == "__main__":
    main()

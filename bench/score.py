"""Batch scoring speed: `retrain score` (Spark, local[*]) against the pandas pyfunc in one
process, on the same file, model and table writer, in one run.

    ./dev --group spark python -m bench.score [--rows 100000 1000000] [--rounds 1]

The model is what a night would register on a churn table (bench.datasets.customers): the
default LightGBM behind retrain's preprocessing, fitted on 20,000 rows, logged as the pyfunc
champion in a temp SQLite tracking store. Each size is a generated CSV of that table. Both
sides read the CSV, compute label and class probabilities for every row and write them to a
fresh `<dataset>_scores` table in the embedded SQLite store through the same writer:

- `retrain score`: `retrain.scoring.batch_score.score_source` (the batch-score flow's work
  without Prefect): the champion downloaded, a Spark session started, the file read and
  typed by Spark, every row scored through `mlflow.pyfunc.spark_udf`, the result staged as
  Parquet and written.
- pandas pyfunc: `pd.read_csv`, `mlflow.pyfunc.load_model(...).predict(frame,
  params={"probabilities": True})` in this process, then the same table write.

Prints seconds and rows/s of each side (median of the rounds), the ratio (> 1: Spark is
faster), and how many lines got the same label from both sides (it stops if one differs).
The machine's cores bound Spark's local[*]; a cluster adds executors, not this.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd
from sqlalchemy import text

from bench.datasets import customers
from retrain.config.settings import Settings, load_settings
from retrain.data.features import prepare_features
from retrain.io import tracking
from retrain.io.engines import make_engine
from retrain.model import logged_model
from retrain.scoring.batch_score import file_digest, score_source, write_scores
from retrain.training.families import build_model, example_rows, fit_model

KINDS = {
    "plan": "categorical", "region": "categorical", "tenure_months": "integer",
    "monthly_spend": "numeric", "support_tickets": "integer",
}  # fmt: skip
NULLABLE = {"plan", "region", "monthly_spend", "support_tickets"}


def register_champion(settings: Settings) -> str:
    """Fit the default LightGBM on 20,000 rows; log it as the pyfunc model, make it champion."""
    frame, request = customers(20_000)
    model = build_model("lightgbm", {}, KINDS, 42)
    model = fit_model(model, prepare_features(frame, KINDS), frame[request.target], KINDS)
    model[-1].set_params(n_jobs=1)  # as tuning leaves it for serving
    client = tracking.make_client(settings.tracking_uri)
    experiment = tracking.ensure_experiment(client, settings.experiment, settings.artifact_root)
    run = tracking.start_parent_run(client, experiment, "bench", {"retrain.stage": "tune"})
    example = example_rows(frame.head(5), KINDS)
    logged = logged_model.log_model(settings.tracking_uri, run, model, example, KINDS, NULLABLE)
    version = tracking.register_version(client, settings.model_name, logged, {})
    client.set_registered_model_alias(settings.model_name, "champion", version)
    return version


def score_with_pandas(settings: Settings, version: str, path: Path, table: str) -> int:
    """The baseline: one process, the pyfunc on the whole frame, the same writer."""
    import mlflow.pyfunc

    with tempfile.TemporaryDirectory() as tmp:
        local = tracking.download_version(settings.tracking_uri, settings.model_name, version, tmp)
        model = mlflow.pyfunc.load_model(local)
        frame = pd.read_csv(path)  # as pandas reads it: the model takes int64 columns too
        answer = model.predict(frame, params={"probabilities": True})
    digest = file_digest(path)
    answer.insert(0, "line_no", range(2, len(answer) + 2))
    answer.insert(0, "source_digest", digest)
    probas = list(answer.columns[3:])
    return write_scores(settings, table, probas, version, [digest], [answer])


def timed(score, *args: object) -> tuple[float, int]:
    started = time.perf_counter()
    rows = score(*args)
    return time.perf_counter() - started, rows


def spark_rows(settings: Settings, client: object, path: Path, table: str) -> int:
    return score_source(settings, client, path, table).rows


def agreeing_labels(settings: Settings, spark_table: str, plain_table: str) -> int:
    """Rows whose label is the same in both tables, matched by line (each side's answer is
    checked against the other's, not just counted)."""
    engine = make_engine(settings.database_url)
    query = "SELECT line_no, label FROM {} ORDER BY line_no"
    with engine.connect() as conn:
        spark, plain = (
            pd.read_sql(text(query.format(name)), conn).set_index("line_no")["label"]
            for name in (spark_table, plain_table)
        )
    if not spark.index.equals(plain.index):
        raise SystemExit(f"the two sides scored different lines: {len(spark)} vs {len(plain)}")
    return int((spark == plain).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory(prefix="bench-score-") as tmp:
        work = Path(tmp)
        os.environ.update({"RETRAIN_HOME": str(work / "home"), "RETRAIN_DATASET": "churn"})
        settings = load_settings()
        version = register_champion(settings)
        client = tracking.make_client(settings.tracking_uri)
        print(
            f"{'rows':>9} | {'retrain score (Spark)':>22} | {'pandas pyfunc':>22} | ratio | check"
        )
        for rows in args.rows:
            path = work / f"customers-{rows}.csv"
            customers(rows)[0].drop(columns="churned").to_csv(path, index=False)
            spark, plain = [], []
            for n in range(args.rounds):
                spark.append(timed(spark_rows, settings, client, path, f"s{rows}_{n}"))
                plain.append(timed(score_with_pandas, settings, version, path, f"p{rows}_{n}"))
            assert {r for _, r in spark + plain} == {rows}, (spark, plain)
            same = agreeing_labels(settings, f"s{rows}_0", f"p{rows}_0")
            s, p = (statistics.median(t for t, _ in side) for side in (spark, plain))
            print(
                f"{rows:>9,} | {s:7.1f} s {rows / s:>9,.0f}/s | {p:7.1f} s {rows / p:>9,.0f}/s"
                f" | {p / s:.2f} | labels agree on {same:,} of {rows:,} rows"
            )
            if same != rows:
                raise SystemExit("Spark and the in-process pyfunc disagree on some labels")


if __name__ == "__main__":
    main()

"""The batch-score flow: the champion applied on Spark to a large file or folder."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from flows.hooks import run_name
from retrain.config.settings import load_settings
from retrain.scoring.batch_score import ScoreReport
from tasks.scoring import score_files


@flow(name="batch-score", flow_run_name=run_name("batch-score"), timeout_seconds=6 * 3600)
def batch_score(source: str, output: str | None = None) -> ScoreReport:
    """Score every row of a CSV/Parquet file or folder with `@champion` through
    `mlflow.pyfunc.spark_udf` (RETRAIN_SPARK_MASTER, default local[*]) into `output`
    (default `<dataset>_scores`), keyed by file digest and line."""
    logger = get_run_logger()
    settings = load_settings()
    logger.info(f"scoring {source} on Spark {settings.spark_master}")
    report = score_files(settings, source, output)
    logger.info(report.describe())
    create_table_artifact(
        [{"table": report.table, "files": report.files, "rows": report.rows,
          "model_version": report.version, "seconds": round(report.seconds, 1)}],
        key="batch-score", description=report.describe(),
    )  # fmt: skip
    return report

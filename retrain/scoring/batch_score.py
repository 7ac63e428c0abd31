"""Batch scoring: the champion applied on Spark to large CSV or Parquet files (a file or a
folder of them), every row written once to `<dataset>_scores` with its label and class
probabilities, keyed by the file's digest and the row's line."""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from retrain.config.settings import Settings
from retrain.errors import BadInput, StageFailed
from retrain.io import scores_table, tracking
from retrain.io.engines import make_engine, now_utc
from retrain.model import logged_model
from retrain.model.pyfunc_model import PROBABILITIES

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

SCORE_SUFFIXES = (".csv", ".parquet")
CHAMPION = "champion"


@dataclass(frozen=True)
class ScoreReport:
    table: str
    files: int
    rows: int
    version: str
    seconds: float

    def describe(self) -> str:
        rate = self.rows / self.seconds if self.seconds else 0.0
        return (
            f"scored {self.rows} rows of {self.files} file(s) with version {self.version} into "
            f"{self.table} in {self.seconds:.1f} s ({rate:,.0f} rows/s)"
        )


def list_score_files(source: Path) -> list[Path]:
    """A CSV or Parquet file, or every one under a folder (sorted)."""
    source = source.expanduser()
    if source.is_file():
        return [source]
    if source.is_dir():
        found = sorted(p for p in source.rglob("*") if p.suffix.lower() in SCORE_SUFFIXES)
        if found:
            return found
        raise BadInput(f"{source}: no .csv or .parquet file in this folder")
    raise BadInput(f"{source}: no such file or folder; pass --source with a CSV or Parquet file")


def file_digest(path: Path) -> str:
    """The file's content digest: the key that makes scoring the same file again replace its
    rows, wherever the file sits."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()[:16]


def model_columns(model_path: str, version: str) -> tuple[list[str], list[str]]:
    """The probability columns the version's output signature declares (after `label`), and
    the feature columns its input signature requires."""
    names, required = tracking.signature_names(model_path)
    if not names or names[0] != "label":
        raise BadInput(
            f"version {version} was registered before its signature declared its "
            "probabilities, which batch scoring needs; tune again (`retrain run`)"
        )
    return names[1:], required


def staged_parts(folders: list[Path], rows: int) -> Iterator[pd.DataFrame]:
    """The scored rows Spark wrote, `rows` at a time."""
    import pyarrow.parquet as pq

    for folder in folders:
        for path in sorted(folder.glob("*.parquet")):
            for batch in pq.ParquetFile(path).iter_batches(batch_size=rows):
                yield batch.to_pandas()


def score_source(
    settings: Settings, client: tracking.MlflowClient, source: Path, output: str | None
) -> ScoreReport:
    """Score every row of `source` with the champion and replace those files' rows in the
    scores table (one transaction: a failed write leaves the table as it was)."""
    from retrain.io import spark as spark_adapter

    files = list_score_files(source)
    version = tracking.alias_version(client, settings.model_name, CHAMPION)
    if version is None:
        raise StageFailed(f"{settings.model_name} has no champion yet; run `retrain run` first")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="retrain-score-") as tmp:
        local = tracking.download_version(settings.tracking_uri, settings.model_name, version, tmp)
        probas, required = model_columns(local, version)
        kinds = logged_model.load_local(local).kinds
        spark = spark_adapter.start_session(settings.spark_master)
        try:
            staged = [
                score_file(spark, local, path, kinds, required, Path(tmp) / f"part{n}")
                for n, path in enumerate(files)
            ]
        finally:
            spark.stop()
        name = output or f"{settings.dataset}_scores"
        digests = [digest for digest, _ in staged]
        parts = staged_parts([folder for _, folder in staged], settings.chunk_rows)
        rows = write_scores(settings, name, probas, version, digests, parts)
    return ScoreReport(name, len(files), rows, version, time.perf_counter() - started)


def write_scores(
    settings: Settings,
    name: str,
    probas: list[str],
    version: str,
    digests: list[str],
    parts: Iterable[pd.DataFrame],
) -> int:
    """Replace these files' rows in the scores table `name` (created when missing) with
    `parts`: keys, label and the `probas` columns; every row gets the version and the time."""
    table = scores_table.scores_table(name, [p.removeprefix("proba_") for p in probas])
    engine = make_engine(settings.database_url)
    scores_table.check_scores_table(engine, table)
    constants = {"model_version": version, "scored_at": now_utc()}
    return scores_table.replace_scores(
        engine, table, digests, parts, constants, settings.chunk_rows
    )


def score_file(
    spark: SparkSession,
    model_path: str,
    path: Path,
    kinds: dict[str, str],
    required: list[str],
    out: Path,
) -> tuple[str, Path]:
    """One file scored on Spark into Parquet under `out`; returns its digest and `out`."""
    from retrain.io import spark as spark_adapter

    frame = spark_adapter.read_source(spark, path, kinds)
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise BadInput(f"{path}: lacks the feature column(s) {missing} the model needs")
    first = 1 if path.suffix.lower() == ".parquet" else 2  # a CSV's line 1 is its header
    digest = file_digest(path)
    lined = spark_adapter.with_line_numbers(frame, first)
    spark_adapter.score_to_parquet(spark, model_path, lined, digest, out, {PROBABILITIES: True})
    return digest, out

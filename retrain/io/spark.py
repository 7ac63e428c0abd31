"""Spark adapter for batch scoring: a session (`local[*]` by default, bound to 127.0.0.1 with
its UI on a free port), source files read with the schema's types, line numbers, and the
champion applied through `mlflow.pyfunc.spark_udf`. Imported only by `retrain score`:
pyspark is the optional `spark` dependency group."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrain.errors import BadInput

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

INSTALL_HINT = (
    "batch scoring runs on Spark: install the optional group (`./dev --group spark retrain "
    "score ...`, or `pip install pyspark`) and Java 17 (apt-get install openjdk-17-jre-headless)"
)
PARTITION_BITS = 33  # monotonically_increasing_id: partition id above, row number below
# The model's input types (retrain.model.pyfunc_model.SPEC_TYPES), as Spark casts them from text.
SPARK_TYPES = {"numeric": "double", "integer": "double", "boolean": "boolean"}


def start_session(master: str) -> SparkSession:
    """The Spark session. A local master binds 127.0.0.1 (driver, UI on a free port); a
    cluster master uses Spark's own settings (spark-defaults.conf, SPARK_* variables). The
    Python workers run this interpreter unless PYSPARK_PYTHON names another."""
    problem = missing_for_spark()
    if problem:
        raise BadInput(problem)
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.master(master).appName("retrain-score")
    if master.startswith("local"):
        # no name lookups: PySpark's own servers would bind "localhost", which a bare
        # container's missing /etc/hosts cannot resolve; Unix sockets need no name
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        builder = (
            builder.config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.python.unix.domain.socket.enabled", "true")
        )
    builder = (
        builder.config("spark.ui.port", "0")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
    )
    with without_aws_variables(local=master.startswith("local")):
        session = builder.getOrCreate()  # starts the JVM, which copies the environment
    session.sparkContext.setLogLevel("ERROR")
    return session


@contextmanager
def without_aws_variables(local: bool) -> Iterator[None]:
    """Start a local Spark's JVM without the AWS_* variables (restored after). The model
    comes from MLflow through this process (the variables serve it here), and the rows from
    local files; but with AWS_ACCESS_KEY_ID in its environment spark-submit looks up this
    host's own name, and dies where that name does not resolve (a bare container or chroot)."""
    saved = {k: os.environ.pop(k) for k in list(os.environ) if local and k.startswith("AWS_")}
    try:
        yield
    finally:
        os.environ.update(saved)


def missing_for_spark() -> str | None:
    """What this machine lacks to run Spark (pyspark, or Java 17+), with the fix; or None."""
    if importlib.util.find_spec("pyspark") is None:
        return f"pyspark is not installed; {INSTALL_HINT}"
    problem = java_problem()
    return f"{problem}; {INSTALL_HINT}" if problem else None


def java_problem() -> str | None:
    """Why the Java that Spark would start cannot run it (none, or older than 17), or None."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not Path(java).exists():
        return "no Java found (JAVA_HOME, or java on PATH)"
    try:
        said = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"{java} -version failed: {err}"
    found = re.search(r'version "(\d+)(?:\.(\d+))?', said.stderr + said.stdout)
    if found is None:
        return f"{java} -version did not say its version"
    major = int(found.group(2) or 0) if found.group(1) == "1" else int(found.group(1))
    return None if major >= 17 else f"{java} is Java {major}; Spark needs Java 17 or newer"


def read_source(spark: SparkSession, path: Path, kinds: Mapping[str, str]) -> DataFrame:
    """A CSV (with header) or Parquet file's feature columns, typed as the model takes them.
    A value that does not parse is missing (NULL), as the served model treats it."""
    from pyspark.sql import functions as F

    if path.suffix.lower() == ".parquet":
        frame = spark.read.parquet(str(path))
    else:
        frame = spark.read.option("header", True).option("encoding", "UTF-8").csv(str(path))
    columns = [c for c in kinds if c in frame.columns]
    return frame.select(*[typed(F.col(c), kinds[c]).alias(c) for c in columns])


def typed(column: Column, kind: str) -> Column:
    spark_type = SPARK_TYPES.get(kind, "string")
    if spark_type == "boolean":
        return column.try_cast("boolean").cast("double")
    return column.try_cast(spark_type)


def with_line_numbers(frame: DataFrame, first: int) -> DataFrame:
    """`line_no` for each row, counted from `first` in file order: the rows of each partition
    are counted (one pass), and a row's number is its partition's start plus its place in
    the partition, which `monotonically_increasing_id` keeps in its low bits."""
    from pyspark.sql import functions as F

    tagged = frame.withColumn("_part", F.spark_partition_id()).withColumn(
        "_id", F.monotonically_increasing_id()
    )
    counts = {row["_part"]: row["count"] for row in tagged.groupBy("_part").count().collect()}
    starts, line = [], first
    for part in sorted(counts):
        starts += [F.lit(part), F.lit(line)]
        line += counts[part]
    if not counts:
        return frame.withColumn("line_no", F.lit(None).cast("long"))
    start = F.element_at(F.create_map(*starts), F.col("_part"))
    place = F.col("_id") - F.col("_part").cast("long") * F.lit(1 << PARTITION_BITS)
    return tagged.withColumn("line_no", start + place).drop("_part", "_id")


def score_to_parquet(
    spark: SparkSession,
    model_path: str,
    frame: DataFrame,
    digest: str,
    out: Path,
    params: dict[str, Any],
) -> None:
    """Apply the model (a downloaded version folder) to every row through `spark_udf`, with
    `params` (the probabilities asked for): its output signature gives the result's struct
    type. The keys and the model's answer columns are written as Parquet under `out`."""
    import mlflow.pyfunc
    from pyspark.sql import functions as F

    features = [c for c in frame.columns if c != "line_no"]
    model = mlflow.pyfunc.spark_udf(spark, model_path, env_manager="local", params=params)
    scored = frame.select(
        F.lit(digest).alias("source_digest"),
        "line_no",
        model(F.struct(*features)).alias("answer"),
    )
    scored.select("source_digest", "line_no", "answer.*").write.mode("overwrite").parquet(str(out))

"""How the pipeline grows with rows: every stage of `retrain run` as its own process, timed and
measured, then the champion beside a default LightGBM and FLAML on the same rows, in one run.

    ./dev --group bench python bench/scale.py [--rows 1000000] [--budget 600] [--mysql]

Per size (`--sizes`, default 10^4, 10^5 and 10^6 rows) a seeded mixed table is written as a CSV
file in chunks: 10 float and 2 integer features with nonlinear interactions, three categoricals
of 3, 12 and 200 levels (some carrying signal), an id column, 2 % of the feature cells blank
and a noisy binary target `churned` (yes/no, about 22 % yes). In a fresh RETRAIN_HOME (embedded
SQLite stores, or a throwaway MariaDB with `--mysql`) it runs `retrain schema infer` (the two
integer columns then declared integer), then `retrain ingest`, `clean`, `tune`, `promote` and
`deploy`, each a fresh process as a cron line would run them, and `retrain serve stop`.

Per stage: wall seconds (their sum is the end-to-end figure, with each command's imports and
Prefect's temporary API start-up), the seconds inside the flow (from Prefect's log lines),
rows/s of ingest and clean on both, and peak RSS: of the largest single process of the stage's
process tree (the kernel's maxrss of the command and its reaped descendants, and a 0.2 s psutil
poll) and of the whole tree summed. The MariaDB server is in no tree. Then the growth of time
and peak RSS from one size to the next.

Then, on the cleaned table read back and split exactly as tuning split it, a default-parameter
LightGBM (behind the tree families' preprocessing) and FLAML (`estimator_list` lgbm, rf,
extra_tree, the tuner's budget) are fitted on the training rows, and their holdout AUROC (the
project's AUROC function) is printed beside the champion's, read from MLflow.

`--budget` (default 600) is the tuning budget of sizes >= 10^6, and of a smaller size only
when both are given (`--rows 10000 --budget 30`); other sizes below 10^6 get 60 s. FLAML
comes from the `bench` dependency group (its AutoML imports xgboost, hence the CPU-only
xgboost-cpu there); without it the bench stops at once and says how to install it.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil
import yaml

from retrain.config.settings import Settings, load_settings
from retrain.data.features import prepare_features
from retrain.data.split import Dataset, align_proba, dataset_of
from retrain.io import store, tracking
from retrain.serving.model_server import free_port
from retrain.training.families import auroc, fit_model, pipeline_of, predict_aligned
from tests.support.services import mariadb_server

STAGES = ("ingest", "clean", "tune", "promote", "deploy")
RATE_STAGES = ("ingest", "clean")
SMALL_BUDGET = 60.0
LARGE_ROWS = 1_000_000
CHUNK_ROWS = 200_000
MISSING_SHARE = 0.02
SEED = 7
MIB = 1024 * 1024
FLAML_HINT = "flaml is not installed: run ./dev --group bench python bench/scale.py"
TINY_FLOW = (
    "from prefect import flow, task\n"
    "@task\ndef one(): return 1\n"
    "@flow\ndef tiny(): return one() + one()\n"
    "tiny()\n"
)
INTEGERS = ("tenure", "tickets")
FLOW_LINE = re.compile(
    r"^(\d\d):(\d\d):(\d\d\.\d+) \| \w+ *\| Flow run '.*' - (Beginning|Finished)"
)
PLANS = np.array(["basic", "plus", "premium"])
REGIONS = np.array([f"r{i:02d}" for i in range(12)])
PRODUCTS = np.array([f"p{i:03d}" for i in range(200)])


# -- the table -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Effects:
    """The per-level effects of the categoricals, shared by every chunk of a table."""

    region: np.ndarray
    product: np.ndarray
    product_p: np.ndarray

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Effects:
        weights = 1.0 / (np.arange(len(PRODUCTS)) + 5.0)  # a long tail of rare products
        signal = rng.normal(0, 1.0, len(PRODUCTS)) * (rng.random(len(PRODUCTS)) < 0.3)
        return cls(rng.normal(0, 0.5, len(REGIONS)), signal, weights / weights.sum())


def chunk_frame(rng: np.random.Generator, start: int, n: int, fx: Effects) -> pd.DataFrame:
    """`n` rows with ids from `start`, the label drawn from a logistic of nonlinear terms: at
    10^5 rows the Bayes AUROC is 0.88, a default LightGBM's 0.85, a logistic regression's 0.78."""
    x = rng.normal(size=(n, 10))
    tenure, tickets = rng.integers(0, 121, n), rng.poisson(1.5, n)
    plan, region = rng.choice(3, n, p=[0.6, 0.3, 0.1]), rng.integers(0, len(REGIONS), n)
    product = rng.choice(len(PRODUCTS), n, p=fx.product_p)
    logit = (
        1.3 * np.sin(1.5 * x[:, 0]) + 0.9 * x[:, 1] * x[:, 2] + 1.2 * (x[:, 3] > 0.5) * x[:, 4]
        - 0.5 * x[:, 5] ** 2 + 0.4 * x[:, 6] + 0.35 * tickets
        - 0.02 * tenure * (1 + (plan == 0)) + 0.8 * (plan == 0)
        + fx.region[region] + fx.product[product] - 0.6
    )  # fmt: skip
    frame = pd.DataFrame(x.round(4), columns=[f"x{i}" for i in range(10)])
    frame["tenure"], frame["tickets"] = tenure, tickets  # INTEGERS
    frame["plan"], frame["region"] = PLANS[plan], REGIONS[region]
    frame["product"] = PRODUCTS[product]
    blank_cells(frame, rng)
    frame.insert(0, "user_id", [f"u{i:08d}" for i in range(start, start + n)])
    frame["churned"] = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "yes", "no")
    return frame


def blank_cells(frame: pd.DataFrame, rng: np.random.Generator) -> None:
    """Blank MISSING_SHARE of every feature column's cells (integers stay whole numbers)."""
    for column in list(frame.columns):
        gone = rng.random(len(frame)) < MISSING_SHARE
        if frame[column].dtype.kind == "i":
            frame[column] = frame[column].astype("Int64")
        elif frame[column].dtype.kind != "f":
            frame[column] = frame[column].astype(object)
        frame.loc[gone, column] = None


def write_table(path: Path, rows: int, seed: int = SEED) -> float:
    """The table as one CSV file, written chunk by chunk; returns the seconds it took."""
    started = time.perf_counter()
    fx = Effects.draw(np.random.default_rng(seed))
    for number, start in enumerate(range(0, rows, CHUNK_ROWS)):
        rng = np.random.default_rng([seed, number])
        frame = chunk_frame(rng, start, min(CHUNK_ROWS, rows - start), fx)
        frame.to_csv(path, mode="a" if number else "w", header=not number, index=False)
    return time.perf_counter() - started


# -- the stages ----------------------------------------------------------------------------


@dataclass
class Stage:
    """One command's wall time and memory: the largest single process (polled, and the
    kernel's maxrss of the command and its reaped descendants) and the whole tree summed."""

    name: str
    seconds: float = 0.0
    flow_seconds: float | None = None
    polled_bytes: int = 0
    kernel_bytes: int = 0
    tree_bytes: int = 0

    @property
    def peak_bytes(self) -> int:
        return max(self.polled_bytes, self.kernel_bytes)


def tree_rss(root: psutil.Process) -> tuple[int, int]:
    """(largest single RSS, summed RSS) of a process and its descendants, right now."""
    sizes = []
    try:
        family = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0, 0
    for proc in family:
        try:
            sizes.append(proc.memory_info().rss)
        except psutil.Error:
            continue
    return max(sizes, default=0), sum(sizes)


def measure(name: str, command: list[str], env: dict[str, str], log: Path) -> Stage:
    """Run one command to its end, polling its process tree every 0.2 s; fails loudly."""
    stage = Stage(name)
    started = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    root = psutil.Process(proc.pid)
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        single, tree = tree_rss(root)
        stage.polled_bytes = max(stage.polled_bytes, single)
        stage.tree_bytes = max(stage.tree_bytes, tree)
        time.sleep(0.2)
    stage.seconds = time.perf_counter() - started
    stage.kernel_bytes = usage.ru_maxrss * 1024
    proc.returncode = os.waitstatus_to_exitcode(status)
    lines = log.read_text(errors="replace").splitlines()
    if proc.returncode:
        tail = "\n".join(lines[-25:])
        raise SystemExit(f"{' '.join(command[1:])} exited with {proc.returncode}:\n{tail}")
    stage.flow_seconds = flow_seconds(lines)
    return stage


def flow_seconds(lines: list[str]) -> float | None:
    """Seconds from Prefect's "Beginning flow run" to its last "Finished in state" log line:
    the stage's own work, without the imports and the temporary API's start-up."""
    stamps = {}
    for line in lines:
        found = FLOW_LINE.match(line)
        if found:
            hours, minutes, seconds, event = found.groups()
            stamp = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
            stamps.setdefault(event, []).append(stamp)
    if "Beginning" not in stamps or "Finished" not in stamps:
        return None
    return (stamps["Finished"][-1] - stamps["Beginning"][0]) % 86_400


def retrain_command(*args: str) -> list[str]:
    """The `retrain` console script of the interpreter running this bench."""
    return [str(Path(sys.executable).parent / "retrain"), *args]


def base_env(work: Path, db_url: str | None) -> dict[str, str]:
    """This process's environment without any retrain, MLflow or Prefect server settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("RETRAIN_") and k not in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL")
    }
    env |= {
        "PREFECT_HOME": str(work / "prefect"),
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        # as `retrain` itself: no telemetry (offline, its writes lock the new database)
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    if db_url:
        env["RETRAIN_DB_URL"] = db_url
    return env


def warm_up_prefect(env: dict[str, str], log: Path) -> None:
    """A two-task flow, so that no stage pays for creating Prefect's database."""
    measure("warm-up", [sys.executable, "-c", TINY_FLOW], env, log)


# -- one size ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Score:
    """A model's holdout AUROC, the wall seconds it took to get and what it was."""

    auroc: float
    seconds: float
    note: str


@dataclass
class Result:
    rows: int
    budget: float
    write_seconds: float = 0.0
    stages: list[Stage] = field(default_factory=list)
    infer: Stage | None = None
    scores: dict[str, Score] = field(default_factory=dict)

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    def pick(self, name: str) -> Stage:
        return self.total if name == "total" else self.stage(name)

    @property
    def total(self) -> Stage:
        stages = [s for s in self.stages if s.name in STAGES]
        peak = max(stages, key=lambda s: s.peak_bytes)
        tree = max(s.tree_bytes for s in stages)
        seconds = sum(s.seconds for s in stages)
        inside = sum(s.flow_seconds or 0.0 for s in stages)
        return Stage("total", seconds, inside, peak.polled_bytes, peak.kernel_bytes, tree)


def declare_integers(schema: Path, columns: tuple[str, ...]) -> None:
    """Integer columns with blanks read as floats; declare them integer, as a user would."""
    document = yaml.safe_load(schema.read_text())
    for column in columns:
        document["columns"][column]["dtype"] = "int64"
    schema.write_text(yaml.safe_dump(document, sort_keys=False))


def prepare_size(work: Path, rows: int, env: dict[str, str], options: dict[str, str]) -> Result:
    """The CSV file, its inferred schema and the stage environment, in `env` and os.environ."""
    source = work / f"scale_{rows}.csv"  # the stem names the dataset, so sizes share no tables
    result = Result(rows, float(options["RETRAIN_TUNE_BUDGET"]))
    result.write_seconds = write_table(source, rows)
    schema = work / "schema.yaml"
    infer = ("schema", "infer", "--source", str(source), "--target", "churned")
    infer += ("--positive", "yes", "--id", "user_id", "--output", str(schema))
    result.infer = measure("infer", retrain_command(*infer), env, work / "infer.log")
    declare_integers(schema, INTEGERS)
    env |= options | {
        "RETRAIN_HOME": str(work / "home"),
        "RETRAIN_SCHEMA": str(schema),
        "RETRAIN_SOURCE": str(source),
        "RETRAIN_SERVE_PORT": str(free_port()),
    }
    os.environ.clear()
    os.environ.update(env)
    return result


def run_size(
    work: Path, rows: int, env: dict[str, str], options: dict[str, str], automl: Any
) -> Result:
    """Every stage as its own process, the serve stopped at the end, then the baselines."""
    result = prepare_size(work, rows, env, options)
    try:
        for name in STAGES:
            result.stages.append(measure(name, retrain_command(name), env, work / f"{name}.log"))
    finally:
        subprocess.run(retrain_command("serve", "stop"), env=env, capture_output=True)
    settings = load_settings()
    result.scores["retrain"] = champion_score(settings, result.stage("tune").seconds)
    data = read_dataset(settings)
    result.scores["lightgbm"] = default_lightgbm(data)
    if automl is not None:
        result.scores["flaml"] = flaml_score(automl, data, result.budget)
    return result


# -- the models ----------------------------------------------------------------------------


def champion_score(settings: Settings, seconds: float) -> Score:
    """@champion's holdout AUROC and what it is (family, trials, params), from its tuning run."""
    client = tracking.make_client(settings.tracking_uri)
    version = client.get_model_version_by_alias(settings.model_name, "champion")
    run = client.get_run(version.run_id)
    params = {
        k.removeprefix("best_"): v for k, v in run.data.params.items() if k.startswith("best_")
    }
    family = params.pop("family", "?")
    done = int(run.data.metrics.get("trials_completed", 0))
    started = int(run.data.metrics.get("trials_started", 0))
    shown = ", ".join(f"{k}={v}" for k, v in sorted(params.items()))
    finish = ", ".join(
        f"{k.removeprefix('finish_seconds_')} {v:.0f} s"
        for k, v in run.data.metrics.items()
        if k.startswith("finish_seconds_")
    )
    described = (
        f"v{version.version} {family} ({done}/{started} trials) {shown}; after the search: {finish}"
    )
    return Score(run.data.metrics["test_auroc"], seconds, described)


def read_dataset(settings: Settings) -> Dataset:
    """The cleaned rows read back and split exactly as tuning split them."""
    engine, tables = store.open_dataset(settings)
    with engine.connect() as conn:
        return dataset_of(store.read_cleaned(conn, tables), settings.load_schema())


def holdout_auroc(data: Dataset, proba: np.ndarray, model_classes: np.ndarray) -> float:
    classes = data.known_classes
    aligned = align_proba(proba, model_classes, classes)
    return auroc(data.labels(data.holdout), aligned, classes, data.positive)


def default_lightgbm(data: Dataset) -> Score:
    """A default-parameter LGBMClassifier behind the tree families' preprocessing."""
    from lightgbm import LGBMClassifier

    started = time.perf_counter()
    model = pipeline_of(LGBMClassifier(verbose=-1), data.kinds)
    x, y = prepare_features(data.train, data.kinds), data.labels(data.train)
    fitted = fit_model(model, x, y, data.kinds)
    proba = predict_aligned(fitted, prepare_features(data.holdout, data.kinds), data.known_classes)
    score = holdout_auroc(data, proba, data.known_classes)
    return Score(score, time.perf_counter() - started, "defaults")


def as_categories(frame: pd.DataFrame, kinds: dict[str, str], like: pd.DataFrame | None = None):
    """Prepared features with the categoricals as pandas categories (those of `like`)."""
    frame = frame.copy()
    for name, kind in kinds.items():
        if kind == "categorical":
            levels = None if like is None else like[name].cat.categories
            frame[name] = pd.Categorical(frame[name], categories=levels)
    return frame


def flaml_score(automl_class: Any, data: Dataset, budget: float) -> Score:
    """FLAML's AutoML with the tuner's budget on the same training rows."""
    started = time.perf_counter()
    x_train = as_categories(prepare_features(data.train, data.kinds), data.kinds)
    x_test = as_categories(prepare_features(data.holdout, data.kinds), data.kinds, x_train)
    automl = automl_class()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        automl.fit(
            x_train, data.labels(data.train), task="classification", metric="roc_auc",
            time_budget=budget, estimator_list=["lgbm", "rf", "extra_tree"], seed=SEED,
            verbose=0,
        )  # fmt: skip
        proba = automl.predict_proba(x_test)
    score = holdout_auroc(data, proba, np.asarray(automl.classes_))
    return Score(score, time.perf_counter() - started, str(automl.best_estimator))


def load_automl() -> Any:
    """FLAML's AutoML class, fully imported now (a later re-sync may remove the package)."""
    try:
        from flaml import AutoML  # its estimators too (and xgboost, which it always imports)
    except ImportError as err:
        raise SystemExit(FLAML_HINT) from err  # a comparison without its baseline says nothing
    return AutoML


# -- output --------------------------------------------------------------------------------


def mib(size: int) -> str:
    return f"{size / MIB:.0f}"


def rate(rows: int, seconds: float | None) -> str:
    return "" if not seconds else f"{rows / seconds:,.0f}"


def stage_line(stage: Stage, rows: int) -> str:
    rated = stage.name in RATE_STAGES
    inside = "" if stage.flow_seconds is None else f"{stage.flow_seconds:.1f}"
    return (
        f"{stage.name:<9}{stage.seconds:8.1f}{inside:>9}"
        f"{rate(rows, stage.seconds) if rated else '':>10}"
        f"{rate(rows, stage.flow_seconds) if rated else '':>11}"
        f"{mib(stage.peak_bytes):>10}{mib(stage.polled_bytes):>8}{mib(stage.tree_bytes):>10}"
    )


def print_stages(result: Result) -> None:
    print(
        f"\n{result.rows:,} rows, tune budget {result.budget:.0f} s; CSV written in "
        f"{result.write_seconds:.1f} s; `schema infer` {result.infer.seconds:.1f} s (not in total)"
    )
    print(
        f"{'stage':<9}{'seconds':>8}{'in flow':>9}{'rows/s':>10}{'in flow':>11}"
        f"{'peak MiB':>10}{'polled':>8}{'tree MiB':>10}"
    )
    for stage in [*result.stages, result.total]:
        print(stage_line(stage, result.rows))


def ratio(a: float | None, b: float | None) -> str:
    return f"{b / a:.2f}" if a and b else "-"


def ratio_cells(a: Stage, b: Stage) -> str:
    return (
        f"{ratio(a.seconds, b.seconds):>10}{ratio(a.flow_seconds, b.flow_seconds):>9}"
        f"{ratio(a.peak_bytes, b.peak_bytes):>9}"
    )


def print_growth(results: list[Result]) -> None:
    """Ratios of wall seconds, seconds in the flow and peak RSS to the size before."""
    if len(results) < 2:
        return
    pairs = list(itertools.pairwise(results))
    print("\ngrowth: ratio to the size before of wall seconds, seconds in flow, peak RSS")
    print(f"{'stage':<9}" + "".join(f"{f'{a.rows:,}->{b.rows:,}':>28}" for a, b in pairs))
    print(f"{'':<9}" + f"{'wall':>10}{'in flow':>9}{'RSS':>9}" * len(pairs))
    for name in [*STAGES, "total"]:
        cells = "".join(ratio_cells(a.pick(name), b.pick(name)) for a, b in pairs)
        print(f"{name:<9}{cells}")


def print_scores(results: list[Result]) -> None:
    print(
        f"\nholdout AUROC\n{'rows':>9}{'budget':>7}{'champion':>9}{'tune s':>8}"
        f"{'LGBM dflt':>10}{'s':>7}{'FLAML':>8}{'s':>7}  FLAML best"
    )
    for r in results:
        mine, lgbm, flaml = r.scores["retrain"], r.scores["lightgbm"], r.scores.get("flaml")
        auto = f"{flaml.auroc:8.4f}{flaml.seconds:7.1f}  {flaml.note}" if flaml else f"{'-':>8}"
        print(
            f"{r.rows:>9,}{r.budget:>7.0f}{mine.auroc:9.4f}{mine.seconds:8.1f}"
            f"{lgbm.auroc:10.4f}{lgbm.seconds:7.1f}{auto}"
        )
    for r in results:
        print(f"champion at {r.rows:,} rows: {r.scores['retrain'].note}")


def print_goals(r: Result) -> None:
    """The figures the goals quote, on the largest size run (the goals are stated for 10^6)."""
    mine = r.scores["retrain"].auroc
    print(f"\ngoals at {r.rows:,} rows, budget {r.budget:.0f} s (stated for 10^6 rows, 600 s):")
    tune, flaml = r.stage("tune").seconds, r.scores["flaml"].seconds
    print(
        f"  tune stage {tune:.0f} s against its {r.budget:.0f} s budget "
        f"({tune - r.budget:+.0f} s); FLAML {flaml:.0f} s against the same budget"
    )
    print(f"  whole run (sum of stages) {r.total.seconds / 60:.1f} min (goal <= 20)")
    print(f"  largest retrain process {r.total.peak_bytes / MIB:.0f} MiB (goal <= 2048)")
    print(
        f"  champion - default LightGBM {mine - r.scores['lightgbm'].auroc:+.4f} (goal >= -0.002)"
    )
    if "flaml" in r.scores:
        print(f"  champion - FLAML {mine - r.scores['flaml'].auroc:+.4f} (goal >= -0.002)")
    clean = r.stage("clean")
    print(
        f"  clean {rate(r.rows, clean.seconds)} rows/s, {rate(r.rows, clean.flow_seconds)} in flow"
    )


# -- main ----------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma list of rows")
    parser.add_argument("--rows", type=int, help="one size only (overrides --sizes)")
    parser.add_argument("--budget", type=float, help="tuning seconds (default 600, see above)")
    parser.add_argument("--family", help="RETRAIN_FAMILY for the tuner; default: its default")
    parser.add_argument("--trials", type=int, help="RETRAIN_TRIALS; default: its default")
    parser.add_argument("--mysql", action="store_true", help="a throwaway MariaDB data store")
    parser.add_argument("--keep", type=Path, help="work in this new folder and keep it (logs)")
    return parser.parse_args()


def plan_sizes(args: argparse.Namespace) -> list[tuple[int, float]]:
    """(rows, tuning budget) of each size: --budget (default 600) for 10^6 rows and more, and
    for a smaller size only when it is given with --rows; 60 s otherwise."""
    sizes = [args.rows] if args.rows else [int(float(n)) for n in args.sizes.split(",") if n]
    large = args.budget or 600.0
    small = args.budget if args.rows and args.budget else SMALL_BUDGET
    return [(n, large if n >= LARGE_ROWS else small) for n in sizes]


def stage_options(args: argparse.Namespace, budget: float) -> dict[str, str]:
    options = {"RETRAIN_TUNE_BUDGET": f"{budget:g}"}
    if args.family:
        options["RETRAIN_FAMILY"] = args.family
    if args.trials:
        options["RETRAIN_TRIALS"] = str(args.trials)
    return options


@contextmanager
def work_folder(keep: Path | None, prefix: str = "bench-scale-") -> Iterator[Path]:
    """A temporary folder, or `keep` (created, never removed: the logs stay in it)."""
    if keep is None:
        with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
            yield Path(tmp)
        return
    keep.mkdir(parents=True)
    yield keep.resolve()


@contextmanager
def data_store(work: Path, mysql: bool) -> Iterator[str | None]:
    """A throwaway MariaDB's URL with --mysql, else None (the embedded SQLite store)."""
    if not mysql:
        yield None
        return
    (work / "mariadb").mkdir()
    with mariadb_server(work / "mariadb") as url:
        yield url


def main() -> None:
    args = parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # progress shows when piped
    automl = load_automl()
    results = []
    with work_folder(args.keep) as work, data_store(work, args.mysql) as db_url:
        env = base_env(work, db_url)
        warm_up_prefect(env, work / "prefect.log")
        print(f"store: {'MariaDB' if db_url else 'embedded SQLite'}")
        for rows, budget in plan_sizes(args):
            folder = work / str(rows)
            folder.mkdir()
            result = run_size(folder, rows, dict(env), stage_options(args, budget), automl)
            print_stages(result)
            results.append(result)
    print_growth(results)
    print_scores(results)
    print_goals(results[-1])


if __name__ == "__main__":
    main()

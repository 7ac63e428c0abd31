"""A nightly retrain on a drifting stream: is the AUROC the system logs honest about tomorrow's
rows, and does training on a recent window beat training on all history?

    ./dev --group bench python bench/drift_stream.py [--config hash --config time ...]
        [--nights 8] [--rows 20000] [--trials 8] [--budget 600] [--seed 7] [--keep DIR]

The stream: a seeded, simulated customer table, one CSV file per night (`--nights` nights of
`--rows` rows, plus one more so the last night has a tomorrow), written once and shared by
every configuration. Columns: `customer_id` (unique across nights), `event_time` (uniform
within the night's calendar day, night 0 being 2026-01-01), 8 numeric features `x0`..`x7`
(`x5`..`x7` 2 % blank), `plan` (3 levels), `region` (12 levels) and the target `churned`
(yes/no, 25 % yes every night). Each night's labels are also written alone (`customer_id`,
`churned`, under `labels/`) for a later step that loads labels a day late. The concept turns:
the linear part's coefficient vector rotates by 0.13 rad per night in the plane of two
random vectors, the weight of an `x0 * x1` interaction goes from +1.2 to -1.2 over 8 nights,
and the whole logit fades by 5.5 % of its first size per night (tomorrow is less predictable
than today: without that a 3-night window would score the same on every night from the third).
At the default size a default LightGBM trained on night 0 scores about 0.94 on night 1's rows;
on night 7 one trained on all nights scores about 0.82 on night 8 and one on the last 3 nights
about 0.87 (the oracle, the true probabilities, 0.95 on night 1 and 0.89 on night 8).

Per configuration (`--config`, repeatable; default all four), in a fresh work folder with the
embedded SQLite stores as bench/scale.py sets them up: `retrain schema infer` on night 0's
file (`customer_id` an id, `event_time` a timestamp, the dataset named `stream`), then per
night `retrain run --source <night file> --trials T --budget B --no-serve` as its own process,
timed. After each night, in this process: @champion's logged holdout AUROC (`test_auroc` of the
run that produced it), its realized AUROC on the next night's rows (the registered pyfunc with
`probabilities`), and two default LightGBMs fitted as bench/scale.py fits its baseline, on the
last 3 nights' rows and on all nights so far, scored on the next night (the project's AUROC).

- `hash`: RETRAIN_HOLDOUT=hash, a fixed fifth of all rows by row hash (today's baseline);
- `time`: RETRAIN_HOLDOUT=time, the newest rows as the holdout;
- `window3`: time holdout and RETRAIN_TRAIN_WINDOW_DAYS=3;
- `auto`: time holdout and RETRAIN_TRAIN_WINDOW_DAYS=auto.

A configuration whose setting this checkout's Settings does not have is reported and skipped
(Settings ignores unknown RETRAIN_* variables, so it would silently run as another), and one
that fails is reported with its log's tail; the others go on. Per configuration it prints a
markdown table per night, then mean(logged - realized), mean |logged - realized|, the mean
realized AUROC and baselines, realized - last-3 baseline, and the cost ratio: the last night's
run wall seconds over those of night 2, the first whose 3-night window is full. The table
also names the champion's version and tomorrow's oracle AUROC.
Each `retrain run` pays its imports and Prefect's temporary API (at 3,000 rows and 3 trials a
night took 55-65 s on 2 cores); `--keep DIR` keeps the stream, each run's log and the stores.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from mlflow.exceptions import MlflowException

from bench.scale import (
    base_env,
    default_lightgbm,
    retrain_command,
    warm_up_prefect,
    work_folder,
)
from retrain.config.settings import Settings, load_settings
from retrain.data.split import Dataset
from retrain.errors import BadInput, StageFailed
from retrain.io import tracking
from retrain.serving.model_server import free_port
from retrain.training.families import auroc

DATASET = "stream"
TARGET, POSITIVE = "churned", "yes"
ID, TIME = "customer_id", "event_time"
START = pd.Timestamp("2026-01-01")
NUMERIC = tuple(f"x{i}" for i in range(8))
BLANKED = ("x5", "x6", "x7")
MISSING_SHARE = 0.02
PLANS = np.array(["basic", "plus", "premium"])
PLAN_EFFECT = np.array([0.5, 0.0, -0.5])
REGIONS = np.array([f"r{i:02d}" for i in range(12)])
CHURN_SHARE = 0.25
STRENGTH = 4.0  # norm of the linear part's coefficient vector
TURN = 0.13  # radians the coefficient vector turns per night
INTERACTION = 1.2  # weight of x0 * x1 on night 0; -1.2 on night FLIP_NIGHTS
FLIP_NIGHTS = 8
FADE = 0.055  # the logit shrinks by this share of its night-0 size per night
WINDOW = 3  # nights of the "last nights" baseline
CONFIGS: dict[str, dict[str, str]] = {
    "hash": {"RETRAIN_HOLDOUT": "hash"},
    "time": {"RETRAIN_HOLDOUT": "time"},
    "window3": {"RETRAIN_HOLDOUT": "time", "RETRAIN_TRAIN_WINDOW_DAYS": "3"},
    "auto": {"RETRAIN_HOLDOUT": "time", "RETRAIN_TRAIN_WINDOW_DAYS": "auto"},
}
COLUMNS = (
    "night", "rows so far", "logged holdout AUROC", "expected AUROC", "realized next night",
    "default LightGBM, last 3 nights", "default LightGBM, all nights", "run wall s",
    "champion", "window", "oracle next night",
)  # fmt: skip


# -- the stream ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Concept:
    """What stays fixed while the concept turns: the plane the coefficients rotate in (two
    orthonormal vectors) and the regions' effects."""

    start: np.ndarray
    toward: np.ndarray
    region: np.ndarray

    @classmethod
    def draw(cls, seed: int) -> Concept:
        rng = np.random.default_rng(seed)
        start = rng.normal(size=len(NUMERIC))
        start /= np.linalg.norm(start)
        toward = rng.normal(size=len(NUMERIC))
        toward -= (toward @ start) * start
        return cls(start, toward / np.linalg.norm(toward), rng.normal(0, 0.5, len(REGIONS)))

    def logit(self, night: int, x: np.ndarray, plan: np.ndarray, region: np.ndarray) -> np.ndarray:
        """The night's logit before its intercept: turned, flipped and faded with the night."""
        angle = TURN * night
        beta = STRENGTH * (np.cos(angle) * self.start + np.sin(angle) * self.toward)
        weight = INTERACTION * np.cos(np.pi * night / FLIP_NIGHTS)
        logit = (
            x @ beta + weight * x[:, 0] * x[:, 1] + 0.8 * np.sin(1.5 * x[:, 2])
            + PLAN_EFFECT[plan] + self.region[region]
        )  # fmt: skip
        return logit * (1.0 - FADE * night)


def churn_probability(logit: np.ndarray) -> np.ndarray:
    """Probabilities from the logit with the intercept that makes CHURN_SHARE of them (a
    bisection: the share rises with the intercept)."""
    low, high = -30.0, 30.0
    for _ in range(60):
        middle = (low + high) / 2
        if np.mean(1 / (1 + np.exp(-(logit + middle)))) > CHURN_SHARE:
            high = middle
        else:
            low = middle
    return 1 / (1 + np.exp(-(logit + (low + high) / 2)))


def night_frame(seed: int, night: int, rows: int, concept: Concept) -> tuple[pd.DataFrame, float]:
    """One night's rows in time order, and the AUROC of their true probabilities."""
    rng = np.random.default_rng([seed, night])
    x = rng.normal(size=(rows, len(NUMERIC)))
    plan, region = rng.choice(3, rows, p=[0.6, 0.3, 0.1]), rng.integers(0, len(REGIONS), rows)
    proba = churn_probability(concept.logit(night, x, plan, region))
    churned = rng.random(rows) < proba
    seconds = np.sort(rng.uniform(0, 86_400, rows)).astype("int64")
    frame = pd.DataFrame({ID: [f"c{night * rows + i:09d}" for i in range(rows)]})
    frame[TIME] = (START + pd.Timedelta(days=night) + pd.to_timedelta(seconds, unit="s")).strftime(
        "%Y-%m-%dT%H:%M:%S"
    )
    frame[list(NUMERIC)] = x.round(4)
    for column in BLANKED:
        frame.loc[rng.random(rows) < MISSING_SHARE, column] = np.nan
    frame["plan"], frame["region"] = PLANS[plan], REGIONS[region]
    frame[TARGET] = np.where(churned, "yes", "no")
    oracle = auroc(frame[TARGET].to_numpy(), np.c_[1 - proba, proba], np.array(["no", "yes"]))
    return frame, oracle


@dataclass(frozen=True)
class Stream:
    """The night files (night k at index k), their labels files and the oracle AUROCs."""

    sources: list[Path]
    labels: list[Path]
    oracle: list[float]
    rows: int

    def frames(self) -> list[pd.DataFrame]:
        """Every night as pandas reads its file (what a client would send the model)."""
        return [pd.read_csv(path) for path in self.sources]


def write_stream(folder: Path, nights: int, rows: int, seed: int) -> Stream:
    """`nights` + 1 night files (the last night needs a tomorrow) and their labels files."""
    concept = Concept.draw(seed)
    (folder / "labels").mkdir(parents=True)
    sources, labels, oracle = [], [], []
    for night in range(nights + 1):
        frame, score = night_frame(seed, night, rows, concept)
        sources.append(folder / f"{DATASET}_{night:03d}.csv")
        labels.append(folder / "labels" / f"{DATASET}_{night:03d}_labels.csv")
        frame.to_csv(sources[-1], index=False)
        frame[[ID, TARGET]].to_csv(labels[-1], index=False)
        oracle.append(score)
    return Stream(sources, labels, oracle, rows)


# -- the baselines -------------------------------------------------------------------------


def lightgbm_on(train: list[pd.DataFrame], test: pd.DataFrame, kinds: dict[str, str]) -> float:
    """bench/scale.py's default LightGBM fitted on these nights, scored on `test`."""
    rows = pd.concat(train, ignore_index=True)
    return default_lightgbm(Dataset(rows, test, kinds, TARGET, POSITIVE, (ID, TIME))).auroc


@dataclass
class Baselines:
    """(last WINDOW nights, all nights) scores per night, shared by the configurations."""

    frames: list[pd.DataFrame]
    scores: dict[int, tuple[float, float]] = field(default_factory=dict)

    def of(self, night: int, kinds: dict[str, str]) -> tuple[float, float]:
        if night not in self.scores:
            test = self.frames[night + 1]
            recent = lightgbm_on(self.frames[max(0, night - WINDOW + 1) : night + 1], test, kinds)
            every = recent if night < WINDOW else lightgbm_on(self.frames[: night + 1], test, kinds)
            self.scores[night] = (recent, every)
        return self.scores[night]


# -- one configuration ---------------------------------------------------------------------


class CommandFailed(Exception):
    """A retrain command exited non-zero; the message holds its log's tail."""


def run_logged(command: list[str], env: dict[str, str], log: Path) -> float:
    """Run one command to its end with its output in `log`; its wall seconds."""
    started = time.perf_counter()
    with log.open("w") as out:
        code = subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - started
    if code:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise CommandFailed(f"{' '.join(command[1:])} exited with {code}:\n{tail}")
    return seconds


@contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """This process's environment replaced by `env` (load_settings reads it), then restored."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def mark_roles(schema: Path) -> list[str]:
    """Make the schema name the dataset `stream`, `customer_id` an id and `event_time` a
    timestamp when inference did not; returns what had to be fixed."""
    document = yaml.safe_load(schema.read_text())
    roles = document.setdefault("metadata", {}).setdefault("retrain", {})
    fixed = []
    for role, column in (("ids", ID), ("timestamps", TIME)):
        if column not in (roles.get(role) or []):
            roles[role] = [*(roles.get(role) or []), column]
            fixed.append(f"{column} added to {role}")
    if document.get("name") != DATASET:
        fixed.append(f"name {document.get('name')!r} -> {DATASET!r}")
        document["name"] = DATASET
    if fixed:
        schema.write_text(yaml.safe_dump(document, sort_keys=False))
    return fixed


def missing_settings(options: dict[str, str]) -> list[str]:
    """The RETRAIN_* variables of `options` that name no field of this checkout's Settings."""
    fields = set(Settings.model_fields)
    return [name for name in options if name.removeprefix("RETRAIN_").lower() not in fields]


@dataclass(frozen=True)
class Night:
    """One night of one configuration: the champion's scores and the baselines'."""

    index: int
    rows_so_far: int
    wall: float
    champion: str
    logged: float | None
    realized: float | None
    last: float
    every: float
    oracle: float
    expected: float | None = None  # the run's `expected_auroc` (None: a checkout without it)
    window: str = "-"  # the run's `train_window_chosen` (auto), else "-"


@dataclass
class Outcome:
    """A configuration's nights so far, and why it stopped early (None: it ran them all)."""

    name: str
    nights: list[Night] = field(default_factory=list)
    failure: str | None = None


@dataclass
class Config:
    """One configuration's work folder, environment and loaded champions (by version)."""

    name: str
    folder: Path
    env: dict[str, str]
    models: dict[str, Any] = field(default_factory=dict)

    def champion_model(self, settings: Settings, version: str) -> Any:
        """The registered pyfunc of `version`, downloaded once."""
        import mlflow.pyfunc

        if version not in self.models:
            folder = self.folder / "models" / version
            folder.mkdir(parents=True)
            local = tracking.download_version(
                settings.tracking_uri, settings.model_name, version, str(folder)
            )
            self.models[version] = mlflow.pyfunc.load_model(local)
        return self.models[version]


def prepare_config(name: str, work: Path, stream: Stream) -> tuple[Config, list[str]]:
    """The configuration's folder and environment, Prefect warmed up, the schema inferred
    from night 0's file and its roles checked; (config, fixes made to the schema)."""
    folder = work / name
    folder.mkdir()
    env = base_env(folder, None) | CONFIGS[name]
    schema = folder / f"{DATASET}.yaml"
    env |= {
        "RETRAIN_HOME": str(folder / "home"),
        "RETRAIN_SCHEMA": str(schema),
        "RETRAIN_DATASET": DATASET,
        "RETRAIN_SERVE_PORT": str(free_port()),
        # Prefect's temporary API gets 20 s to start by default: too few on a loaded machine
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    }
    warm_up_prefect(env, folder / "prefect.log")
    infer = ("schema", "infer", "--source", str(stream.sources[0]), "--target", TARGET)
    infer += ("--positive", POSITIVE, "--id", ID, "--timestamp", TIME, "--output", str(schema))
    run_logged(retrain_command(*infer), env, folder / "infer.log")
    return Config(name, folder, env), mark_roles(schema)


def realized_auroc(model: Any, frame: pd.DataFrame) -> float:
    """The champion's AUROC on rows it never saw, from the pyfunc's `proba_<class>` columns."""
    answer = model.predict(frame.drop(columns=[TARGET]), params={"probabilities": True})
    probas = [c for c in answer.columns if c.startswith("proba_")]
    classes = np.array([c.removeprefix("proba_") for c in probas])
    return auroc(frame[TARGET].to_numpy(), answer[probas].to_numpy(), classes, POSITIVE)


def score_night(config: Config, night: int, wall: float, stream: Stream, base: Baselines) -> Night:
    """After night `night`'s run: @champion's logged and realized AUROC and the baselines, read
    with the run's environment (its settings; MLflow's download progress bar off)."""
    logged = realized = expected = None
    window = "-"
    with environment(config.env):
        settings = load_settings()
        client = tracking.make_client(settings.tracking_uri)
        version = tracking.alias_version(client, settings.model_name, "champion")
        if version is not None:
            run = client.get_run(client.get_model_version(settings.model_name, version).run_id)
            logged = run.data.metrics["test_auroc"]
            expected = run.data.metrics.get("expected_auroc")
            window = run.data.params.get("train_window_chosen", "-")
            model = config.champion_model(settings, version)
            realized = realized_auroc(model, base.frames[night + 1])
    last, every = base.of(night, settings.load_schema().feature_kinds)
    rows = stream.rows * (night + 1)
    champion = f"v{version}" if version else "none"
    oracle = stream.oracle[night + 1]
    return Night(
        night, rows, wall, champion, logged, realized, last, every, oracle, expected, window
    )


def run_nights(
    config: Config, args: argparse.Namespace, stream: Stream, base: Baselines
) -> Iterator[Night]:
    """Every night's `retrain run` and its scores, one at a time (yielded as they come)."""
    for night in range(args.nights):
        source = str(stream.sources[night])
        command = retrain_command(
            "run", "--source", source, "--trials", str(args.trials),
            "--budget", f"{args.budget:g}", "--no-serve",
        )  # fmt: skip
        wall = run_logged(command, config.env, config.folder / f"run_{night:03d}.log")
        yield score_night(config, night, wall, stream, base)


def run_config(
    name: str, work: Path, args: argparse.Namespace, stream: Stream, base: Baselines
) -> Outcome:
    """One configuration from a fresh folder; failures are reported in the outcome."""
    outcome = Outcome(name)
    missing = missing_settings(CONFIGS[name])
    if missing:
        outcome.failure = (
            f"skipped: this checkout's Settings has no {', '.join(missing)} (an unknown "
            "RETRAIN_* variable is ignored, so it would silently run as another configuration)"
        )
        return outcome
    config = None
    try:
        config, fixes = prepare_config(name, work, stream)
        for fix in fixes:
            print(f"[{name}] schema fixed: {fix}")
        for night in run_nights(config, args, stream, base):
            print(f"[{name}] {night_line(night)}")
            outcome.nights.append(night)
    except (CommandFailed, BadInput, StageFailed, MlflowException, SystemExit) as err:
        outcome.failure = f"failed: {err}"
    finally:
        if config is not None:
            subprocess.run(retrain_command("serve", "stop"), env=config.env, capture_output=True)
    return outcome


# -- output --------------------------------------------------------------------------------


def cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def night_line(n: Night) -> str:
    return (
        f"night {n.index}: run {n.wall:.1f} s, champion {n.champion}, logged {cell(n.logged)}, "
        f"expected {cell(n.expected)}, realized {cell(n.realized)}, last {WINDOW} "
        f"{cell(n.last)}, all {cell(n.every)}, window {n.window}"
    )


def table_row(n: Night) -> str:
    cells = (
        str(n.index), f"{n.rows_so_far:,}", cell(n.logged), cell(n.expected), cell(n.realized),
        cell(n.last), cell(n.every), f"{n.wall:.1f}", n.champion, n.window, cell(n.oracle),
    )  # fmt: skip
    return "| " + " | ".join(cells) + " |"


def mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def summary_lines(nights: list[Night]) -> list[str]:
    """The means over the nights that have a champion, and the cost ratio."""
    scored = [n for n in nights if n.logged is not None and n.realized is not None]
    gaps = [n.logged - n.realized for n in scored]
    misses = [n.expected - n.realized for n in scored if n.expected is not None]
    ratio = "-"
    if len(nights) >= WINDOW:
        ratio = f"{nights[-1].wall / nights[WINDOW - 1].wall:.2f}"
    return [
        f"- mean(logged - realized): {cell(mean(gaps))}",
        f"- mean |logged - realized|: {cell(mean([abs(g) for g in gaps]))}",
        f"- mean(expected - realized): {cell(mean(misses))}",
        f"- mean |expected - realized|: {cell(mean([abs(m) for m in misses]))}",
        f"- mean realized: {cell(mean([n.realized for n in scored]))}",
        f"- mean default LightGBM, last {WINDOW} nights: {cell(mean([n.last for n in nights]))}",
        f"- mean default LightGBM, all nights: {cell(mean([n.every for n in nights]))}",
        f"- mean(realized - last-{WINDOW} baseline): "
        f"{cell(mean([n.realized - n.last for n in scored]))}",
        f"- cost ratio, run wall of night {nights[-1].index if nights else '-'} / night "
        f"{WINDOW - 1} (first full {WINDOW}-night window): {ratio}",
    ]


def print_outcome(outcome: Outcome, settings: str) -> None:
    print(f"\n### {outcome.name} ({settings})\n")
    if outcome.nights:
        print("| " + " | ".join(COLUMNS) + " |")
        print("|" + "---|" * len(COLUMNS))
        for night in outcome.nights:
            print(table_row(night))
        print()
        print("\n".join(summary_lines(outcome.nights)))
    if outcome.failure:
        print(f"\n{outcome.name} {outcome.failure}")


# -- main ----------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config", action="append", choices=list(CONFIGS), help="repeatable; default: all"
    )
    parser.add_argument("--nights", type=int, default=8, help="nights run (one more is written)")
    parser.add_argument("--rows", type=int, default=20_000, help="rows per night")
    parser.add_argument("--trials", type=int, default=8, help="Optuna trials per night")
    parser.add_argument("--budget", type=float, default=600.0, help="tuning seconds per night")
    parser.add_argument("--seed", type=int, default=7, help="seed of the stream")
    parser.add_argument("--keep", type=Path, help="work in this new folder and keep it (logs)")
    return parser.parse_args()


def print_stream(stream: Stream, frames: list[pd.DataFrame]) -> None:
    shares = ", ".join(f"{(f[TARGET] == POSITIVE).mean():.2f}" for f in frames)
    oracle = ", ".join(f"{score:.3f}" for score in stream.oracle)
    print(f"stream: {len(frames)} nights of {stream.rows:,} rows in {stream.sources[0].parent}")
    print(f"  share yes per night: {shares}\n  oracle AUROC per night: {oracle}")


def main() -> None:
    args = parse_args()
    names = list(dict.fromkeys(args.config or CONFIGS))
    if args.nights < 1:
        raise SystemExit("--nights must be at least 1")
    outcomes = []
    with work_folder(args.keep, "bench-drift-") as work:
        stream = write_stream(work / "data", args.nights, args.rows, args.seed)
        base = Baselines(stream.frames())
        print_stream(stream, base.frames)
        for name in names:
            outcomes.append(run_config(name, work, args, stream, base))
    run = f"{args.nights} nights x {args.rows:,} rows, {args.trials} trials"
    print(f"\n{run}, budget {args.budget:g} s")
    for outcome in outcomes:
        settings = " ".join(f"{k}={v}" for k, v in CONFIGS[outcome.name].items())
        print_outcome(outcome, settings)


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)  # progress shows when piped
    main()

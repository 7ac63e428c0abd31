"""Bring-your-own-table on tables that ship inside packages, against default boosted models.

    ./dev python -m bench.datasets [--trials 20] [--family random_forest] [--only penguins]

Each table (scikit-learn's breast cancer and wine, palmerpenguins from PyPI, and a generated
customer table with ids, categoricals and missing values) goes the way a user's CSV goes: written
as a CSV file, `retrain schema infer`, ingest, clean, tune (Optuna + MLflow, registered as the
challenger) and promote, in a fresh home with SQLite stores. Then, on the same training and
holdout rows, a default-parameter LightGBM and HistGradientBoosting in the same Pipeline
preprocessing. Prints per table: rows, feature kinds, the champion's family and holdout AUROC
beside the two defaults (the same AUROC function), and the tuning wall time.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import optuna
import pandas as pd

from retrain.config.settings import load_settings
from retrain.data import clean, ingest
from retrain.data.infer_schema import InferRequest, infer_from_csv
from retrain.data.split import dataset_of
from retrain.io import store, tracking
from retrain.promotion import promote
from retrain.promotion.rules import PromotionRules
from retrain.training.families import (
    build_model,
    fit_model,
    predict_aligned,
    prepare_features,
    resolve_families,
    score_proba,
)
from retrain.training.tuning import TuneConfig, tune_and_register


def breast_cancer() -> tuple[pd.DataFrame, InferRequest]:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True)
    frame = data.frame.copy()
    frame["target"] = data.target_names[data.target]
    return frame, InferRequest(target="target", positive_class="malignant")


def wine() -> tuple[pd.DataFrame, InferRequest]:
    from sklearn.datasets import load_wine

    data = load_wine(as_frame=True)
    frame = data.frame.copy()
    frame["target"] = data.target_names[data.target]
    return frame, InferRequest(target="target")


def penguins() -> tuple[pd.DataFrame, InferRequest]:
    from palmerpenguins import load_penguins

    return load_penguins(), InferRequest(target="species")


def customers(rows: int = 5_000) -> tuple[pd.DataFrame, InferRequest]:
    """A churn table: an id, a sign-up date, numbers and categories with 2 % missing cells."""
    rng = np.random.default_rng(7)
    plan = rng.choice(["basic", "plus", "premium"], rows, p=[0.6, 0.3, 0.1])
    region = rng.choice([f"r{i}" for i in range(12)], rows)
    tenure = rng.integers(1, 120, rows)
    spend = rng.gamma(2.0, 30.0, rows)
    tickets = rng.poisson(1.5, rows)
    logit = -2 + 0.03 * tickets * 10 - 0.02 * tenure + (plan == "basic") * 0.8 + spend / 150
    frame = pd.DataFrame(
        {
            "customer_id": [f"c{i:07d}" for i in range(rows)],
            "signed_up": pd.Timestamp("2020-01-01") + pd.to_timedelta(tenure * 30, unit="D"),
            "plan": plan,
            "region": region,
            "tenure_months": tenure,
            "monthly_spend": spend.round(2),
            "support_tickets": tickets,
            "churned": np.where(rng.random(rows) < 1 / (1 + np.exp(-logit)), "yes", "no"),
        }
    )
    for column in ("plan", "region", "monthly_spend", "support_tickets"):
        frame.loc[rng.random(rows) < 0.02, column] = None
    return frame, InferRequest(
        target="churned", positive_class="yes", ids=("customer_id",), timestamps=("signed_up",)
    )


TABLES: dict[str, Callable[[], tuple[pd.DataFrame, InferRequest]]] = {
    "breast_cancer": breast_cancer,
    "wine": wine,
    "penguins": penguins,
    "customers": customers,
}


def prepare_home(work: Path, name: str, frame: pd.DataFrame, request: InferRequest) -> None:
    """The table as a CSV file and its inferred schema, wired up through the environment."""
    source = work / f"{name}.csv"
    frame.to_csv(source, index=False, lineterminator="\n")
    schema = work / f"{name}.yaml"
    schema.write_text(infer_from_csv(source, request))
    os.environ.update(
        {
            "RETRAIN_HOME": str(work / "home"),
            "RETRAIN_SCHEMA": str(schema),
            "RETRAIN_SOURCE": str(source),
            "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
        }
    )
    for variable in ("RETRAIN_DB_URL", "RETRAIN_DATASET", "RETRAIN_MODEL_NAME"):
        os.environ.pop(variable, None)


def run_pipeline(trials: int, family: str | None) -> tuple[object, float, object]:
    """Ingest, clean, tune and promote on the configured table; (data, tune seconds, report)."""
    settings = load_settings(family=family)
    engine, tables = store.open_dataset(settings)
    schema = settings.load_schema()
    loaded = ingest.load_file(engine, tables, Path(settings.source), settings.encoding)
    clean.clean_batch(engine, tables, schema, loaded.batch_id, None)
    client = tracking.make_client(settings.tracking_uri)
    families, _ = resolve_families(settings.families)
    config = TuneConfig(trials=trials, families=families, seed=settings.seed)
    started = time.perf_counter()
    report = tune_and_register(engine, tables, client, settings, config)
    seconds = time.perf_counter() - started
    promote.promote_if_better(engine, tables, client, settings, PromotionRules())
    with engine.connect() as conn:
        data = dataset_of(store.read_cleaned(conn, tables), schema)
    return data, seconds, report


def default_auroc(family: str, data) -> float:
    """Holdout AUROC of the family's default parameters on the same training rows."""
    model = build_model(family, {}, data.kinds, seed=42)
    x = prepare_features(data.train, data.kinds)
    fitted = fit_model(model, x, data.labels(data.train), data.kinds)
    classes = data.known_classes
    proba = predict_aligned(fitted, prepare_features(data.holdout, data.kinds), classes)
    return score_proba(classes, data.labels(data.holdout), proba, classes, data.positive)[0]


def describe_kinds(kinds: dict[str, str]) -> str:
    counts = pd.Series(list(kinds.values())).value_counts()
    return " ".join(f"{n}{k[:3]}" for k, n in counts.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--family", default=None, help="default: RETRAIN_FAMILY's default")
    parser.add_argument("--only", action="append", choices=sorted(TABLES))
    args = parser.parse_args()
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    warnings.filterwarnings("ignore")
    print(
        f"{'table':<14}{'rows':>7} {'features':<16}{'champion':<15}{'AUROC':>8}"
        f"{'LGBM dflt':>10}{'HGB dflt':>10}{'tune s':>8}"
    )
    for name in args.only or list(TABLES):
        frame, request = TABLES[name]()
        with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
            prepare_home(Path(tmp), name, frame, request)
            data, seconds, report = run_pipeline(args.trials, args.family)
            lgbm, hgb = default_auroc("lightgbm", data), default_auroc("hgb", data)
        rows = len(data.train) + len(data.holdout)
        print(
            f"{name:<14}{rows:>7} {describe_kinds(data.kinds):<16}{report.family:<15}"
            f"{report.test_auroc:>8.4f}{lgbm:>10.4f}{hgb:>10.4f}{seconds:>8.1f}"
        )


if __name__ == "__main__":
    main()

"""Tuning against real stores: SQLite and MariaDB data stores, MLflow on SQLite in a temp dir."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from retrain.config.dataset_schema import load_dataset_schema
from retrain.config.settings import load_settings
from retrain.data import clean, ingest
from retrain.data.split import holdout_mask
from retrain.errors import BadInput, StageFailed
from retrain.io import store, tracking
from retrain.training.tuning import TuneConfig, tune_and_register
from tests.integration.helpers import open_store, write_csv

pytestmark = [pytest.mark.integration, pytest.mark.slow]
IRIS = Path(__file__).parents[2] / "retrain/config/schemas/iris.yaml"


def load_and_clean(path: Path) -> None:
    engine, tables = open_store()
    report = ingest.load_file(engine, tables, path, "utf-8")
    clean.clean_batch(engine, tables, load_dataset_schema(IRIS), report.batch_id, 0.2)


def tune(trials: int = 3, parallel_folds: int = 2, workers: int = 1):
    settings = load_settings()
    engine, tables = open_store()
    client = tracking.make_client(settings.tracking_uri)
    config = TuneConfig(trials=trials, parallel_folds=parallel_folds, workers=workers)
    report = tune_and_register(engine, tables, client, settings, config, {"night": "1"})
    return report, client, settings


def iris_csv(folder: Path, name: str, every: int = 1, offset: int = 0) -> Path:
    from retrain.io.bundled_iris import write_bundled_iris

    lines = write_bundled_iris(folder / "bundled").read_text().splitlines()
    return write_csv(folder, name, lines[1 + offset :: every], header=lines[0])


def test_one_parent_run_per_study_and_a_tagged_challenger(env: dict, tmp_path: Path) -> None:
    load_and_clean(iris_csv(tmp_path, "iris.csv"))
    report, client, settings = tune(trials=3)
    experiment = client.get_experiment_by_name(settings.experiment)
    runs = client.search_runs([experiment.experiment_id])
    children = [r for r in runs if r.data.tags.get(MLFLOW_PARENT_RUN_ID) == report.parent_run_id]
    parent = client.get_run(report.parent_run_id)
    assert len(runs) == 4 and len(children) == 3
    assert parent.data.tags["retrain.stage"] == "tune" and parent.data.tags["night"] == "1"
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    assert parent.info.run_name.startswith(f"{env['RETRAIN_DATASET']}-{today}-")
    assert parent.data.tags["mlflow.source.type"] == "JOB" and parent.data.tags["mlflow.user"]
    assert parent.data.tags["retrain.code_version"].startswith("retrain==")
    assert parent.data.params["trials"] == "3" and parent.data.params["objective"] == "auroc"
    assert parent.data.params["families"] == "random_forest" and "seed" in parent.data.params
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert {"best_cv_auroc", "test_auroc", "test_accuracy", "test_brier", "test_ece"} <= set(
        parent.data.metrics
    )
    assert parent.data.params["best_calibration"] in ("sigmoid", "isotonic")
    assert all(
        {"mean_auroc", "mean_accuracy", "std_auroc"} <= set(c.data.metrics) for c in children
    )
    version = client.get_model_version_by_alias(settings.model_name, "challenger")
    assert str(version.version) == report.version == "1"
    assert version.tags["validation_status"] == "pending"
    assert version.tags["batch_ids"] and version.tags["code_version"].startswith("retrain==")
    assert 0.9 <= report.test_auroc <= 1.0
    inputs = {d.dataset.name: d for d in parent.inputs.dataset_inputs}
    assert set(inputs) == {"training", "holdout"}
    holdout = {t.key: t.value for t in inputs["holdout"].tags}
    training = {t.key: t.value for t in inputs["training"].tags}
    assert holdout["retrain.table"] == f"{env['RETRAIN_DATASET']}_cleaned"
    assert holdout["retrain.query"].startswith("SELECT * FROM ")
    assert training["retrain.split"] == f"not ({holdout['retrain.split']})"
    assert int(training["retrain.rows"]) + int(holdout["retrain.rows"]) == 150
    assert "password" not in holdout["retrain.store"] and "@" not in holdout["retrain.store"]
    snapshot = {a.path for a in client.list_artifacts(report.parent_run_id, "data")}
    assert snapshot == {"data/training.csv", "data/holdout.csv"}
    plots = {a.path for a in client.list_artifacts(report.parent_run_id, "plots")}
    assert plots == {
        f"plots/{name}.png"
        for name in ("confusion_matrix", "roc_curves", "reliability", "optuna_history",
                     "optuna_param_importances")
    }  # fmt: skip
    curve = client.get_metric_history(report.parent_run_id, "learning_curve_auroc")
    trees = int(report.params["n_estimators"])
    assert len(curve) >= 10 and max(p.step for p in curve) == trees
    # the curve follows the Pipeline before calibration; the test AUROC is the calibrated one's
    assert curve[-1].value == pytest.approx(parent.data.metrics["test_auroc_uncalibrated"])


def test_same_data_and_seed_give_the_same_best_params(env: dict, tmp_path: Path) -> None:
    load_and_clean(iris_csv(tmp_path, "iris.csv"))
    first, _, _ = tune(trials=3)
    second, _, _ = tune(trials=3, parallel_folds=1)
    assert first.params == second.params and first.best_cv == second.best_cv
    assert second.version == "2"


def test_the_holdout_keeps_its_rows_when_new_data_arrives(env: dict, tmp_path: Path) -> None:
    load_and_clean(iris_csv(tmp_path, "night1.csv", every=2))
    engine, tables = open_store()
    with engine.connect() as conn:
        night1 = store.read_cleaned(conn, tables)
    load_and_clean(iris_csv(tmp_path, "night2.csv", every=2, offset=1))
    with engine.connect() as conn:
        night2 = store.read_cleaned(conn, tables)
    side1 = dict(zip(night1["row_hash"], holdout_mask(night1["row_hash"]), strict=True))
    side2 = dict(zip(night2["row_hash"], holdout_mask(night2["row_hash"]), strict=True))
    assert len(night2) > len(night1)
    assert all(side2[h] == side for h, side in side1.items())
    assert 0.1 < sum(side2.values()) / len(side2) < 0.3


def test_two_workers_share_one_study_and_one_parent_run(env: dict, tmp_path: Path) -> None:
    load_and_clean(iris_csv(tmp_path, "iris.csv"))
    if env["RETRAIN_DB_URL"].startswith("sqlite"):
        with pytest.raises(BadInput, match="--workers 2 needs a shared Optuna storage"):
            tune(trials=4, workers=2)
        return
    report, client, settings = tune(trials=5, workers=2)
    parent = client.get_run(report.parent_run_id)
    study = optuna.load_study(
        study_name=parent.data.tags["optuna.study_name"], storage=settings.database_url
    )
    assert sorted(t.number for t in study.trials) == [0, 1, 2, 3, 4] and report.trials == 5
    assert {t.state for t in study.trials} == {optuna.trial.TrialState.COMPLETE}
    runs = client.search_runs([parent.info.experiment_id])
    children = [r for r in runs if r.data.tags.get(MLFLOW_PARENT_RUN_ID) == parent.info.run_id]
    assert len(runs) == 6
    assert sorted(int(c.data.tags["optuna.trial"]) for c in children) == [0, 1, 2, 3, 4]
    assert report.best_cv == pytest.approx(study.best_trial.user_attrs["mean_auroc"])


def test_a_spent_budget_fails_the_stage_and_snapshots_respect_their_cap(
    env: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_and_clean(iris_csv(tmp_path, "iris.csv"))
    settings = load_settings()
    engine, tables = open_store()
    client = tracking.make_client(settings.tracking_uri)
    with pytest.raises(StageFailed, match="no trial completed within the tuning budget"):
        tune_and_register(engine, tables, client, settings, TuneConfig(trials=3, budget=1e-6))
    (failed,) = client.search_runs(
        [client.get_experiment_by_name(settings.experiment).experiment_id]
    )
    assert failed.info.status == "FAILED" and failed.data.metrics["trials_started"] == 0
    monkeypatch.setenv("RETRAIN_SNAPSHOT_MAX_BYTES", "4000")
    report, client, _ = tune(trials=2)
    parent = client.get_run(report.parent_run_id)
    assert parent.data.metrics["trials_completed"] == 2 and "budget_seconds" in parent.data.params
    assert "budget_seconds" not in parent.data.metrics  # one name per quantity: a param
    assert {d.dataset.name for d in parent.inputs.dataset_inputs} == {"training", "holdout"}
    snapshot = {a.path for a in client.list_artifacts(report.parent_run_id, "data")}
    assert snapshot == {"data/holdout.csv"}  # the ~8 kB of training rows are over the cap


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_table_with_a_timestamp_is_judged_on_its_newest_rows(
    env: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RETRAIN_HOLDOUT=auto with a schema that names a timestamp: the holdout is the newest
    rows (widened to 200 rows here, and said), logged as the tuning run's params and as the
    split of its dataset inputs; the promotion is judged on the same rows."""
    import numpy as np

    from retrain.data.infer_schema import InferRequest, infer_from_csv
    from retrain.model import logged_model
    from retrain.promotion.promote import promote_if_better
    from retrain.promotion.rules import PromotionRules
    from retrain.training.tuning import tune_config_of

    rng = np.random.default_rng(3)
    x = rng.normal(size=600)
    lines = [f"{i},2026-11-{1 + i // 20:02d},{v:.4f},{'yes' if v + rng.normal() > 0 else 'no'}"
             for i, v in enumerate(x)]  # fmt: skip
    source = write_csv(tmp_path, "visits.csv", lines, header="visit_id,seen_at,x,converted")
    schema = tmp_path / "visits.yaml"
    request = InferRequest("converted", "yes", ids=("visit_id",), timestamps=("seen_at",))
    schema.write_text(infer_from_csv(source, request))
    monkeypatch.setenv("RETRAIN_SCHEMA", str(schema))
    settings = load_settings()
    engine, tables = open_store()
    batch = ingest.load_file(engine, tables, source, "utf-8").batch_id
    clean.clean_batch(engine, tables, settings.load_schema(), batch, 0.2)
    client = tracking.make_client(settings.tracking_uri)
    config = replace(tune_config_of(settings, ("random_forest",)), trials=2, parallel_folds=1)
    report = tune_and_register(engine, tables, client, settings, config)
    params = client.get_run(report.parent_run_id).data.params
    assert params["holdout"] == "time"
    assert (
        params["holdout_rule"].startswith("seen_at >= 2026-11-21")
        and "widened" in params["holdout_rule"]
    )
    inputs = {d.dataset.name: d for d in client.get_run(report.parent_run_id).inputs.dataset_inputs}
    split = {t.key: t.value for t in inputs["holdout"].tags}["retrain.split"]
    assert split == params["holdout_rule"]
    assert {t.key: t.value for t in inputs["holdout"].tags}["retrain.rows"] == "200"
    # judged, then refit on the holdout rows too: served that way, promoted as judged
    assert client.get_run(report.parent_run_id).data.tags["retrain.refit"] == "window+holdout"
    version = client.get_model_version(settings.model_name, report.version)
    assert version.tags["retrain.refit"] == "window+holdout"
    served, judged = (
        logged_model.load_version(settings.tracking_uri, settings.model_name, report.version, j)
        for j in (False, True)
    )
    rows = pd.read_csv(source).tail(200)  # the newest rows: the holdout
    assert not np.allclose(served.predict_proba(rows), judged.predict_proba(rows))
    promoted = promote_if_better(engine, tables, client, settings, PromotionRules())
    assert promoted.promoted and promoted.challenger_auroc == pytest.approx(report.test_auroc)
    # a training window of 10 days: only its rows are read, its newest part is the holdout
    monkeypatch.setenv("RETRAIN_TRAIN_WINDOW_DAYS", "10")
    windowed = tune_and_register(engine, tables, client, load_settings(), config)
    params = client.get_run(windowed.parent_run_id).data.params
    assert params["train_window"] == "last 10 days (by seen_at): 200 of 600 cleaned rows"
    inputs = {
        d.dataset.name: d for d in client.get_run(windowed.parent_run_id).inputs.dataset_inputs
    }
    rows = {name: {t.key: t.value for t in d.tags}["retrain.rows"] for name, d in inputs.items()}
    assert rows == {"training": "100", "holdout": "100"}  # widened to half the window
    check_the_promise_meets_the_next_rows(tmp_path, monkeypatch, report, rng)


def check_the_promise_meets_the_next_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, first: Any, rng: Any
) -> None:
    """The champion (version 1, fit on every row up to 2026-11-30) is scored on the next
    batch's rows, all newer; the new challenger's expected AUROC is its holdout AUROC less
    by how much version 1's holdout AUROC overstated that score."""
    import numpy as np

    from retrain.data.split import align_proba
    from retrain.model import logged_model
    from retrain.training.families import auroc
    from retrain.training.tuning import tune_config_of

    monkeypatch.delenv("RETRAIN_TRAIN_WINDOW_DAYS")
    settings = load_settings()
    engine, tables = open_store()
    client = tracking.make_client(settings.tracking_uri)
    first_run = client.get_run(first.parent_run_id).data
    assert first_run.metrics["expected_auroc"] == first.test_auroc  # no champion to check yet
    assert first_run.params["expected_auroc_basis"].startswith("the holdout AUROC: no champion")
    champion = client.get_model_version(settings.model_name, first.version)
    assert champion.tags["retrain.trained_through"] == "2026-11-30T00:00:00+00:00"
    x = rng.normal(size=300)
    labels = np.where(x + rng.normal(size=300) > 0, "yes", "no")
    lines = [f"{1000 + i},2026-12-{1 + i // 20:02d},{v:.4f},{label}"
             for i, (v, label) in enumerate(zip(x, labels, strict=True))]  # fmt: skip
    newer = write_csv(tmp_path, "visits-december.csv", lines, header="visit_id,seen_at,x,converted")
    batch = ingest.load_file(engine, tables, newer, "utf-8").batch_id
    clean.clean_batch(engine, tables, settings.load_schema(), batch, 0.2)
    config = replace(tune_config_of(settings, ("random_forest",)), trials=2, parallel_folds=1)
    report = tune_and_register(engine, tables, client, settings, config)
    served = logged_model.load_version(settings.tracking_uri, settings.model_name, first.version)
    rows = pd.read_csv(newer)
    proba = align_proba(served.predict_proba(rows), served.classes, np.array(["no", "yes"]))
    by_hand = auroc(rows["converted"].to_numpy(), proba, np.array(["no", "yes"]), "yes")
    metrics = client.get_run(report.parent_run_id).data.metrics
    assert metrics["champion_unseen_auroc"] == pytest.approx(by_hand, abs=1e-9)
    gap = first.test_auroc - by_hand
    assert metrics["champion_holdout_gap"] == pytest.approx(gap, abs=1e-9)
    assert metrics["expected_auroc"] == pytest.approx(report.test_auroc - gap, abs=1e-9)
    assert f"{metrics['expected_auroc']:.4f} expected on tomorrow's rows" in report.describe()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_batch_order_stands_in_for_time_when_asked(
    env: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RETRAIN_HOLDOUT=batch on a table without a timestamp: the newest batch is the
    holdout, tuning goes forward in batch order, and the rule says so."""
    from retrain.training.tuning import tune_config_of

    monkeypatch.setenv("RETRAIN_HOLDOUT", "batch")
    load_and_clean(iris_csv(tmp_path, "older.csv", every=3, offset=0))
    settings = load_settings()
    engine, tables = open_store()
    client = tracking.make_client(settings.tracking_uri)
    config = replace(tune_config_of(settings, ("random_forest",)), trials=2, parallel_folds=1)
    assert config.forward
    with pytest.raises(StageFailed, match="every row shares the newest batch_loaded_at"):
        tune_and_register(engine, tables, client, settings, config)  # one batch: no past
    for name, offset in (("middle.csv", 1), ("newest.csv", 2)):
        time.sleep(1.05)  # load times have seconds: batches of one second tie
        load_and_clean(iris_csv(tmp_path, name, every=3, offset=offset))
    report = tune_and_register(engine, tables, client, settings, config)
    params = client.get_run(report.parent_run_id).data.params
    assert params["holdout_rule"].startswith("batch_loaded_at >= ")
    assert params["cv"] == "forward in time"
    inputs = {d.dataset.name: d for d in client.get_run(report.parent_run_id).inputs.dataset_inputs}
    rows = {name: {t.key: t.value for t in d.tags}["retrain.rows"] for name, d in inputs.items()}
    # the newest fifth (30 rows) widens toward 200 rows (at most half: 75), cut between
    # batches: the newest two batches judge, the oldest trains
    assert rows == {"training": "50", "holdout": "100"} and "widened" in params["holdout_rule"]

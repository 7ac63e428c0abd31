"""The labels table and the prediction log's new columns on both stores (SQLite, MariaDB): a
log table an older release made migrates without losing a row, late and repeated labels keep
the latest, and the join counts answers and judges only the labelled ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from sqlalchemy import Column, DateTime, Float, Integer, MetaData, String, Table, Text, select

from retrain.io import labels
from retrain.io.engines import make_engine
from retrain.io.prediction_log import Record, open_table, predictions_table, write_rows

pytestmark = pytest.mark.integration
DAY = datetime(2026, 12, 5, 9, 30)


def old_log_table(name: str) -> Table:
    """`<dataset>_predictions` as release 0.2 made it (no row key, no probabilities)."""
    return Table(
        name, MetaData(),
        Column("id", Integer, primary_key=True), Column("request_id", String(36)),
        Column("predicted_at", DateTime), Column("model_version", String(32)),
        Column("inputs", Text), Column("prediction", String(255)), Column("latency_ms", Float),
    )  # fmt: skip


def test_an_old_log_migrates_and_late_labels_join_the_answers(db_url: str, dataset: str) -> None:
    engine = make_engine(db_url)
    old = old_log_table(f"{dataset}_predictions")
    with engine.begin() as conn:
        old.create(conn)
        conn.execute(old.insert(), [{"request_id": "r0", "predicted_at": DAY,
                                     "model_version": "1", "inputs": "{}", "prediction": "no",
                                     "latency_ms": 1.0}])  # fmt: skip
    log = predictions_table(dataset)
    assert open_table(engine, log) and open_table(engine, log)  # safe to repeat
    frame = pd.DataFrame({"id": ["a", "b", "c"]})
    proba = {"no": [0.9, 0.2, 0.6], "yes": [0.1, 0.8, 0.4]}
    record = Record("r1", DAY, frame, ["no", "yes", "no"], 2.0, ["a", "b", "c"], proba)
    write_rows(engine, log, [record], "2")
    with engine.connect() as conn:
        rows = conn.execute(select(log.c.request_id, log.c.row_key).order_by(log.c.id)).all()
    assert [tuple(r) for r in rows] == [("r0", None), ("r1", "a"), ("r1", "b"), ("r1", "c")]

    first = pd.DataFrame({"key": ["a", "b"], "label": ["yes", "yes"],
                          "labelled_at": [DAY, DAY]})  # fmt: skip
    assert labels.write_labels(engine, dataset, first, DAY) == labels.LabelsWritten(2, 0, 0, 0)
    times = [datetime(2026, 12, 6), datetime(2026, 12, 1), DAY]  # newer, older, new key
    later = pd.DataFrame({"key": ["a", "b", "zz"], "label": ["no", "no", "yes"],
                          "labelled_at": times})  # fmt: skip
    written = labels.write_labels(engine, dataset, later, DAY)
    assert written == labels.LabelsWritten(new=1, replaced=1, stale=1, unmatched=1)
    joined = labels.read_labelled_answers(engine, dataset, datetime(2026, 12, 5))
    assert sorted((r[1], r[3]) for r in joined) == [("2", "no"), ("2", "yes")]  # a now no, b yes
    counts = labels.count_answers(engine, dataset, datetime(2026, 12, 5))
    assert sorted(counts) == [("2026-12-05", "1", 1), ("2026-12-05", "2", 3)]
    # a one-row request sent without ids is labelled by its request_id
    lone = Record(
        "r9", DAY, pd.DataFrame({"x": [1]}), ["no"], 1.0, None, {"no": [0.6], "yes": [0.4]}
    )
    write_rows(engine, log, [lone], "2")
    by_request = pd.DataFrame({"key": ["r9"], "label": ["yes"], "labelled_at": [DAY]})
    assert labels.write_labels(engine, dataset, by_request, DAY).unmatched == 0
    joined = labels.read_labelled_answers(engine, dataset, datetime(2026, 12, 5))
    assert sorted(r[3] for r in joined) == ["no", "yes", "yes"]


def test_a_new_batch_labels_the_answers_given_for_its_ids(
    env: dict, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The nightly step: a batch's cleaned rows carry their labels; they go into the labels
    table, so answers the model gave earlier for those ids are judged."""
    from retrain.config.settings import load_settings
    from retrain.data import clean, ingest
    from retrain.data.infer_schema import InferRequest, infer_from_csv
    from retrain.monitoring import realized
    from tests.integration.helpers import open_store, write_csv

    lines = [f"c{i},{i % 7 * 1.5},{'yes' if i % 3 else 'no'}" for i in range(40)]
    source = write_csv(tmp_path, "visits.csv", lines, header="customer,spend,churned")
    schema = tmp_path / "visits.yaml"
    schema.write_text(infer_from_csv(source, InferRequest("churned", "yes", ids=("customer",))))
    monkeypatch.setenv("RETRAIN_SCHEMA", str(schema))
    settings = load_settings()
    engine, tables = open_store()
    batch = ingest.load_file(engine, tables, source, "utf-8").batch_id
    clean.clean_batch(engine, tables, settings.load_schema(), batch, 0.2)
    log = predictions_table(settings.dataset)
    answered = Record("r", DAY, pd.DataFrame({"customer": ["c1", "c2"]}), ["yes", "no"], 1.0,
                      ["c1", "c2"], {"no": [0.2, 0.7], "yes": [0.8, 0.3]})  # fmt: skip
    write_rows(engine, log, [answered], "1")
    loaded = realized.label_batches(settings, [batch])
    assert (loaded.written.new, loaded.written.unmatched) == (40, 38)
    joined = labels.read_labelled_answers(engine, settings.dataset, DAY.replace(hour=0))
    assert sorted(r[3] for r in joined) == ["yes", "yes"]  # c1 and c2: i % 3 is not 0
    assert realized.label_batches(settings, []) is None  # nothing new: nothing to do


def test_a_model_below_its_promise_on_two_labelled_days_raises_degraded(
    prefect_api: str, receiver: tuple, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two days of 300 answers each whose labels say the model ranks worse than the holdout
    AUROC it logged: the performance flow says degraded (2 of the last 5 counted days) and
    sends the `degraded` alert."""
    import numpy as np

    from flows.performance import performance
    from retrain.config.settings import load_settings
    from retrain.io import tracking
    from tests.support.fish import MODEL, log_and_register

    tracking_uri, version = log_and_register(tmp_path)
    client = tracking.make_client(tracking_uri)
    run_id = client.get_model_version(MODEL, version).run_id
    client.log_metric(run_id, "test_auroc", 0.95)  # the promise
    url, received = receiver
    values = {"MLFLOW_TRACKING_URI": tracking_uri, "RETRAIN_MODEL_NAME": MODEL,
              "RETRAIN_DATASET": "fishperf", "RETRAIN_ALERT_URL": url}  # fmt: skip
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    engine = make_engine(settings.database_url)
    rng = np.random.default_rng(0)
    now = datetime.now(UTC).replace(tzinfo=None)
    for back in (2, 1):  # two days ago, yesterday
        truth = rng.choice(["bream", "perch", "pike"], 300)
        proba = rng.dirichlet([1, 1, 1], 300)  # a model that knows nothing: AUROC ~0.5
        keys = [f"d{back}-{i}" for i in range(300)]
        by_class = {c: proba[:, i] for i, c in enumerate(["bream", "perch", "pike"])}
        record = Record(f"r{back}", now - timedelta(days=back), pd.DataFrame({"id": keys}),
                        list(truth), 1.0, keys, by_class)  # fmt: skip
        write_rows(engine, predictions_table("fishperf"), [record], version)
        labels.write_labels(engine, "fishperf", pd.DataFrame(
            {"key": keys, "label": truth, "labelled_at": now}), now)  # fmt: skip
    verdict = performance(days=3)
    assert verdict.degraded and len(verdict.below) == 2
    assert all(d.auroc < 0.95 - 0.02 for d in verdict.below)
    [alert] = [r for r in received if r["kind"] == "degraded"]
    assert alert["stage"] == "performance" and alert["challenger_version"] == version

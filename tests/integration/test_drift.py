"""Drift of new batches through the real drift flow on a real Prefect server, the store on
SQLite and MLflow on SQLite: a batch shifted on purpose drifts (its row in `<dataset>_batches`,
an MLflow run with the HTML report, the `drift` artifact, the `retrain.data.drifted` event);
a fresh sample of the same rows does not."""

from __future__ import annotations

import numpy as np
import pytest
from prefect import get_client
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
from sklearn.datasets import load_iris
from sqlalchemy import text

from flows.drift import drift
from retrain.config.settings import load_settings
from retrain.io import tracking
from tests.integration.helpers import open_store, write_csv
from tests.integration.test_tune import load_and_clean
from tests.support.services import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def iris_rows(seed: int, petal_shift: float = 0.0) -> list[str]:
    """A seeded resample of iris, petal lengths moved by `petal_shift` cm."""
    iris = load_iris(as_frame=True)
    frame = iris.frame.sample(150, replace=True, random_state=seed)
    frame["petal length (cm)"] += petal_shift
    labels = np.asarray(iris.target_names)[frame.pop("target").to_numpy()]
    return [",".join(f"{v:g}" for v in row) + f",{label}" for row, label in
            zip(frame.to_numpy(), labels, strict=True)]  # fmt: skip


def drift_events(dataset: str) -> list:
    resource = EventResourceFilter(id=[f"retrain.dataset.{dataset}"])
    name = EventNameFilter(name=["retrain.data.drifted"])
    with get_client(sync_client=True) as client:
        return client.read_events(EventFilter(event=name, resource=resource), limit=50).events


def wait_for_drift_events(dataset: str, timeout: float = 30) -> list:
    """The dataset's drift events once the server has stored one (it flushes events every
    few seconds; a loaded machine takes longer); fails saying so at the deadline."""
    return wait_for(lambda: drift_events(dataset), timeout, f"a drift event about {dataset}")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_shifted_batch_drifts_and_a_fresh_sample_does_not(
    env: dict, prefect_api: str, tmp_path
) -> None:
    load_and_clean(write_csv(tmp_path, "night1.csv", iris_rows(1)))
    same = write_csv(tmp_path, "night2.csv", iris_rows(2))
    shifted = write_csv(tmp_path, "night3.csv", iris_rows(3, petal_shift=2.5))
    load_and_clean(same)
    (calm,) = drift()  # the latest cleaned batch: night 2, against night 1 (no champion yet)
    assert calm.report is not None and calm.report.drifted_columns == []
    load_and_clean(shifted)
    (moved,) = drift()
    assert moved.batch_id != calm.batch_id
    assert moved.report.drifted_columns == ["petal length (cm)"]
    assert moved.report.drift_share == 0.25

    engine, tables = open_store()
    with engine.connect() as conn:
        rows = dict(
            conn.execute(text(f"SELECT batch_id, drift_share FROM {tables.batches.name}")).all()
        )
    assert rows[moved.batch_id] == 0.25 and rows[calm.batch_id] == 0.0
    client = tracking.make_client(load_settings().tracking_uri)
    run = client.get_run(moved.run_id)
    assert run.info.run_name == f"drift-{moved.batch_id}"
    assert run.data.metrics["drift_share"] == 0.25
    assert {a.path for a in client.list_artifacts(moved.run_id)} == {
        "drift_report.html", "drift.json",
    }  # fmt: skip


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_above_the_threshold_the_drifted_event_is_emitted(
    env: dict, prefect_api: str, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETRAIN_DRIFT_THRESHOLD", "0.2")
    load_and_clean(write_csv(tmp_path, "night1.csv", iris_rows(1)))
    load_and_clean(write_csv(tmp_path, "night2.csv", iris_rows(2, petal_shift=2.5)))
    (moved,) = drift()
    assert moved.report.drift_share == 0.25
    events = wait_for_drift_events(env["RETRAIN_DATASET"])
    assert len(events) == 1
    assert events[0].payload["batch_id"] == moved.batch_id
    assert events[0].payload["drifted_columns"] == ["petal length (cm)"]


def drift_shares() -> dict[str, float | None]:
    engine, tables = open_store()
    with engine.connect() as conn:
        query = text(f"SELECT batch_id, drift_share FROM {tables.batches.name}")
        return dict(conn.execute(query).all())


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_clean_flow_records_each_batchs_drift_and_a_drift_error_never_fails_it(
    env: dict, prefect_api: str, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.clean import clean
    from flows.ingest import ingest

    monkeypatch.setenv("RETRAIN_DRIFT_THRESHOLD", "0.2")
    ingest(source=str(write_csv(tmp_path, "night1.csv", iris_rows(1))))
    (first,) = clean()
    ingest(source=str(write_csv(tmp_path, "night2.csv", iris_rows(2, petal_shift=2.5))))
    (second,) = clean(drift_origin="nightly")  # as the nightly run cleans
    shares = drift_shares()
    assert shares[first.batch_id] is None  # nothing earlier to compare it with
    assert shares[second.batch_id] == 0.25
    events = wait_for_drift_events(env["RETRAIN_DATASET"])
    assert [e.resource["retrain.origin"] for e in events] == ["nightly"]  # not drift-check

    blocker = tmp_path / "a-file"  # a tracking store that cannot open: drift fails for real
    blocker.write_text("")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{blocker}/mlflow.db")
    ingest(source=str(write_csv(tmp_path, "night3.csv", iris_rows(3, petal_shift=2.5))))
    (third,) = clean()
    assert third.cleaned == 150 and not third.quarantined
    assert drift_shares()[third.batch_id] is None

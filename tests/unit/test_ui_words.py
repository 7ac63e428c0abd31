"""What a person reads in the Prefect and MLflow UIs, on plain values: links that open
MLflow's classic view, URLs nothing touches, one name per metric, short table cells."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import optuna

from deployments.server_objects import with_every_field_required, without_worker_hints
from flows.hooks import compose_run_name, promotion_table
from flows.retrain import Stage
from retrain import links
from retrain.promotion.promote import PromotionReport
from retrain.promotion.rules import Decision
from retrain.serving.deploy import DeployReport
from retrain.training import pictures
from retrain.training.notes import tuning_note, version_note

URL = re.compile(r"https?://\S+")


def touched_urls(text: str) -> list[str]:
    """URLs whose last character is punctuation a log viewer would take into the link."""
    return [u for u in URL.findall(text) if u[-1] in ";,.:!?)]'\""]


def test_every_mlflow_link_opens_the_classic_machine_learning_view() -> None:
    base = links.mlflow_ui("sqlite:///x/mlflow.db", "http://127.0.0.1:5000/")
    assert base == "http://127.0.0.1:5000"
    assert links.mlflow_ui("sqlite:///x/mlflow.db") is None
    assert links.mlflow_ui("http://mlflow:5000/") == "http://mlflow:5000"
    pages = [
        links.experiment_url(base, "1"),
        links.run_url(base, "1", "abc"),
        links.version_url(base, "churn model", "3"),
    ]
    assert all(p.endswith("?workflowType=machine_learning") and "/#/" in p for p in pages)
    assert pages[2] == (
        "http://127.0.0.1:5000/#/models/churn%20model/versions/3?workflowType=machine_learning"
    )


def test_no_punctuation_touches_a_url_in_what_deploy_and_the_night_print() -> None:
    swapped = DeployReport("3", "2", "http://127.0.0.1:6391", 0.0, True, proxied=True,
                           supervisor=42)  # fmt: skip
    kept = DeployReport("3", "3", "http://127.0.0.1:6391", 0.0, False)
    for text in (swapped.describe(), kept.describe()):
        assert URL.search(text) and touched_urls(text) == [], text
    assert touched_urls("at http://x:1; then") == ["http://x:1;"]  # the check can fail


def test_runs_are_named_for_what_and_when() -> None:
    paris = timezone(timedelta(hours=1))
    when = datetime(2026, 12, 6, 2, 0, tzinfo=paris)
    assert (
        compose_run_name("retrain-nightly", "iris", when) == "retrain-nightly-iris-2026-12-06-0100"
    )
    assert compose_run_name("tune", "iris", datetime(2026, 1, 2, 3, 4, tzinfo=UTC)).startswith(
        "tune-iris-2026-01-02-0304"
    )


def test_notes_link_the_prefect_run_and_say_how_promotion_happens() -> None:
    tags = {"prefect.flow_run_id": "0123456789ab", "prefect.flow_run_url": "http://p/runs/1"}
    note = tuning_note(tags, 0.98765, 0.91234, "lightgbm", "4")
    assert "[`01234567`](http://p/runs/1)" in note and "0.9877 (`best_cv_auroc`)" in note
    assert "0.9123 (`test_auroc`)" in note and "version 4" in note
    described = version_note({}, None, "kept", ", against the champion's 0.9500")
    assert "no Prefect flow run" in described and "**Promotion: kept**" in described
    assert "Promote model" in described and "retrain promote" in described


def test_the_promotion_table_says_no_champion_yet_instead_of_none_n_a() -> None:
    report = PromotionReport(Decision(True, "first champion"), "1", None, 0.91, None, 1)
    table = promotion_table(report)
    assert "no champion yet" in table and "n/a" not in table and "none" not in table


def test_a_summary_cell_keeps_to_its_first_clause() -> None:
    outcome = (
        "tuned 20 trials: best CV AUROC 0.9912 (best_cv_auroc, lightgbm), holdout AUROC 0.9876 "
        "(test_auroc); registered version 1 as challenger"
    )
    long = Stage("tune", 12.0, outcome)
    assert len(long.headline) <= 60 and long.headline.endswith("...")
    assert Stage("clean", 1.0, "150 cleaned; 0 rejected").headline == "150 cleaned"


def test_plots_name_the_metric_the_classes_and_the_params_as_logged() -> None:
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(0))
    study.optimize(
        lambda t: (
            t.suggest_float("lgbm_num_leaves", 0, 1)
            + 0.1 * t.suggest_float("lgbm_learning_rate", 0, 1)
        ),
        n_trials=6,
    )
    figures = pictures.study_figures(study, "mean CV AUROC")
    assert figures["optuna_history.png"].axes[0].get_ylabel() == "mean CV AUROC"
    labels = [
        t.get_text() for t in figures["optuna_param_importances.png"].axes[0].get_yticklabels()
    ]
    assert sorted(labels) == ["learning_rate (lightgbm)", "num_leaves (lightgbm)"]
    roc = pictures.roc_figure(
        np.array(["no", "yes", "yes"]), np.array([[0.8, 0.2], [0.3, 0.7], [0.4, 0.6]]),
        np.array(["no", "yes"]),
    )  # fmt: skip
    ax = roc.axes[0]
    assert "Positive label" not in ax.get_xlabel() + ax.get_ylabel()
    assert ax.get_title() == "Holdout ROC: class yes vs the rest"


def test_the_bootstrap_prints_no_plain_worker_hint_and_requires_every_stored_field() -> None:
    output = (
        "Deployment 'retrain/retrain-nightly' successfully created\n"
        "To execute flow runs from these deployments, start a worker in a separate terminal\n"
        "        $ prefect worker start --pool 'retrain-pool'\n"
    )
    assert (
        without_worker_hints(output)
        == "Deployment 'retrain/retrain-nightly' successfully created\n"
    )
    schema = {"properties": {"trials": {"default": 20}, "source": {"default": ""}}}
    assert with_every_field_required(schema, {"trials": 3, "source": ""})["required"] == [
        "trials", "source",
    ]  # fmt: skip

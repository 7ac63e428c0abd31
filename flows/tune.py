"""The tune flow: an Optuna study on the cleaned data, the best model registered as challenger."""

from __future__ import annotations

from prefect import flow, get_run_logger

from retrain.settings import load_settings
from retrain.tune import TuneConfig, TuneReport
from tasks.training import tune_challenger


@flow(name="tune", timeout_seconds=6 * 3600)
def tune(
    trials: int | None = None, family: str | None = None, objective: str | None = None
) -> TuneReport:
    """Tune on the training rows (holdout chosen by row hash) and register a challenger."""
    settings = load_settings(trials=trials, family=family, objective=objective)
    config = TuneConfig(
        trials=settings.trials,
        families=settings.families,
        objective=settings.objective,
        seed=settings.seed,
    )
    report = tune_challenger(settings, config)
    get_run_logger().info(report.describe())
    return report

"""The tune flow: an Optuna study on the cleaned data, the best model registered as challenger."""

from __future__ import annotations

import time

from prefect import flow, get_run_logger

from flows.hooks import publish_tuning
from retrain.settings import load_settings
from retrain.tune import TuneConfig, TuneReport
from tasks.training import abandon_study, register_best, run_trial_worker, start_study


@flow(name="tune", timeout_seconds=6 * 3600)
def tune(
    trials: int | None = None,
    workers: int | None = None,
    family: str | None = None,
    objective: str | None = None,
    budget: float | None = None,
) -> TuneReport:
    """Tune on the training rows (holdout chosen by row hash) and register a challenger.

    With several workers each is a task run against one Optuna study in RDB storage."""
    logger = get_run_logger()
    settings = load_settings(
        trials=trials, workers=workers, family=family, objective=objective, tune_budget=budget
    )
    config = TuneConfig(
        trials=settings.trials,
        families=settings.families,
        objective=settings.objective,
        seed=settings.seed,
        workers=settings.workers,
        budget=settings.tune_budget,
    )
    run = start_study(settings, config)
    logger.info(
        f"study {run.study_name}: at most {config.trials} trials in {config.budget:.0f} s on "
        f"{config.workers} worker(s)"
    )
    started = time.perf_counter()
    futures = [run_trial_worker.submit(settings, config, run, w) for w in range(config.workers)]
    try:
        studies = [future.result() for future in futures]
    except BaseException:
        abandon_study(settings, run)
        raise
    report = register_best(settings, config, run, studies[0], time.perf_counter() - started)
    logger.info(report.describe())
    publish_tuning(settings, report)
    return report

"""The tune flow: an Optuna study on the cleaned data, the best model registered as challenger."""

from __future__ import annotations

import time

import optuna
from prefect import flow, get_run_logger
from prefect.exceptions import TerminationSignal

from flows.hooks import publish_tuning, run_name
from retrain.modeling import resolve_families
from retrain.settings import Settings, load_settings
from retrain.tune import TuneConfig, TuneReport, TuningRun
from tasks.training import abandon_study, register_best, run_trial_worker, start_study


def run_workers(settings: Settings, config: TuneConfig, run: TuningRun) -> list[optuna.Study]:
    """One worker runs in this thread, so a cancel (SIGTERM) interrupts its fits at once and
    joblib stops the fit processes; several run as concurrent task runs."""
    if config.workers == 1:
        return [run_trial_worker(settings, config, run, 0)]
    futures = [run_trial_worker.submit(settings, config, run, w) for w in range(config.workers)]
    return [future.result() for future in futures]


def is_cancellation(err: BaseException) -> bool:
    """A cancel from the Prefect UI (SIGTERM) or Ctrl-C, as opposed to a failure."""
    return isinstance(err, TerminationSignal | KeyboardInterrupt)


@flow(name="tune", flow_run_name=run_name("tune"), timeout_seconds=6 * 3600)
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
    families, note = resolve_families(settings.families)
    if note:
        logger.warning(note)
    config = TuneConfig(
        trials=settings.trials,
        families=families,
        objective=settings.objective,
        seed=settings.seed,
        workers=settings.workers,
        budget=settings.tune_budget,
        sample_rows=settings.tune_sample_rows,
        prune=settings.tune_prune,
    )
    run = start_study(settings, config)
    logger.info(
        f"study {run.study_name}: at most {config.trials} trials in {config.budget:.0f} s on "
        f"{config.workers} worker(s)"
    )
    started = time.perf_counter()
    try:
        studies = run_workers(settings, config, run)
    except BaseException as err:
        abandon_study(settings, run, "KILLED" if is_cancellation(err) else "FAILED")
        raise
    report = register_best(settings, config, run, studies[0], time.perf_counter() - started)
    logger.info(report.describe())
    publish_tuning(settings, report)
    return report

"""The `retrain` console script.

Each command runs the matching Prefect flow (imported when the command runs, so this module
and the rest of `retrain/` stay free of Prefect). Exit status: 0 done, 1 a stage failed,
2 bad usage or an unreadable input file. An expected failure prints one line on stderr.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from retrain.config.settings import WORK_POOL, Settings
from retrain.errors import BadInput, Cancelled, RetrainError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Nightly retraining of a tabular classifier, orchestrated by Prefect.",
)

SourceOpt = Annotated[
    Path | None,
    typer.Option(
        "--source",
        help="CSV file, folder of CSV files or glob (one batch each); default: RETRAIN_SOURCE, "
        "or the bundled iris for the iris dataset",
    ),
]
EncodingOpt = Annotated[
    str | None,
    typer.Option(
        "--encoding", help="text encoding of the source files (default RETRAIN_ENCODING or utf-8)"
    ),
]


class _HideExpectedTracebacks(logging.Filter):
    """Console logs keep the message of an expected failure but drop its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, RetrainError):
            record.exc_info, record.exc_text = None, None
        return True


_final_lines: list[str] = []


def _print_final_lines() -> None:
    for line in _final_lines:
        print(line, file=sys.stderr, flush=True)


@app.callback()
def _prepare() -> None:
    """Quiet defaults for Prefect on a machine with no internet (the user's env still wins).

    The error line is printed at exit by a hook registered before Prefect's own, so it comes
    after Prefect's last log line (the temporary API server stops at exit too). The settings
    file's Prefect, MLflow and AWS variables are exported first: Prefect reads its own
    variables once, when a command first imports it."""
    atexit.register(_print_final_lines)
    from retrain.config.settings import export_tool_variables

    run_stage(export_tool_variables)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # Prefect gives its temporary server 20 s to start, which a busy 2-core machine (a
    # nightly tune beside a test run) overruns; a run that waits beats one that fails
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    signal.signal(signal.SIGTERM, _raise_cancelled)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # pandera imports pyspark.pandas when pyspark is installed (the `spark` group), which
    # warns about the pandas version on every command; retrain uses no pyspark.pandas
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")


def _quiet_expected_tracebacks() -> None:
    loggers = [
        logging.getLogger(),
        *(
            logging.getLogger(name)
            for name in logging.root.manager.loggerDict
            if name.startswith("prefect")
        ),
    ]
    for logger in loggers:
        for handler in logger.handlers:
            handler.addFilter(_HideExpectedTracebacks())


def fail(message: str, code: int) -> None:
    """Exit with `code`; the one line a person reads goes last on stderr."""
    _final_lines.append(f"retrain: {message}")
    raise typer.Exit(code)


def run_stage(start: Callable[[], Any]) -> Any:
    """Run a flow, turning an expected failure into one stderr line and its exit status."""
    _quiet_expected_tracebacks()
    try:
        return start()
    except RetrainError as err:
        fail(str(err), err.exit_code)
    except KeyboardInterrupt:
        fail(str(Cancelled("Ctrl-C")), 1)


def run_flow(start: Callable[[], Any]) -> Any:
    """Run a stage's flow (as `run_stage`) on PREFECT_API_URL, or on a local Prefect server
    that is already running, before falling back on Prefect's temporary server."""
    from httpx import HTTPStatusError

    from flows.api import prefect_api

    with prefect_api() as api:
        try:
            return run_stage(start)
        except HTTPStatusError as err:
            if err.response.status_code != 401:
                raise
            fail(
                f"the Prefect server at {api} refused the request (401 Unauthorized): set "
                "PREFECT_API_AUTH_STRING to its PREFECT_SERVER_API_AUTH_STRING (environment "
                "or settings file)",
                1,
            )


def check_settings(**overrides: object) -> Settings:
    """Load and check the settings (types, ranges, names, that the schema file parses; not
    whether a store answers) before any flow or Prefect starts: one stderr line, exit 2."""
    from retrain.config.settings import load_settings

    settings = run_stage(lambda: load_settings(**overrides))
    run_stage(settings.check_schema_file)
    return settings


def _raise_cancelled(signum: int, _frame: Any) -> None:
    """SIGTERM (a cancel from the Prefect UI, `kill`) as an exception: Prefect's flow engine
    handles it first (the run ends Crashed, a tuning run KILLED), then hands the signal back
    here, so the command still ends with exit 1 and one line instead of dying silently."""
    raise Cancelled(signal.Signals(signum).name)


def _check_source(source: Path | None) -> str | None:
    if source is None:
        return None
    if any(ch in str(source) for ch in "*?["):
        return str(source.expanduser())
    from retrain.io.source_files import list_csv_files

    try:
        list_csv_files(source)
    except BadInput as err:
        fail(str(err), err.exit_code)
    return str(source.expanduser().resolve())


TrialsOpt = Annotated[int | None, typer.Option("--trials", min=1, help="most Optuna trials")]
BudgetOpt = Annotated[
    float | None,
    typer.Option("--budget", min=1, help="seconds the tuning study may take (RETRAIN_TUNE_BUDGET)"),
]
WorkersOpt = Annotated[
    int | None,
    typer.Option(
        "--workers", min=1, help="trial workers on one Optuna study (more than 1 needs MySQL)"
    ),
]
FamilyOpt = Annotated[
    str | None,
    typer.Option(
        "--family",
        help="model families to search: one of random_forest (default), logreg, hgb, "
        "lightgbm, or a comma list of them",
    ),
]
ObjectiveOpt = Annotated[
    str | None, typer.Option("--objective", help="auroc (default) or accuracy")
]


MinImprovementOpt = Annotated[
    float | None,
    typer.Option("--min-improvement", min=0.0, help="AUROC margin a challenger must beat"),
]
SignificanceOpt = Annotated[
    bool | None,
    typer.Option(
        "--require-significance/--no-require-significance",
        help="also require a paired bootstrap to find the challenger better",
    ),
]


@app.command()
def run(
    source: SourceOpt = None,
    trials: TrialsOpt = None,
    budget: BudgetOpt = None,
    workers: WorkersOpt = None,
    family: FamilyOpt = None,
    objective: ObjectiveOpt = None,
    min_improvement: MinImprovementOpt = None,
    require_significance: SignificanceOpt = None,
    serve: Annotated[
        bool, typer.Option("--serve/--no-serve", help="restart serving on a promotion")
    ] = True,
) -> None:
    """Run the nightly flow once, now: every stage, in order."""
    options = {
        "trials": trials, "workers": workers, "family": family, "objective": objective,
        "min_improvement": min_improvement, "require_significance": require_significance,
    }  # fmt: skip
    settings = check_settings(**options, tune_budget=budget)
    path = _check_source(source)
    from flows.retrain import nightly_parameters, retrain

    parameters = nightly_parameters(settings, path) | {"serve": serve}
    summary = run_flow(lambda: retrain(**parameters))
    for line in summary.lines():
        typer.echo(line)


@app.command()
def ingest(source: SourceOpt = None, encoding: EncodingOpt = None) -> None:
    """Load a CSV file, or every new CSV file of a folder (one batch each)."""
    check_settings(encoding=encoding)
    path = _check_source(source)
    from flows.ingest import ingest as ingest_flow

    for report in run_flow(lambda: ingest_flow(source=path, encoding=encoding)):
        typer.echo(report.describe())


@app.command()
def clean(
    readmit: Annotated[
        str | None,
        typer.Option(
            "--readmit", help="batch id (or unique prefix) of a quarantined batch to take back in"
        ),
    ] = None,
    max_reject_fraction: Annotated[
        float | None,
        typer.Option(
            "--max-reject-fraction",
            min=0.0,
            max=1.0,
            help="quarantine a batch when more than this share of its rows is rejected",
        ),
    ] = None,
) -> None:
    """Clean the batches not yet cleaned (or readmit a quarantined one)."""
    check_settings(max_reject_fraction=max_reject_fraction)
    from flows.clean import clean as clean_flow

    reports = run_flow(lambda: clean_flow(readmit=readmit, max_reject_fraction=max_reject_fraction))
    for report in reports:
        typer.echo(report.describe())
    if not reports:
        typer.echo("nothing new to clean")


@app.command()
def drift(
    batch: Annotated[
        list[str] | None, typer.Option("--batch", help="batch id (repeat); default: the latest")
    ] = None,
) -> None:
    """Compare cleaned batches with the champion's training rows, feature by feature."""
    check_settings()
    from flows.drift import drift as drift_flow

    results = run_flow(lambda: drift_flow(batches=batch or None))
    for result in results:
        typer.echo(result.describe())
    if not results:
        typer.echo("no cleaned batch to compare yet")


@app.command()
def tune(
    trials: TrialsOpt = None,
    budget: BudgetOpt = None,
    workers: WorkersOpt = None,
    family: FamilyOpt = None,
    objective: ObjectiveOpt = None,
) -> None:
    """Tune on the cleaned data and register the best model as the challenger."""
    options = {"trials": trials, "workers": workers, "family": family, "objective": objective}
    check_settings(**options, tune_budget=budget)
    from flows.tune import tune as tune_flow

    report = run_flow(lambda: tune_flow(**options, budget=budget))
    typer.echo(report.describe())


@app.command()
def promote(
    min_improvement: MinImprovementOpt = None, require_significance: SignificanceOpt = None
) -> None:
    """Compare @challenger with @champion on the holdout; promote it when it is better."""
    options = {"min_improvement": min_improvement, "require_significance": require_significance}
    check_settings(**options)
    from flows.promote import promote as promote_flow

    typer.echo(run_flow(lambda: promote_flow(**options)).describe())


@app.command()
def deploy() -> None:
    """Serve @champion: checked on a spare port, swapped in, rolled back on failure."""
    check_settings()
    from flows.deploy import deploy as deploy_flow

    typer.echo(run_flow(deploy_flow).describe())


@app.command()
def rollback(
    to: Annotated[str | None, typer.Option("--to", help="version to put back")] = None,
) -> None:
    """Put champion back on previous_champion (or --to VERSION) and serve it."""
    check_settings()
    from flows.deploy import rollback as rollback_flow

    typer.echo(run_flow(lambda: rollback_flow(to_version=to)).describe())


@app.command()
def history(
    n: Annotated[int, typer.Option("-n", min=1, help="how many attempts")] = 20,
) -> None:
    """The last promotion attempts, newest first."""
    from retrain.io import (
        audit,  # not the store adapter: no pandas, a quick answer
        engines,
    )

    settings = check_settings()
    engine = engines.make_engine(settings.database_url)
    attempts = run_stage(lambda: audit.recent_attempts(engine, settings.dataset, n))
    for line in audit.format_attempts(attempts) if attempts else ["no promotion attempts yet"]:
        typer.echo(line)


@app.command()
def predictions(
    days: Annotated[int, typer.Option("--days", min=1, help="days back from today (UTC)")] = 7,
) -> None:
    """Per-day summary of what the served model answered: requests, latency, classes."""
    from retrain.io import engines
    from retrain.serving import model_server

    settings = check_settings()
    summaries = run_stage(
        lambda: logged_days(engines.make_engine(settings.database_url), settings.dataset, days)
    )
    if not summaries:
        state = "on" if settings.prediction_log else "off (RETRAIN_PREDICTION_LOG)"
        typer.echo(f"no predictions logged in the last {days} days; the log is {state}")
    else:
        from retrain.monitoring.usage import HEADER

        typer.echo(HEADER)
        for summary in summaries:
            typer.echo(summary.line())
    served = model_server.read_state(settings.home)
    if served and (dropped := model_server.log_drops(served)):
        typer.echo(f"version {served.version} dropped {dropped} rows from the log (store away)")


@app.command()
def labels(
    source: Annotated[Path, typer.Option("--source", help="CSV or Parquet file of ids and labels")],
) -> None:
    """Load late labels (the schema's id column(s) and the target; `labelled_at` optional)
    into <dataset>_labels; the latest label per id wins."""
    check_settings()
    from flows.performance import labels as labels_flow

    typer.echo(run_flow(lambda: labels_flow(source=str(source.expanduser().resolve()))).describe())


@app.command()
def performance(
    days: Annotated[int, typer.Option("--days", min=1, help="days back from today (UTC)")] = 14,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
) -> None:
    """Per day and model version: answers, share labelled, realized AUROC with a 95%
    bootstrap interval, beside the version's holdout AUROC; then the degradation verdict."""
    import json

    from retrain.monitoring import realized
    from retrain.monitoring.performance import HEADER

    settings = check_settings()
    table, verdict = run_stage(lambda: realized.check_degradation(settings, days))
    if as_json:
        for day in table:
            typer.echo(json.dumps(day.as_dict()))
        return
    if not table:
        typer.echo(f"no predictions logged in the last {days} days")
        return
    typer.echo(HEADER)
    for day in table:
        typer.echo(day.line())
    typer.echo(verdict.describe())


def logged_days(engine: Any, dataset: str, days: int) -> list:
    """The daily summaries of the prediction log's last `days` days."""
    from datetime import timedelta

    import pandas as pd

    from retrain.io import prediction_log
    from retrain.io.engines import now_utc
    from retrain.monitoring import usage

    since = (now_utc() - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0)
    rows = list(prediction_log.read_window(engine, dataset, since))
    return usage.daily_summaries(pd.DataFrame(rows, columns=usage.LOG_COLUMNS))


serve_app = typer.Typer(no_args_is_help=True, help="The served model: start, status, stop.")
app.add_typer(serve_app, name="serve")


def _serving_context():
    from retrain.io import tracking

    settings = check_settings()
    return settings, tracking.make_client(settings.tracking_uri)


@serve_app.command("start")
def serve_start(
    version: Annotated[str | None, typer.Option("--version", help="default: @champion")] = None,
    supervise: Annotated[
        bool,
        typer.Option(
            "--supervise/--no-supervise",
            help="leave a supervisor running beside it (the systemd unit runs its own)",
        ),
    ] = True,
) -> None:
    """Serve @champion (or --version) on RETRAIN_SERVE_HOST:PORT, e.g. after a reboot."""
    from retrain.io import tracking
    from retrain.serving import deploy

    settings, client = _serving_context()
    version = version or tracking.alias_version(client, settings.model_name, "champion")
    if version is None:
        fail("there is no champion to serve yet; run `retrain run` first", 1)
    served = run_stage(
        lambda: deploy.serve_start(settings, version, settings.health_timeout, supervise)
    )
    watched = f"; supervisor pid {served.supervisor['pid']}" if served.supervisor else ""
    typer.echo(
        f"serving version {served.version} at {served.public_url} (pid {served.pid}){watched}"
    )


@serve_app.command("status")
def serve_status(
    check_registry: bool = typer.Option(
        False,
        "--check-registry",
        help="ask MLflow's registry (seconds) and say if it differs from retrain's alias log",
    ),
) -> None:
    """Pid, port, version, health, and whether the served version is the champion."""
    from retrain.model.champion_lookup import look_up_champion
    from retrain.serving import model_server

    settings = check_settings()
    served = model_server.read_state(settings.home)
    if served is None:
        state = model_server.state_file(settings.home)
        fail(f"no model is being served by retrain (state: {state})", 1)
    champion = run_stage(lambda: look_up_champion(settings, check_registry))
    health = "healthy" if model_server.ping_url(served.public_url) else "not answering"
    is_champion = (
        "is the champion" if served.version == champion.version
        else f"champion is {champion.version}"
    )  # fmt: skip
    typer.echo(
        f"pid {served.pid} at {served.public_url} version {served.version} ({is_champion}), "
        f"{health}"
    )
    typer.echo(f"champion as read from {champion.source}")
    accepted = model_server.token_accepted(served.public_url, settings.serve_token)
    if accepted is not None:
        typer.echo("the endpoint asks for a bearer token: RETRAIN_SERVE_TOKEN is "
                   + ("accepted" if accepted else "refused (set it to the token serving started "
                      "with, or restart serving)"))  # fmt: skip
    if champion.disagreement:
        typer.echo(champion.disagreement)
    echo_proxy_and_supervisor(served, model_server.live_supervisor(settings.home))
    plan = model_server.rollout_record(settings.home)
    if plan is not None:
        typer.echo(f"a {plan['mode']} of version {plan['version']} runs beside it "
                   "(`retrain rollout status`)")  # fmt: skip


def echo_proxy_and_supervisor(served: Any, watcher: dict | None) -> None:
    """The proxy in front of the served model, and the supervisor watching it."""
    if served.proxy:
        typer.echo(
            f"behind haproxy pid {served.proxy['pid']} (slot {served.proxy['slot']}); the model "
            f"server itself at {served.url} and its metrics at {served.public_url}/metrics"
        )
    typer.echo(
        f"supervised by pid {watcher['pid']}" if watcher
        else "no supervisor runs (RETRAIN_SUPERVISE=false, or stopped): `retrain deploy` starts one"
    )  # fmt: skip


@serve_app.command("stop")
def serve_stop() -> None:
    """Stop the model server and the proxy retrain started (nothing else is ever signalled)."""
    from retrain.config.settings import load_settings
    from retrain.serving import haproxy, model_server, rollout

    settings = run_stage(load_settings)  # no MLflow client: stopping needs only the state file
    with model_server.serving_lock(settings.home):  # the supervisor does not restart what stops
        watcher = run_stage(lambda: model_server.stop_supervisor(settings.home))
        if watcher:
            typer.echo(f"stopped the serving supervisor (pid {watcher['pid']})")
        ended = rollout.close(settings.home, "aborted", "serving was stopped")
        if ended:
            typer.echo(f"stopped the rollout's version {ended.version} (its split ended)")
        served, front = model_server.read_record(settings.home), haproxy.recorded(settings.home)
        if front:
            run_stage(lambda: haproxy.stop(front))
            typer.echo(f"stopped haproxy (pid {front.pid}) on port {front.port}")
        if served is None or not model_server.session_members(served):
            model_server.write_state(settings.home, None)
            typer.echo("no model server of retrain is running")
            return
        run_stage(lambda: model_server.stop(served))  # its uvicorn too, should its leader be gone
        model_server.write_state(settings.home, None)
    typer.echo(f"stopped version {served.version} (pid {served.pid})")


@serve_app.command("supervise")
def serve_supervise(
    interval: Annotated[
        float, typer.Option("--interval", min=1, help="seconds between checks")
    ] = 5,
    follow_parent: Annotated[
        bool, typer.Option("--follow-parent", help="exit when the parent process exits")
    ] = False,
    if_none: Annotated[
        bool,
        typer.Option("--if-none", help="exit at once when another supervisor already runs"),
    ] = False,
) -> None:
    """Keep the served model answering: a model server or proxy that dies is started again
    (logged and alerted); a crash loop stops the retries and alerts once. One supervisor
    watches a RETRAIN_HOME: a second one waits to take over (or, with --if-none, exits)."""
    from retrain.config.settings import load_settings
    from retrain.serving.supervisor import supervise_forever

    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # `serve stop` ends it between two rounds
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = run_stage(load_settings)
    parent = os.getppid()
    supervise_forever(
        settings, interval, lambda: not follow_parent or os.getppid() == parent, wait=not if_none
    )


rollout_app = typer.Typer(
    no_args_is_help=True,
    help="A second version beside the champion: canary, A/B split, their bake and report.",
)
app.add_typer(rollout_app, name="rollout")
VersionOpt = Annotated[str, typer.Option("--version", help="registered version to serve beside")]
PercentOpt = Annotated[
    float | None,
    typer.Option("--percent", min=0.01, max=99.99, help="its share of requests (percent)"),
]


@rollout_app.command("ab")
def rollout_ab(
    version: VersionOpt,
    percent: PercentOpt = None,
    hours: Annotated[float, typer.Option("--hours", min=0.001, help="how long to split")] = 24,
) -> None:
    """Split traffic between the champion and --version for --hours, promoting neither; on a
    Prefect server the split's watch runs as its own flow run, else here until it ends."""
    from flows.rollout import start_rollout

    check_settings()
    typer.echo(run_flow(lambda: start_rollout(version, "ab", percent, hours * 60)))


@rollout_app.command("canary")
def rollout_canary(
    version: VersionOpt,
    percent: PercentOpt = None,
    minutes: Annotated[
        float | None, typer.Option("--minutes", min=0.01, help="bake; RETRAIN_BAKE_MINUTES")
    ] = None,
) -> None:
    """Serve --version as a canary: its share of requests through a bake that promotes it if
    its guard metrics hold, and rolls it back at the first breach."""
    from flows.rollout import start_rollout

    check_settings()
    typer.echo(run_flow(lambda: start_rollout(version, "canary", percent, minutes)))


@rollout_app.command("shadow")
def rollout_shadow(
    version: VersionOpt,
    minutes: Annotated[
        float | None, typer.Option("--minutes", min=0.01, help="bake; RETRAIN_BAKE_MINUTES")
    ] = None,
) -> None:
    """Serve --version as a shadow: every request the champion answers is replayed to it
    (no client sees its answers) through a bake that promotes it or rolls it back."""
    from flows.rollout import start_rollout

    check_settings()
    typer.echo(run_flow(lambda: start_rollout(version, "shadow", None, minutes)))


@rollout_app.command("status")
def rollout_status() -> None:
    """The running rollout (else the last one): versions, share, time left, each guard."""
    from retrain.io import store
    from retrain.serving import bake, rollout

    settings = check_settings()
    plan = run_stage(lambda: rollout.current_or_last(settings.home))
    typer.echo(plan.describe())
    engine, _ = run_stage(lambda: store.open_dataset(settings))
    reading = run_stage(lambda: bake.observe(settings, engine, plan))
    typer.echo(reading.line())


@rollout_app.command("promote")
def rollout_promote() -> None:
    """Make the rollout's version champion now (guards or not) and serve it, verified."""
    from flows.rollout import promote_now

    check_settings()
    typer.echo(run_flow(promote_now))


@rollout_app.command("abort")
def rollout_abort() -> None:
    """End the rollout now: every request to the champion, the other version stopped."""
    from flows.rollout import abort_now

    check_settings()
    typer.echo(run_flow(abort_now))


@rollout_app.command("report")
def rollout_report() -> None:
    """Per version over the running (or last) rollout: requests, rows, latency p50/p95, class
    shares, error rate, realized AUROC and the interval on the difference; also a Prefect
    artifact and an MLflow run in <experiment>-inference."""
    from flows.rollout import report

    check_settings()
    reading = run_flow(report)
    typer.echo(reading.markdown())
    for summary in (reading.champion, reading.candidate):
        shares = ", ".join(f"{k} {v:.1%}" for k, v in summary.class_shares.items()) or "none"
        typer.echo(f"v{summary.version} class shares: {shares}")


@app.command()
def score(
    source: Annotated[
        Path, typer.Option("--source", help="CSV or Parquet file, or a folder of them")
    ],
    output: Annotated[
        str | None, typer.Option("--output", help="table to write; default <dataset>_scores")
    ] = None,
) -> None:
    """Score a large file or folder with @champion on Spark (batch scoring)."""
    from retrain.io.spark import missing_for_spark

    check_settings()
    problem = missing_for_spark()  # before a Prefect server or a flow starts
    if problem:
        fail(problem, 2)
    from flows.score import batch_score

    path = str(source.expanduser().resolve())
    report = run_flow(lambda: batch_score(source=path, output=output))
    typer.echo(report.describe())


@app.command()
def predict(
    source: Annotated[
        Path | None, typer.Option("--source", help="CSV of rows; default: the holdout rows")
    ] = None,
    sample: Annotated[int | None, typer.Option("--sample", min=1, help="random rows")] = None,
) -> None:
    """Send rows to the served model; print predictions beside the true labels."""
    from retrain.monitoring import inference_runs as predict_core

    settings, client = _serving_context()
    if source is not None:
        _check_source(source)
    rows = run_stage(lambda: predict_core.load_rows(settings, source, sample))
    report = run_stage(lambda: predict_core.predict_served(settings, client, rows))
    for line in report.lines():
        typer.echo(line)


schema_app = typer.Typer(no_args_is_help=True, help="The dataset's schema file.")
app.add_typer(schema_app, name="schema")
Columns = Annotated[list[str] | None, typer.Option(help="repeat for several columns")]


@schema_app.command("infer")
def schema_infer(
    source: Annotated[Path, typer.Option("--source", help="CSV file to read (a sample)")],
    target: Annotated[str, typer.Option("--target", help="the label column")],
    positive: Annotated[
        str | None, typer.Option("--positive", help="positive label of a binary target")
    ] = None,
    id: Columns = None,
    timestamp: Columns = None,
    required: Columns = None,
    ignore: Columns = None,
    with_bounds: Annotated[
        bool, typer.Option("--with-bounds", help="write the sample's min/max as checks")
    ] = False,
    output: Annotated[
        Path | None, typer.Option("--output", help="schema file to write; default: stdout")
    ] = None,
    encoding: EncodingOpt = None,
) -> None:
    """Write the dataset's schema file (pandera YAML with retrain's roles) from a CSV file."""
    from retrain.data.infer_schema import InferRequest, infer_schema_from_csv

    request = InferRequest(
        target, positive, tuple(id or ()), tuple(timestamp or ()), tuple(required or ()),
        with_bounds, tuple(ignore or ()),
    )  # fmt: skip
    if not source.is_file():
        fail(f"{source}: no such file; pass --source a CSV file", 2)
    inferred = run_stage(lambda: infer_schema_from_csv(source, request, encoding or "utf-8"))
    for rejects in inferred.rejects:
        typer.echo(rejects.describe(), err=True)
    if output is None:
        typer.echo(inferred.text, nl=False)
        return
    output.write_text(inferred.text, encoding="utf-8")
    typer.echo(f"wrote {output}; use it with RETRAIN_SCHEMA={output.resolve()}", err=True)


@schema_app.command("ignore")
def schema_ignore(
    columns: Annotated[list[str], typer.Argument(help="columns that must never be features")],
) -> None:
    """Mark columns `ignore` in the schema file (RETRAIN_SCHEMA): kept and cleaned, never a
    feature (a column that leaks the label, a free-text note). The next tune drops them."""
    from retrain.data.infer_schema import ignore_columns

    settings = check_settings()
    path = settings.schema_path  # never the bundled iris schema inside the package
    if path is None or not path.is_file():
        fail("no schema file of yours to edit: set RETRAIN_SCHEMA to your dataset's schema", 2)
    text = run_stage(lambda: ignore_columns(path.read_text(), columns, str(path)))
    path.write_text(text, encoding="utf-8")
    check_settings()  # the edited file still parses
    typer.echo(f"{path}: ignored {', '.join(columns)}; never features from the next tune on")


@app.command()
def worker(
    pool: Annotated[str, typer.Option("--pool", help="Prefect work pool to poll")] = WORK_POOL,
    healthcheck: Annotated[
        bool,
        typer.Option(
            "--with-healthcheck",
            help="answer GET /health on PREFECT_WORKER_WEBSERVER_HOST:PORT (127.0.0.1:8080)",
        ),
    ] = False,
) -> None:
    """Serve @champion again if no model server runs, start the serving supervisor, then run
    a Prefect process worker.

    The compose stack's worker container runs this, so a restart does not leave the model
    down until the next night. A champion that cannot be served is reported and the worker
    starts anyway (the next deploy, or `retrain serve start`, serves it)."""
    settings, client = _serving_context()
    from retrain.serving.deploy import serve_champion_again

    typer.echo(f"worker: {serve_champion_again(settings, client)}", err=True)
    if settings.supervise:  # it exits with this process (which exec keeps: same pid)
        retrain = str(Path(sys.executable).parent / "retrain")
        subprocess.Popen(
            [retrain, "serve", "supervise", "--follow-parent"], stdin=subprocess.DEVNULL
        )
        typer.echo(
            "worker: the serving supervisor runs beside it (RETRAIN_SUPERVISE=off stops that)",
            err=True,
        )
    prefect = str(Path(sys.executable).parent / "prefect")
    command = [prefect, "worker", "start", "--pool", pool, "--type", "process"]
    os.environ.setdefault("PREFECT_WORKER_WEBSERVER_HOST", "127.0.0.1")
    os.execv(prefect, command + (["--with-healthcheck"] if healthcheck else []))


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())

"""The `retrain` console script.

Each command runs the matching Prefect flow (imported when the command runs, so this module
and the rest of `retrain/` stay free of Prefect). Exit status: 0 done, 1 a stage failed,
2 bad usage or an unreadable input file. An expected failure prints one line on stderr.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from retrain.errors import BadInput, RetrainError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Nightly retraining of a tabular classifier, orchestrated by Prefect.",
)

SourceOpt = Annotated[
    Path | None,
    typer.Option(
        "--source", help="CSV file, or folder of CSV files (one batch each); default: bundled iris"
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
    after Prefect's last log line (the temporary API server stops at exit too)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    atexit.register(_print_final_lines)


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


def _check_source(source: Path | None) -> str | None:
    if source is None:
        return None
    from retrain.source import list_csv_files

    try:
        list_csv_files(source)
    except BadInput as err:
        fail(str(err), err.exit_code)
    return str(source.expanduser().resolve())


TrialsOpt = Annotated[int | None, typer.Option("--trials", min=1, help="Optuna trials")]
WorkersOpt = Annotated[
    int | None,
    typer.Option(
        "--workers", min=1, help="trial workers on one Optuna study (more than 1 needs MySQL)"
    ),
]
FamilyOpt = Annotated[
    str | None,
    typer.Option("--family", help="random_forest (default) or logreg (adds logistic regression)"),
]
ObjectiveOpt = Annotated[
    str | None, typer.Option("--objective", help="auroc (default) or accuracy")
]


@app.command()
def run(
    source: SourceOpt = None,
    trials: TrialsOpt = None,
    workers: WorkersOpt = None,
    family: FamilyOpt = None,
    objective: ObjectiveOpt = None,
) -> None:
    """Run the nightly flow once, now: every stage, in order."""
    path = _check_source(source)
    from flows.retrain import retrain

    options = {"trials": trials, "workers": workers, "family": family, "objective": objective}
    summary = run_stage(lambda: retrain(source=path, **options))
    for line in summary.lines():
        typer.echo(line)


@app.command()
def ingest(source: SourceOpt = None, encoding: EncodingOpt = None) -> None:
    """Load a CSV file, or every new CSV file of a folder (one batch each)."""
    path = _check_source(source)
    from flows.ingest import ingest as ingest_flow

    for report in run_stage(lambda: ingest_flow(source=path, encoding=encoding)):
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
    from flows.clean import clean as clean_flow

    reports = run_stage(
        lambda: clean_flow(readmit=readmit, max_reject_fraction=max_reject_fraction)
    )
    for report in reports:
        typer.echo(report.describe())
    if not reports:
        typer.echo("nothing new to clean")


@app.command()
def tune(
    trials: TrialsOpt = None,
    workers: WorkersOpt = None,
    family: FamilyOpt = None,
    objective: ObjectiveOpt = None,
) -> None:
    """Tune on the cleaned data and register the best model as the challenger."""
    from flows.tune import tune as tune_flow

    options = {"trials": trials, "workers": workers, "family": family, "objective": objective}
    report = run_stage(lambda: tune_flow(**options))
    typer.echo(report.describe())


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())

"""The cleaned rows a tuning or a promotion works on: every row, or only those of the
training window (RETRAIN_TRAIN_WINDOW_DAYS, RETRAIN_TRAIN_MAX_ROWS), chosen from the time
column alone so that the rows outside the window are never read."""

from __future__ import annotations

import pandas as pd

from retrain.config.settings import Settings
from retrain.data.split import BATCH_TIME, TrainWindow, train_window_of, window_mask
from retrain.io import engines, store
from retrain.io.store import DatasetTables


def time_column_of(settings: Settings) -> str | None:
    """The column a window reads time from: RETRAIN_TIME_COLUMN, else the schema's first
    timestamp; None for the batches' load time (RETRAIN_HOLDOUT=batch, or no time column)."""
    if settings.holdout == "batch":
        return None
    timestamps = settings.load_schema().roles.timestamps
    return settings.time_column or (timestamps[0] if timestamps else None)


def with_batch_times(
    conn: store.Connection, tables: DatasetTables, rows: pd.DataFrame, settings: Settings
) -> pd.DataFrame:
    """The rows with their batch's load time as BATCH_TIME, when RETRAIN_HOLDOUT=batch."""
    if settings.holdout != "batch":
        return rows
    loaded = store.batch_load_times(conn, tables)
    return rows.assign(**{BATCH_TIME: rows["batch_id"].map(loaded)})


def read_training_rows(
    engine: store.Engine,
    tables: DatasetTables,
    settings: Settings,
    batches: list[str] | None = None,
) -> tuple[pd.DataFrame, str]:
    """(the cleaned rows inside the training window, the window in words)."""
    window = train_window_of(settings)
    with engines.reporting_errors(engine), engine.connect() as conn:
        if window.everything:
            rows = store.read_cleaned(conn, tables, batches=batches)
            return with_batch_times(conn, tables, rows, settings), window.describe()
        column = time_column_of(settings)
        times = store.read_times(conn, tables, column, batches)
        inside = times[window_mask(times["time"], window)]
        cleaned = store.read_cleaned(conn, tables, batches=sorted(set(inside["batch_id"])))
        cleaned = with_batch_times(conn, tables, cleaned, settings)
    kept = pd.MultiIndex.from_frame(inside[["batch_id", "line_no"]])
    rows = pd.MultiIndex.from_frame(cleaned[["batch_id", "line_no"]])
    picked = cleaned[rows.isin(kept)].reset_index(drop=True)
    return picked, window_rule(window, column, len(picked), len(times))


def window_rule(window: TrainWindow, column: str | None, kept: int, total: int) -> str:
    by = f"by {column}" if column else "by batch load time"
    return f"{window.describe()} ({by}): {kept} of {total} cleaned rows"

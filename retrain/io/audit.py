"""The `promotions` audit table (SQLAlchemy adapter): one row per promotion attempt.

A deploy that fails later updates the row of its attempt to `rolled_back`; a deploy with no
promotion behind it adds a `deploy_failed` row. Every function takes its engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
    select,
    update,
)

from retrain.io.engines import INNODB_UTF8, now_utc, reporting_errors

# pending: a promotion whose canary bakes or awaits approval; its end settles the row
DECISIONS = ("promoted", "kept", "rolled_back", "deploy_failed", "pending")

PROMOTIONS = Table(
    "promotions",
    MetaData(),
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("attempted_at", DateTime, nullable=False),
    Column("dataset", String(64), nullable=False),
    Column("challenger_version", String(32)),
    Column("champion_version", String(32)),
    Column("challenger_auroc", Float),
    Column("champion_auroc", Float),
    Column("decision", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("flow_run_id", String(64)),
    **INNODB_UTF8,
)


@dataclass(frozen=True)
class Attempt:
    """One row of `promotions`."""

    dataset: str
    challenger_version: str | None
    champion_version: str | None
    challenger_auroc: float | None
    champion_auroc: float | None
    decision: str
    reason: str
    flow_run_id: str | None = None
    attempted_at: datetime | None = None
    id: int | None = None


def record_attempt(engine: Engine, attempt: Attempt) -> int:
    """Insert the attempt; returns its id."""
    values = {k: v for k, v in attempt.__dict__.items() if k != "id"}
    values["attempted_at"] = attempt.attempted_at or now_utc()
    with reporting_errors(engine), engine.begin() as conn:
        PROMOTIONS.create(conn, checkfirst=True)
        return int(conn.execute(insert(PROMOTIONS).values(**values)).inserted_primary_key[0])


def mark_attempt(engine: Engine, attempt_id: int, decision: str, reason: str) -> None:
    """Change the decision of an attempt (a promotion whose deploy was rolled back)."""
    with reporting_errors(engine), engine.begin() as conn:
        conn.execute(
            update(PROMOTIONS)
            .where(PROMOTIONS.c.id == attempt_id)
            .values(decision=decision, reason=reason)
        )


def recent_attempts(engine: Engine, dataset: str | None = None, limit: int = 20) -> list[Attempt]:
    """The latest attempts, newest first."""
    query = select(PROMOTIONS).order_by(PROMOTIONS.c.id.desc()).limit(limit)
    if dataset:
        query = query.where(PROMOTIONS.c.dataset == dataset)
    with reporting_errors(engine), engine.begin() as conn:
        PROMOTIONS.create(conn, checkfirst=True)
        return [Attempt(**row) for row in conn.execute(query).mappings()]


def format_attempts(attempts: list[Attempt]) -> list[str]:
    """A fixed-width table for a person reading it the morning after."""
    head = f"{'when (UTC)':<19}  {'decision':<13} {'challenger':>10} {'champion':>9}  reason"
    lines = [head]
    for a in attempts:
        versions = f"v{a.challenger_version or '-'} {_auroc(a.challenger_auroc)}"
        champion = f"v{a.champion_version or '-'} {_auroc(a.champion_auroc)}"
        lines.append(
            f"{a.attempted_at:%Y-%m-%d %H:%M:%S}  {a.decision:<13} {versions:>10} "
            f"{champion:>9}  {a.reason}"
        )
    return lines


def _auroc(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def read_attempt(engine: Engine, attempt_id: int) -> Attempt | None:
    """One attempt by its id, None when there is no such row."""
    query = select(PROMOTIONS).where(PROMOTIONS.c.id == attempt_id)
    with reporting_errors(engine), engine.begin() as conn:
        PROMOTIONS.create(conn, checkfirst=True)
        row = conn.execute(query).mappings().first()
    return Attempt(**row) if row else None

"""The `alias_moves` table (SQLAlchemy adapter): every move of a registry alias retrain made,
newest last. `retrain serve status` reads @champion here in a few milliseconds instead of
loading MLflow; the registry stays the truth (`serve status --check-registry` asks it). The
table is created on first use, so a store from an earlier release gains it without a step."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
    inspect,
    select,
)

from retrain.io.engines import INNODB_UTF8, now_utc, reporting_errors

ALIAS_MOVES = Table(
    "alias_moves",
    MetaData(),
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("moved_at", DateTime, nullable=False),
    Column("model", String(256), nullable=False),
    Column("alias", String(64), nullable=False),
    Column("version", String(32)),  # NULL: the alias was removed
    Column("previous", String(32)),
    Column("why", Text, nullable=False),
    Column("flow_run_id", String(64)),
    **INNODB_UTF8,
)


@dataclass(frozen=True)
class AliasMove:
    """One move: `alias` of `model` now names `version` (None: removed), before `previous`."""

    model: str
    alias: str
    version: str | None
    previous: str | None
    why: str
    flow_run_id: str | None = None
    moved_at: datetime | None = None


def record_move(engine: Engine, move: AliasMove) -> None:
    values = {**move.__dict__, "why": move.why[:5000], "moved_at": move.moved_at or now_utc()}
    with reporting_errors(engine), engine.begin() as conn:
        ALIAS_MOVES.create(conn, checkfirst=True)
        conn.execute(insert(ALIAS_MOVES).values(**values))


def last_move(engine: Engine, model: str, alias: str) -> AliasMove | None:
    """The newest recorded move of `alias`, None when retrain never recorded one."""
    table = ALIAS_MOVES
    with reporting_errors(engine), engine.connect() as conn:
        if not inspect(conn).has_table(table.name):
            return None
        query = (
            select(table).where(table.c.model == model, table.c.alias == alias)
            .order_by(table.c.id.desc()).limit(1)
        )  # fmt: skip
        row = conn.execute(query).mappings().first()
    return None if row is None else AliasMove(**{k: v for k, v in row.items() if k != "id"})

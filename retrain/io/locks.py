"""A named lock in the data store (SQLAlchemy adapter), for runs with no Prefect server to
hold a global concurrency limit. A row per held lock; it expires, so a killed holder cannot
block the next night for ever. Re-entrant for the same owner."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import Column, DateTime, Engine, MetaData, String, Table, delete, insert, select
from sqlalchemy.exc import IntegrityError

from retrain.errors import StageFailed
from retrain.io.engines import now_utc, reporting_errors

LOCKS = Table(
    "retrain_locks",
    MetaData(),
    Column("name", String(64), primary_key=True),
    Column("owner", String(128), nullable=False),
    Column("acquired_at", DateTime, nullable=False),
    Column("expires_at", DateTime, nullable=False),
    mysql_engine="InnoDB",
)


def try_acquire(engine: Engine, name: str, owner: str, ttl_seconds: float) -> str | None:
    """Take the lock (or keep it, if `owner` has it); None on success, else who holds it."""
    now = now_utc()
    with reporting_errors(engine), engine.begin() as conn:
        conn.execute(delete(LOCKS).where(LOCKS.c.name == name, LOCKS.c.expires_at < now))
        row = conn.execute(select(LOCKS).where(LOCKS.c.name == name)).first()
        if row is not None:
            return None if row.owner == owner else f"{row.owner} since {row.acquired_at:%H:%M:%S}"
        try:
            expires = now + timedelta(seconds=ttl_seconds)
            conn.execute(insert(LOCKS).values(name=name, owner=owner, acquired_at=now,
                                              expires_at=expires))  # fmt: skip
        except IntegrityError:
            return "another run (it took the lock a moment ago)"
    return None


def owner_of(engine: Engine, name: str) -> str | None:
    """Who holds the lock now (expired or not), or None."""
    with reporting_errors(engine), engine.connect() as conn:
        return conn.execute(select(LOCKS.c.owner).where(LOCKS.c.name == name)).scalar()


def release(engine: Engine, name: str, owner: str) -> None:
    with reporting_errors(engine), engine.begin() as conn:
        conn.execute(delete(LOCKS).where(LOCKS.c.name == name, LOCKS.c.owner == owner))


@contextmanager
def held(
    engine: Engine,
    name: str,
    owner: str,
    wait_seconds: float,
    ttl_seconds: float = 7200,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Hold the lock for the block, waiting up to `wait_seconds` for it; `on_wait` hears
    who holds it each time the holder changes while this one waits."""
    with reporting_errors(engine), engine.begin() as conn:
        LOCKS.create(conn, checkfirst=True)
    nested = owner_of(engine, name) == owner  # only the outer block of an owner releases
    deadline = time.monotonic() + wait_seconds
    told = None
    while (holder := try_acquire(engine, name, owner, ttl_seconds)) is not None:
        if on_wait is not None and holder != told:
            on_wait(holder)
            told = holder
        if time.monotonic() > deadline:
            raise StageFailed(
                f"the {name} lock is held by {holder}; waited {wait_seconds:.0f} s. Another "
                "run is promoting or deploying: try again when it ends"
            )
        time.sleep(0.5)
    try:
        yield
    finally:
        if not nested:
            release(engine, name, owner)

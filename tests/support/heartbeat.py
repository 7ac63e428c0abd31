"""A tiny flow the deployment tests schedule once a minute to prove the scheduler fires."""

from __future__ import annotations

from prefect import flow


@flow(name="heartbeat")
def heartbeat() -> str:
    """Do nothing, on a schedule."""
    return "alive"

"""Which Prefect API a command's flow runs report to, without a temporary server when a local
one is already running (starting Prefect's temporary server costs about ten seconds)."""

from __future__ import annotations

import base64
import logging
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from prefect.settings import (
    PREFECT_API_AUTH_STRING,
    PREFECT_API_URL,
    PREFECT_SERVER_API_HOST,
    PREFECT_SERVER_API_PORT,
    temporary_settings,
)

PROBE_SECONDS = 0.5


def local_server_url() -> str:
    """Where `prefect server start` listens by default on this machine (its host and port
    settings), as an API URL."""
    host = PREFECT_SERVER_API_HOST.value()
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://{host}:{PREFECT_SERVER_API_PORT.value()}/api"


def answers(api_url: str) -> bool:
    """True when a Prefect server answers its health check at once."""
    request = urllib.request.Request(f"{api_url}/health", headers=auth_headers())
    try:
        with urllib.request.urlopen(request, timeout=PROBE_SECONDS) as reply:
            return reply.status == 200
    except OSError:
        return False


def auth_headers() -> dict[str, str]:
    """The Authorization header Prefect's client sends for PREFECT_API_AUTH_STRING (a server
    started with PREFECT_SERVER_API_AUTH_STRING refuses requests without it)."""
    auth = PREFECT_API_AUTH_STRING.value()
    if not auth:
        return {}
    return {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()}


@contextmanager
def prefect_api() -> Iterator[str | None]:
    """PREFECT_API_URL when set; else a local Prefect server that is already running (its runs
    then show in its UI); else None, and Prefect starts its temporary server as usual."""
    if PREFECT_API_URL.value():
        yield PREFECT_API_URL.value()
        return
    url = local_server_url()
    if not answers(url):
        yield None
        return
    logging.getLogger("prefect").info("using the Prefect server running at %s", url)
    with temporary_settings(updates={PREFECT_API_URL: url}):
        yield url

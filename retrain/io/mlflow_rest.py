"""MLflow's public REST API read without importing MLflow (which alone takes seconds): where a
registry alias points, on a tracking server. A server that answers oddly gives `UNKNOWN`, and
the caller asks the MLflow client instead: slower, never wrong. (On a database tracking store
retrain reads its own alias log, never MLflow's tables.)
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Final

UNKNOWN: Final = "?"
DATABASE_SCHEMES = ("sqlite", "mysql", "mariadb", "postgresql", "mssql")


def rest_alias_version(server: str, model_name: str, alias: str, timeout: float = 10) -> str | None:
    """GET /api/2.0/mlflow/registered-models/alias, with MLflow's own auth variables."""
    query = urllib.parse.urlencode({"name": model_name, "alias": alias})
    url = f"{server.rstrip('/')}/api/2.0/mlflow/registered-models/alias?{query}"
    request = urllib.request.Request(url, headers=auth_headers())
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return str(json.loads(answer.read())["model_version"]["version"])
    except urllib.error.HTTPError as err:
        missing = err.code == 404 and b"RESOURCE_DOES_NOT_EXIST" in err.read()
        return None if missing else UNKNOWN
    except (OSError, ValueError, KeyError):
        return UNKNOWN


def auth_headers() -> dict[str, str]:
    """The Authorization header MLflow's client would send from the same variables."""
    if token := os.environ.get("MLFLOW_TRACKING_TOKEN"):
        return {"Authorization": f"Bearer {token}"}
    user, password = (os.environ.get(f"MLFLOW_TRACKING_{k}") for k in ("USERNAME", "PASSWORD"))
    if user and password:
        pair = base64.b64encode(f"{user}:{password}".encode()).decode()
        return {"Authorization": f"Basic {pair}"}
    return {}

"""Where a registry alias points, without importing MLflow (which alone takes seconds).

`retrain serve status` asks one question of the registry: which version is `@champion`. Through
a tracking server that is MLflow's public REST endpoint; on a database tracking store it is one
SELECT on the registry's alias table. Anything unexpected (a file store, an alias table that a
future MLflow renamed, a server that answers oddly) returns `UNKNOWN`, and the caller asks the
MLflow client instead: slower, never wrong.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Final

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from retrain.io import engines

UNKNOWN: Final = "?"
DATABASE_SCHEMES = ("sqlite", "mysql", "mariadb", "postgresql", "mssql")


def quick_alias_version(tracking_uri: str, model_name: str, alias: str) -> str | None:
    """The version `alias` points at, None when it is not set, UNKNOWN when this cannot tell."""
    scheme = urllib.parse.urlsplit(tracking_uri).scheme.split("+")[0]
    if scheme in ("http", "https"):
        return rest_alias_version(tracking_uri, model_name, alias)
    if scheme in DATABASE_SCHEMES:
        return table_alias_version(tracking_uri, model_name, alias)
    return UNKNOWN


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


def table_alias_version(database_url: str, model_name: str, alias: str) -> str | None:
    """One SELECT on the registry's alias table of a database tracking store."""
    try:
        parsed = make_url(database_url)
        if parsed.get_backend_name() == "sqlite" and not os.path.exists(parsed.database or ""):
            return None  # no store yet, so no alias; do not create the file by asking
        with engines.make_engine(database_url).connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT version FROM registered_model_aliases "
                    "WHERE name = :name AND alias = :alias"
                ),
                {"name": model_name, "alias": alias},
            ).all()
    except (ArgumentError, SQLAlchemyError, ImportError):
        return UNKNOWN
    if len(rows) > 1:
        return UNKNOWN  # the same name in several MLflow workspaces: let MLflow pick
    return str(rows[0][0]) if rows else None

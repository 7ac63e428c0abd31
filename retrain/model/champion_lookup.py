"""Which version is `@champion`, in well under a second and saying where the answer comes from:
MLflow's REST API on a tracking server, else retrain's own alias log (every move retrain made),
else, or when asked to check, MLflow's client (seconds to import). Nothing here reads MLflow's
own tables. A move made by hand in the MLflow UI is only in the registry: `check_registry`
finds it and says that the two disagree."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from retrain.config.settings import Settings
from retrain.io import alias_log, engines, mlflow_rest

ALIAS = "champion"


@dataclass(frozen=True)
class Champion:
    version: str | None
    source: str  # where the answer comes from, in words
    disagreement: str | None = None  # the registry and retrain's log differ (checked only)


def look_up_champion(settings: Settings, check_registry: bool = False) -> Champion:
    if check_registry:
        return checked_champion(settings)
    if urllib.parse.urlsplit(settings.tracking_uri).scheme in ("http", "https"):
        version = mlflow_rest.rest_alias_version(settings.tracking_uri, settings.model_name, ALIAS)
        if version != mlflow_rest.UNKNOWN:
            return Champion(version, f"MLflow's REST API at {settings.tracking_uri}")
    move = last_recorded_move(settings)
    if move is not None:
        return Champion(move.version, "retrain's alias log")
    return Champion(registry_version(settings), "MLflow's registry (no move in retrain's log)")


def checked_champion(settings: Settings) -> Champion:
    version, move = registry_version(settings), last_recorded_move(settings)
    differs = None
    if move is not None and move.version != version:
        differs = (
            f"retrain's alias log says version {move.version}: @{ALIAS} was moved outside "
            "retrain (by hand in the MLflow UI?)"
        )
    return Champion(version, "MLflow's registry (checked)", differs)


def last_recorded_move(settings: Settings) -> alias_log.AliasMove | None:
    engine = engines.make_engine(settings.database_url)  # one per URL and process
    return alias_log.last_move(engine, settings.model_name, ALIAS)


def registry_version(settings: Settings) -> str | None:
    from retrain.io import tracking

    client = tracking.make_client(settings.tracking_uri)
    return tracking.alias_version(client, settings.model_name, ALIAS)

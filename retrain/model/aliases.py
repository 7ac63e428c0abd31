"""The one module that moves the registry aliases `champion`, `challenger` and
`previous_champion`. Every move is made in MLflow's registry (through `io.tracking`), written
to retrain's alias log (`io.alias_log`, what `serve status` reads) and, when
RETRAIN_EVENTS_URL is set, sent there as a small JSON event, so that a CI job or another
service can react: MLflow's own webhooks fire only from a tracking server and carry neither
the previous version nor the reason."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

from retrain.config.settings import Settings
from retrain.io import alias_log, tracking, webhooks
from retrain.io.alias_log import AliasMove
from retrain.io.engines import now_utc

log = logging.getLogger(__name__)
EVENT = "retrain.alias.moved"


@dataclass(frozen=True)
class Aliases:
    """Where moves are made (`client`), recorded (`engine`; None records nothing) and
    announced (`events_url`), and the flow run they are made by."""

    client: tracking.MlflowClient
    engine: Any
    model_name: str
    events_url: str | None = None
    flow_run_id: str | None = None

    def read(self) -> dict[str, str | None]:
        """Where every alias of the contract points now (a snapshot to restore)."""
        return tracking.read_aliases(self.client, self.model_name)

    def move(self, alias: str, version: str | None, why: str) -> AliasMove:
        """Point `alias` at `version` (None: remove it), record and announce the move."""
        previous = tracking.alias_version(self.client, self.model_name, alias)
        return self.moved(alias, previous, version, why)

    def moved(self, alias: str, previous: str | None, version: str | None, why: str) -> AliasMove:
        """`move` for a caller that has just read where the alias points (`previous`)."""
        if (previous, version) != (None, None):
            tracking.set_alias(self.client, self.model_name, alias, version)
        move = AliasMove(
            self.model_name, alias, version, previous, why, self.flow_run_id, now_utc()
        )
        if self.engine is not None:
            alias_log.record_move(self.engine, move)
        announce(self.events_url, move)
        return move

    def name_challenger(self, version: str, why: str) -> AliasMove:
        return self.move("challenger", version, why)

    def crown(self, version: str, why: str) -> list[AliasMove]:
        """`champion` -> `version`; the champion it replaces becomes `previous_champion`."""
        current = tracking.alias_version(self.client, self.model_name, "champion")
        moves = []
        if current and current != version:
            moves.append(self.move("previous_champion", current, why))
        return [*moves, self.moved("champion", current, version, why)]

    def restore(self, snapshot: dict[str, str | None], why: str) -> list[AliasMove]:
        """Every alias back where `snapshot` had it (one that did not exist is removed)."""
        now = self.read()
        return [self.moved(a, now.get(a), v, why) for a, v in snapshot.items() if now.get(a) != v]


def aliases_for(
    client: tracking.MlflowClient, engine: Any, settings: Settings, flow_run_id: str | None = None
) -> Aliases:
    return Aliases(client, engine, settings.model_name, settings.events_url, flow_run_id)


def announce(url: str | None, move: AliasMove) -> str | None:
    """Send the move to RETRAIN_EVENTS_URL when set; a receiver that is down is logged."""
    if not url:
        return None
    failed = webhooks.post_json(url, event_of(move))
    if failed:
        log.warning("alias move event not delivered: %s", failed)
    return failed


def event_of(move: AliasMove) -> dict[str, Any]:
    body = asdict(move) | {"moved_at": move.moved_at.isoformat() if move.moved_at else None}
    return {"event": EVENT, **body}

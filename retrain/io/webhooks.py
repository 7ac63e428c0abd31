"""JSON POSTs to a person's or a service's URL (alerts, alias-move events). Delivery never
raises: a receiver that is down must not hide or undo what it is told about."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


def post_json(url: str, payload: dict[str, Any], timeout: float = 10) -> str | None:
    """POST `payload` as JSON; None when the receiver answered 2xx, else why not."""
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"},
        method="POST",
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return None if 200 <= answer.status < 300 else f"{url} answered {answer.status}"
    except (OSError, urllib.error.URLError, ValueError) as err:
        return f"could not deliver to {url}: {err}"

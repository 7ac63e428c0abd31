"""The alert adapter: a JSON POST to RETRAIN_ALERT_URL (a webhook; Slack takes the same URL
form). Delivery never raises: a webhook that is down must not hide the failure it reports.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from retrain.io.webhooks import post_json


@dataclass(frozen=True)
class Alert:
    """What a person needs to act on a failed (or, as a notice, successful) promotion."""

    kind: str
    stage: str
    reason: str
    flow_run_name: str | None = None
    flow_run_id: str | None = None
    challenger_version: str | None = None
    champion_version: str | None = None
    link: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    source: str = "retrain"  # the flow's own hook; the server's automation sends the same shape

    def text(self) -> str:
        who = f" ({self.flow_run_name})" if self.flow_run_name else ""
        return f"retrain {self.kind}: {self.stage}{who}: {self.reason}"


def send_alert(url: str | None, alert: Alert, timeout: float = 10) -> str | None:
    """POST the alert; returns None when delivered, else why not (never raises)."""
    if not url:
        return "RETRAIN_ALERT_URL is not set; the alert went to the log only"
    return post_json(url, {**asdict(alert), "text": alert.text()}, timeout)

"""Alerts from the flows' failure hooks to a real HTTP receiver on loopback."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from retrain.config.settings import load_settings
from retrain.io import tracking
from retrain.io.bundled_iris import write_bundled_iris
from retrain.serving.model_server import ServeFailed
from tests.integration.test_promote_and_serve import (
    corrupt_model_files,
    register,
    strong_model,
    weak_model,
)
from tests.integration.test_tune import load_and_clean
from tests.support.services import free_port

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.parametrize("db_url", ["sqlite"], indirect=True),
]


def unservable_champion(tmp_path: Path) -> tuple[str, str]:
    """A weak champion served, then a strong challenger promoted whose files are broken."""
    from flows.deploy import deploy
    from flows.promote import promote

    load_and_clean(write_bundled_iris(tmp_path / "src"))
    old = register(weak_model())
    promote()
    deploy()
    new = register(strong_model())
    promote()
    settings = load_settings()
    corrupt_model_files(tracking.make_client(settings.tracking_uri), settings, new)
    return old, new


def test_a_failed_deploy_alerts_the_webhook_and_a_promotion_sends_a_notice(
    prefect_api: str, env: dict, receiver, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from flows.deploy import deploy

    url, received = receiver
    monkeypatch.setenv("RETRAIN_ALERT_URL", url)
    old, new = unservable_champion(tmp_path)
    with pytest.raises(ServeFailed, match="cannot be loaded"):
        deploy()
    notices = [r for r in received if r["kind"] == "notice"]
    failures = [r for r in received if r["kind"] == "failure"]
    # the first champion is announced by the deploy that served it; the second, promoted by
    # a standalone `promote` and never served, is not announced at all
    assert [(n["stage"], n["challenger_version"]) for n in notices] == [("deploy", old)]
    assert notices[0]["reason"].startswith(f"serving version {old} at http://127.0.0.1:")
    (alert,) = failures
    assert alert["stage"] == "deploy" and "cannot be loaded" in alert["reason"]
    assert alert["flow_run_id"] and alert["champion_version"] == new  # standalone deploy
    assert alert["text"].startswith("retrain failure: deploy")


def test_a_webhook_that_is_down_never_hides_the_failure(
    prefect_api: str,
    env: dict,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    from flows.deploy import deploy

    monkeypatch.setenv("RETRAIN_ALERT_URL", f"http://127.0.0.1:{free_port()}/nobody")
    said = []
    keep = logging.Handler()
    keep.emit = lambda record: said.append(record.getMessage())
    flow_logs = logging.getLogger("prefect.flow_runs")  # get_run_logger's, and the hooks'
    flow_logs.addHandler(keep)
    try:
        unservable_champion(tmp_path)  # its first deploy's notice finds the webhook down
        with pytest.raises(ServeFailed, match="cannot be loaded"):
            deploy()
    finally:
        flow_logs.removeHandler(keep)
    assert any("promotion notice not delivered: could not deliver" in m for m in said), said
    (failure,) = [m for m in said if "retrain failure: deploy" in m]
    assert "cannot be loaded" in failure and "[alert not delivered: could not deliver" in failure

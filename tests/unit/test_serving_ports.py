"""Spare ports: never the main port, never a port retrain has recorded.

The kernel draws ephemeral ports at random, so a draw that lands on the main port cannot be
caused for real on demand: the draw is a parameter, fed here with the ports it must skip."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from retrain.serving import model_server
from retrain.serving.model_server import Served, ServeFailed


def drawing(*ports: int):
    remaining = list(ports)
    return lambda: remaining.pop(0)


def test_a_spare_port_is_never_the_main_port_nor_a_recorded_one() -> None:
    assert model_server.spare_port({1234, 5000}, drawing(1234, 5000, 1234, 40001)) == 40001


def test_a_spare_port_drawn_by_the_kernel_is_free_and_not_avoided() -> None:
    taken = {model_server.free_port() for _ in range(5)}
    port = model_server.spare_port(taken)
    assert port not in taken and not model_server.port_in_use("127.0.0.1", port)


def test_no_spare_port_after_every_draw_hit_an_avoided_one_is_a_clear_failure() -> None:
    with pytest.raises(ServeFailed, match="no free port outside \\[1234\\]"):
        model_server.spare_port({1234}, lambda: 1234, tries=3)


def test_recorded_ports_are_the_servers_their_metrics_and_the_proxy(tmp_path: Path) -> None:
    main = Served(1, "127.0.0.1", 41000, "3", "models:/m/3", time.time(), "0", 41001,
                  {"host": "127.0.0.1", "port": 1234, "pid": 2, "slot": "a"})  # fmt: skip
    spare = Served(3, "127.0.0.1", 42000, "4", "models:/m/4", time.time(), "0", None)
    model_server.write_state(tmp_path, main)
    model_server.write_state(tmp_path, spare, model_server.SPARE)
    assert model_server.recorded_ports(tmp_path) == {41000, 41001, 1234, 42000}
    assert model_server.recorded_ports(tmp_path / "empty") == set()


def test_serving_beyond_loopback_needs_a_token_and_the_proxy_that_checks_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from retrain.config.settings import load_settings
    from retrain.serving import deploy

    token = "0123456789abcdef-token"
    for name in ("RETRAIN_SERVE_TOKEN", "RETRAIN_SERVE_HOST", "RETRAIN_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert deploy.guard_reason(load_settings()) is None
    assert deploy.guard_reason(load_settings(serve_host="::1")) is None
    with pytest.raises(ServeFailed, match=r"RETRAIN_SERVE_HOST=0\.0\.0\.0 serves beyond .*"
                       r"set RETRAIN_SERVE_TOKEN"):  # fmt: skip
        deploy.guard_reason(load_settings(serve_host="0.0.0.0"))
    assert deploy.guard_reason(load_settings(serve_host="0.0.0.0", serve_token=token))
    assert deploy.guard_reason(load_settings(serve_token=token)) == "RETRAIN_SERVE_TOKEN"
    refused = load_settings(serve_host="10.0.0.5", serve_token=token, proxy="off")
    with pytest.raises(ServeFailed, match=r"needs the proxy.*unset RETRAIN_PROXY=off"):
        deploy.uses_proxy(refused)
    assert deploy.uses_proxy(load_settings(proxy="off")) is False


def test_a_short_token_is_refused_without_being_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    from retrain.config.settings import load_settings
    from retrain.errors import BadInput

    monkeypatch.setenv("RETRAIN_SERVE_TOKEN", "short secret")
    with pytest.raises(BadInput, match=r"serve_token.*'<hidden>'.*at least 16") as refused:
        load_settings()
    assert "short secret" not in str(refused.value)

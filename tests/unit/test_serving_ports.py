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

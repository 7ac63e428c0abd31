"""docker/compose.yaml read as data, so tests run its services' entry commands without Docker."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).parents[2]
COMPOSE = ROOT / "docker" / "compose.yaml"
ENV_EXAMPLE = ROOT / "docker" / ".env.example"
VARIABLE = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::?[-?][^}]*)?\}")


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def service(name: str) -> dict[str, Any]:
    return compose()["services"][name]


def compose_variables() -> set[str]:
    """Every ${VAR} the compose file interpolates."""
    return set(VARIABLE.findall(COMPOSE.read_text()))


def example_variables() -> set[str]:
    lines = ENV_EXAMPLE.read_text().splitlines()
    return {line.split("=", 1)[0] for line in lines if re.match(r"^[A-Z_][A-Z0-9_]*=", line)}


def command(name: str, replace: dict[str, str] | None = None) -> list[str]:
    """The service's command, with the values after the given flags replaced (a test binds
    loopback and free ports where the container binds 0.0.0.0 and fixed ports); a flag the
    compose command does not have is an error, so the test follows the file."""
    words = list(service(name)["command"])
    for flag, value in (replace or {}).items():
        words[words.index(flag) + 1] = value
    return words


def environment_keys(name: str) -> set[str]:
    return set(service(name).get("environment", {}))

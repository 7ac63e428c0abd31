"""Install Docker Compose v2 (`docker compose`) as a Docker CLI plugin from Debian's packages.

Usage: python3 scripts/get_compose.py  -> ~/.docker/cli-plugins/docker-compose

Debian 12 packages only Compose v1 (`docker-compose` 1.29, no `up --wait`); Debian 13 packages
v2, a static Go binary that runs on Debian 12 too. This takes it from the same mirror apt uses,
checked against the sha256 of trixie's package index, without changing apt's sources.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import platform
import re
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
PLUGIN = Path.home() / ".docker" / "cli-plugins" / "docker-compose"


def mirror() -> str:
    """The Debian mirror apt uses here (deb.debian.org when none is configured)."""
    if SOURCES.exists():
        found = re.search(r"^URIs:\s*(\S+)", SOURCES.read_text(), re.M)
        if found:
            return found.group(1).rstrip("/")
    return "http://deb.debian.org/debian"


def package_entry(base: str, arch: str) -> dict[str, str]:
    """trixie's index entry of the docker-compose package (Filename, SHA256, Version)."""
    url = f"{base}/dists/trixie/main/binary-{arch}/Packages.xz"
    with urllib.request.urlopen(url, timeout=120) as answer:
        index = lzma.decompress(answer.read()).decode()
    for stanza in index.split("\n\n"):
        if re.search(r"^Package: docker-compose$", stanza, re.M):
            return dict(re.findall(r"^(Filename|SHA256|Version): (.+)$", stanza, re.M))
    sys.exit("get_compose: trixie has no docker-compose package")


def main() -> None:
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine())
    if arch is None:
        sys.exit(f"get_compose: no Debian package for {platform.machine()}")
    base = mirror()
    entry = package_entry(base, arch)
    with urllib.request.urlopen(f"{base}/{entry['Filename']}", timeout=300) as answer:
        deb = answer.read()
    if hashlib.sha256(deb).hexdigest() != entry["SHA256"]:
        sys.exit("get_compose: the package does not match trixie's index (sha256); not installed")
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "compose.deb").write_bytes(deb)
        subprocess.run(["dpkg-deb", "-x", "compose.deb", "x"], cwd=folder, check=True)
        binary = Path(folder, "x/usr/libexec/docker/cli-plugins/docker-compose")
        PLUGIN.parent.mkdir(parents=True, exist_ok=True)
        PLUGIN.write_bytes(binary.read_bytes())
    os.chmod(PLUGIN, 0o755)
    print(f"get_compose: Docker Compose {entry['Version']} at {PLUGIN}", file=sys.stderr)


if __name__ == "__main__":
    main()

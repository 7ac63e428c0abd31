"""Fetch the pinned uv binary from PyPI with the standard library only (no pip, no venv needed).

Usage: python3 scripts/get_uv.py DEST_DIR  -> installs DEST_DIR/bin/uv, verified by sha256.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import sys
import urllib.request
import zipfile
from pathlib import Path

UV_VERSION = "0.13.9"
INDEX = os.environ.get("RETRAIN_PYPI_SIMPLE", "https://pypi.org/simple")
SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"


def wheel_tag() -> tuple[str, str]:
    machine = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}
    arch = machine.get(platform.machine().lower())
    if sys.platform != "linux" or arch is None:
        sys.exit(
            f"get_uv: no bootstrap for {sys.platform}/{platform.machine()}; install uv yourself"
        )
    libc = "musllinux" if platform.libc_ver()[0] != "glibc" else "manylinux"
    return f"{libc}_", arch


def pick_wheel(project: dict) -> dict:
    libc, arch = wheel_tag()
    for file in project["files"]:
        name = file["filename"]
        if (
            name.startswith(f"uv-{UV_VERSION}-")
            and name.endswith(f"{arch}.whl")
            and libc in name
            and not file.get("yanked")
        ):
            return file
    sys.exit(f"get_uv: PyPI has no uv {UV_VERSION} wheel for {libc}{arch}")


def main(dest: Path) -> None:
    request = urllib.request.Request(f"{INDEX}/uv/", headers={"Accept": SIMPLE_JSON})
    with urllib.request.urlopen(request, timeout=60) as answer:
        wheel = pick_wheel(json.load(answer))
    with urllib.request.urlopen(wheel["url"], timeout=300) as answer:
        payload = answer.read()
    if hashlib.sha256(payload).hexdigest() != wheel["hashes"]["sha256"]:
        sys.exit("get_uv: checksum mismatch for the downloaded uv wheel; try again")
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        member = next(n for n in archive.namelist() if n.endswith("/scripts/uv"))
        target = dest / "bin" / "uv"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(archive.read(member))
    target.chmod(0o755)
    print(f"get_uv: installed uv {UV_VERSION} at {target}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))

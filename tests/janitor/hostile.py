"""Real directory trees for the janitor's tests, built the way a tenant would: the pod directory
root-owned 0755 (the logdir init container's), the container directory 1777, and everything
inside owned by the tenant's UID when the tests run as root."""

from __future__ import annotations

import os
from pathlib import Path

TENANT = 1000
UID = "0f3c2a1e-5b6d-4c7e-8f90-a1b2c3d4e5f6"
OTHER_UID = "9e8d7c6b-5a49-4838-a7b6-c5d4e3f2a1b0"
DEAD = f"team_web-1_{UID}"
NEIGHBOUR = f"other_db-0_{OTHER_UID}"


def pod_dir(root: Path, name: str = DEAD, files: int = 3) -> Path:
    """`<root>/<name>/app/` with a few log files, as the init container and the app leave it."""
    base = root / name
    base.mkdir(mode=0o755)
    app = base / "app"
    app.mkdir()
    app.chmod(0o1777)
    for i in range(files):
        (app / f"app.{i}.log").write_text(f"line {i}\n")
    return base


def as_tenant(path: Path) -> None:
    """Hand everything below `path` (not `path`) to the tenant's UID, when we can."""
    if os.geteuid() != 0:
        return
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), TENANT, TENANT, follow_symlinks=False)


def snapshot(path: Path) -> dict[str, bytes | str]:
    """Every entry below `path` with its content (files) or target (links), to prove nothing moved."""
    out: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, path)
            if os.path.islink(full):
                out[rel] = "->" + os.readlink(full)
            elif os.path.isfile(full):
                out[rel] = Path(full).read_bytes()
            else:
                out[rel] = "dir"
    return out

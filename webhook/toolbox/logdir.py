"""The log directory's init container (`podmedic logdir`): before the app starts, create each
container's directory under the pod's directory on the admin's log volume, writable by the UID
the app runs as, whatever it is.

It runs as root on a hostPath root (root-owned 0755) and as a non-root UID on a claim, whose
namespace root the admin provisions with mode 1777 (sticky, world-writable like /tmp): the UID
creates the pod's directory, owns it, and can chmod what it created without any capability.
"""

from __future__ import annotations

import os
from pathlib import Path


def prepare(root: str | Path, pod_dir: str, containers: list[str]) -> list[Path]:
    """Create each container's directory and make it writable by any UID (sticky, like /tmp),
    so an app running as non-root can write its logs. Runs in the init container, as root on a
    hostPath root, as its own non-root UID on a claim (the root must be 1777 then)."""
    made = []
    base = Path(root) / pod_dir
    base.mkdir(mode=0o755, exist_ok=True)
    for container in containers:
        path = base / container
        path.mkdir(exist_ok=True)
        os.chmod(path, 0o1777)
        made.append(path)
    return made

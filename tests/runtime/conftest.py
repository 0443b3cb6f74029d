"""The in-pod runtime, run exactly as a pod runs it: a toolbox installed by `podmedic toolbox
install` at an absolute path, started by the toolbox's own tini and busybox, in an environment
without /bin/sh on PATH, as a non-root UID where it matters."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from webhook.toolbox import argv as toolbox_argv
from webhook.toolbox import build as toolbox

NOBODY = 65534


def _missing() -> str | None:
    for path, package in toolbox.BINARIES.values():
        if not os.path.isfile(path):
            return f"{path} not found: apt-get install {package} (.ci/run does)"
    return None


@dataclass
class Toolbox:
    root: Path      # where it is installed (the pod's /podmedic)
    work: Path      # scratch: test programs, state dir, log dir (world-writable)

    @property
    def busybox(self) -> str:
        return str(self.root / "bin" / "busybox")

    def program(self, name: str, body: str) -> str:
        """A test program: a busybox sh script, as an image without a shell would need."""
        path = self.work / name
        path.write_text(f"#!{self.busybox} sh\n{body}\n")
        path.chmod(0o755)
        return str(path)

    def env(self, **extra: str) -> dict[str, str]:
        return {"PATH": "/nonexistent", "PODMEDIC_STATE_DIR": str(self.work / "state"), **extra}

    def supervise(self, program: str, options: dict[str, str] | None = None, user: int | None = None,
                  **env: str) -> subprocess.Popen[str]:
        """Start the wrapper exactly as the webhook's command prefix does (tini as PID 1's stand-in)."""
        argv = toolbox_argv.supervise_argv(str(self.root), name="app", options=options or {}) + [program]
        ids = {"user": user, "group": user, "extra_groups": []} if user is not None else {}
        return subprocess.Popen(argv, env=self.env(**env), stderr=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True, start_new_session=True, **ids)

    def pmctl(self, check: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(toolbox_argv.pmctl_argv(check, str(self.root), name="app"), env=self.env(),
                              capture_output=True, text=True, timeout=10)

    def state(self) -> dict:
        import json
        return json.loads((self.work / "state" / "app.json").read_text())


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    reason = _missing()
    if reason:
        pytest.skip(reason)
    src = tmp_path_factory.mktemp("toolbox-src")
    toolbox.build(src)
    return src


@pytest.fixture
def tb(built: Path) -> Iterator[Toolbox]:
    """A fresh install in a world-traversable directory (pytest's own tmp dirs are 0700)."""
    base = Path(tempfile.mkdtemp(prefix="podmedic-rt-"))
    os.chmod(base, 0o755)
    toolbox.install(base / "podmedic", built)
    work = base / "work"
    (work / "state").mkdir(parents=True)
    for d in (work, work / "state"):
        d.chmod(0o1777)
    yield Toolbox(base / "podmedic", work)
    shutil.rmtree(base, ignore_errors=True)


def wait_for(predicate, timeout: float = 15.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")

"""The log directory preparer as the init container runs it: as root, then the app as non-root."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
import subprocess
import sys

import pytest

from tests.conftest import ROOT

NOBODY = 65534


def write_as(uid: int, path: str) -> subprocess.CompletedProcess[str]:
    """Write a file as another UID, in a real child process (what runAsUser does)."""
    return subprocess.run(["/bin/sh", "-c", 'echo "log line" > "$1"', "sh", path], capture_output=True,
                          text=True, timeout=30, user=uid, group=uid, extra_groups=[])


@pytest.fixture
def host_root() -> Iterator[Path]:
    """A root-owned 0755 directory that other UIDs can traverse (pytest's tmp dirs are 0700)."""
    base = Path(tempfile.mkdtemp(prefix="podmedic-logs-"))
    os.chmod(base, 0o755)
    yield base
    shutil.rmtree(base)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create root-owned dirs and switch UID")
def test_non_root_app_can_write_only_after_prepare(host_root):
    root = host_root / "cephfs"
    root.mkdir(mode=0o755)
    # What the kubelet does without podmedic: root-owned 0755 subPathExpr directories.
    kubelet_made = root / "demo_web-1_uid-1" / "app"
    kubelet_made.mkdir(parents=True, mode=0o755)
    assert write_as(NOBODY, str(kubelet_made / "x.log")).returncode != 0

    done = subprocess.run([sys.executable, "-m", "webhook.cli", "logdir", "--root", str(root),
                           "--pod-dir", "demo_web-2_uid-2", "app", "sidecar"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for name in ("app", "sidecar"):
        path = root / "demo_web-2_uid-2" / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o1777
        assert write_as(NOBODY, str(path / "x.log")).returncode == 0
    # re-running (init containers restart) is fine
    again = subprocess.run([sys.executable, "-m", "webhook.cli", "logdir", "--root", str(root),
                            "--pod-dir", "demo_web-2_uid-2", "app"], cwd=ROOT, capture_output=True, timeout=60)
    assert again.returncode == 0


@pytest.mark.parametrize("bad", ["../escape", "a/b", ".."])
def test_rejects_names_that_leave_the_root(tmp_path, bad):
    done = subprocess.run([sys.executable, "-m", "webhook.cli", "logdir", "--root", str(tmp_path),
                           "--pod-dir", bad, "app"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "invalid directory name" in done.stdout
    assert list(tmp_path.iterdir()) == []

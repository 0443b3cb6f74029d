"""The log directory preparer as the init container runs it: as root, then the app as non-root."""

from __future__ import annotations

import contextlib
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
from tests.runtime.test_install import cli_as

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


LOGDIR_UID = 65532  # the pvc backend's preparer (engine/pod_level.py LOGDIR_PVC_SECURITY)


def logdir_as(uid: int, root: Path, pod_dir: str, *containers: str) -> tuple[int, str]:
    """`podmedic logdir` as uid, without capabilities: (exit code, what it printed)."""
    return cli_as(uid, "logdir", "--root", str(root), "--pod-dir", pod_dir, *containers)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch UID")
def test_on_a_claim_the_non_root_preparer_opens_the_directories_of_a_1777_root(host_root):
    """The pvc backend: the namespace's root is provisioned 1777 (`podmedic logs provision`); the
    preparer runs as 65532, creates the pod's directory and 1777 container directories, and an
    app of any other UID writes its logs there."""
    root = host_root / "claim"
    root.mkdir()
    os.chmod(root, 0o1777)
    code, printed = logdir_as(LOGDIR_UID, root, "demo_web-1_uid-1", "app")
    assert code == 0, printed
    path = root / "demo_web-1_uid-1" / "app"
    assert path.stat().st_uid == LOGDIR_UID and stat.S_IMODE(path.stat().st_mode) == 0o1777
    assert write_as(NOBODY, str(path / "x.log")).returncode == 0
    assert logdir_as(LOGDIR_UID, root, "demo_web-1_uid-1", "app")[0] == 0  # a restarted init container


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch UID")
def test_a_root_the_preparer_cannot_write_never_breaks_the_pod(host_root):
    """A claim whose root was not provisioned 1777: the preparer says why and exits 0, so the pod
    starts (the kubelet then creates the directories itself, root-owned)."""
    root = host_root / "claim"
    root.mkdir(mode=0o755)
    code, printed = logdir_as(LOGDIR_UID, root, "demo_web-1_uid-1", "app")
    assert code == 0 and "cannot prepare" in printed and "Permission denied" in printed, printed
    assert list(root.iterdir()) == []


UID = "0b0c7a4e-1111-4222-8333-444455556666"  # a pod UID's length: 36
NAME_MAX = 255  # bytes of one directory entry's name on Linux filesystems (ext4, tmpfs, CephFS)


@pytest.mark.parametrize("spare", [0, 1])
def test_a_pod_whose_directory_name_cannot_exist_is_let_through_without_the_log_directory(tmp_path, spare):
    """`<ns>_<pod>_<uid>` is one directory entry: a pod name of up to 253 bytes makes names of up
    to 354, and no filesystem creates an entry over 255 bytes -- not the preparer, nor the kubelet
    (subPathExpr), so the app container would never start. Such a pod is injected without the log
    directory (its name is known at admission; a generated name has at most 63 bytes and fits)."""
    from tests.engine.test_log_backend import config, inject, logs_volume
    from tests.engine.test_mutations import reasons
    from tests.pods import container, pod

    name = "p" * (NAME_MAX - len(f"demo__{UID}") + spare)  # spare 0: the longest that fits
    mutated, outcome = inject(config("hostPath"), pod=pod(container(command=["/app"]), name=name))
    pod_dir = f"demo_{name}_{UID}"
    done = subprocess.run([sys.executable, "-m", "webhook.cli", "logdir", "--root", str(tmp_path),
                           "--pod-dir", pod_dir, "app"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    if spare == 0:
        assert reasons(outcome, "app")["logs"] == "injected" and logs_volume(mutated) is not None
        assert done.returncode == 0 and (tmp_path / pod_dir / "app").is_dir(), done.stdout
    else:
        assert "File name too long" in done.stdout  # what the kubelet would meet too
        assert reasons(outcome, "app")["logs"] == "log-dir-name-too-long"
        assert logs_volume(mutated) is None


@pytest.fixture
def unwritable_root(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A log root on a tmpfs that is read-only or full, as a CephFS out of space or mounted
    read-only: (param) "read-only" or "full"."""
    root = tmp_path / "root"
    root.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,nr_inodes=8", "tmpfs", str(root)], check=True)
    try:
        if request.param == "read-only":
            subprocess.run(["mount", "-o", "remount,ro", str(root)], check=True)
        else:
            with contextlib.suppress(OSError):
                for i in range(100):  # every inode taken (a directory needs one, not a block)
                    (root / f"fill{i}").write_bytes(b"x")
        yield root
    finally:
        subprocess.run(["umount", str(root)], check=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount a tmpfs")
@pytest.mark.parametrize("unwritable_root,error", [("read-only", "Read-only file system"),
                                                   ("full", "No space left on device")],
                         indirect=["unwritable_root"])
def test_an_unwritable_root_is_said_to_stop_the_pod_until_it_is_writable(unwritable_root, error):
    """The preparer exits 0 as always, but must not promise that the kubelet creates the
    directories: on a full or read-only root its subPath mkdir fails too, and the app's container
    waits (CreateContainerConfigError) until the root is writable (seen on the real node,
    docs/operations.md "Log roots")."""
    code, printed = logdir_as(0, unwritable_root, "demo_web-1_uid-1", "app")
    assert code == 0 and f"cannot prepare {unwritable_root}/demo_web-1_uid-1: {error}" in printed, printed
    assert "the kubelet creates the directories instead" not in printed
    assert "until the log root is writable" in printed

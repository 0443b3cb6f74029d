"""`podmedic toolbox install` as the init container really runs it: into the kubelet's emptyDir
mount point (root-owned, mode 0777), as UID 65532 with every capability dropped; then the
toolbox is used by an app running as yet another UID."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from webhook import cli
from webhook.toolbox import argv as toolbox
from webhook.toolbox import build
from webhook.toolbox.arch import goarch

INIT_UID = 65532  # the toolbox init container's runAsUser (delivery.TOOLBOX_SECURITY)
APP_UID = 1000


def as_user(uid: int, argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    """Run a toolbox program as uid:uid with no supplementary groups. Leaving UID 0 clears the
    permitted and effective capability sets, as `capabilities: {drop: [ALL]}` does in a pod."""
    return subprocess.run(argv, user=uid, group=uid, extra_groups=[], env={"PATH": "/nonexistent", **env},
                          text=True, capture_output=True, timeout=60)


def cli_as(uid: int, *args: str) -> tuple[int, str]:
    """`podmedic ARGS` as uid:uid without capabilities, in a forked child of this interpreter
    (which lives under root's 0700 home, so a non-root exec of it would be refused). The CLI's
    modules are loaded before the fork; the child drops its IDs, then runs the real main()."""
    cli.build_parser()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 70
        try:
            sys.stdout = sys.stderr = open(write, "w", closefd=False)  # pytest replaced both
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            code = cli.main(list(args))
        except BaseException as exc:  # noqa: BLE001 - reported through the pipe
            os.write(2, f"child failed: {exc!r}\n".encode())
        finally:
            sys.stdout.flush()
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as pipe:
        output = pipe.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), output


@pytest.fixture
def world(built: Path) -> Iterator[Path]:
    """A scratch directory every UID can enter, holding a copy of the built toolbox (pytest's
    own tmp dirs are 0700, which a non-root install could not read)."""
    base = Path(tempfile.mkdtemp(prefix="podmedic-install-"))
    base.chmod(0o755)
    shutil.copytree(built, base / "src", symlinks=True)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def emptydir(base: Path) -> Path:
    """What the kubelet mounts: a root-owned 0777 directory."""
    mount = base / "podmedic"
    mount.mkdir()
    os.chown(mount, 0, 0)
    mount.chmod(0o777)
    return mount


def test_the_install_user_has_no_capabilities(world: Path):
    status = as_user(INIT_UID, [str(world / "src" / "bin" / "busybox"), "cat", "/proc/self/status"]).stdout
    caps = {k: v.strip() for k, _, v in (line.partition(":") for line in status.splitlines()) if k.startswith("Cap")}
    assert caps["CapEff"] == caps["CapPrm"] == "0000000000000000", caps


def test_install_into_a_root_owned_0777_mount_point_as_65532(world: Path):
    mount = emptydir(world)
    code, output = cli_as(INIT_UID, "toolbox", "install", str(mount), "--from", str(world / "src"))
    assert code == 0, output
    assert f"{mount} ready" in output
    st = mount.stat()  # the mount point is left as the kubelet made it
    assert (st.st_uid, st.st_mode & 0o7777) == (0, 0o777)
    for name in ("supervise", "pmctl", "forensics", "bin/busybox", "bin/tini", "bin/sigreset"):
        path = mount / name
        assert path.stat().st_uid == INIT_UID and path.stat().st_mode & 0o777 == 0o755, name
    assert (mount / "supervise").read_bytes().startswith(f"#!{mount}/bin/busybox sh\n".encode())
    # Idempotent: the init container runs again when the pod's sandbox is recreated.
    code, output = cli_as(INIT_UID, "toolbox", "install", str(mount), "--from", str(world / "src"))
    assert code == 0, output


def test_an_app_of_another_uid_uses_the_installed_toolbox(world: Path):
    mount = emptydir(world)
    assert cli_as(INIT_UID, "toolbox", "install", str(mount), "--from", str(world / "src"))[0] == 0
    state = world / "state"
    state.mkdir(mode=0o777)
    state.chmod(0o1777)
    argv = toolbox.supervise_command(str(mount), name="app", app=(),
                                     flags=toolbox.supervise_flags({"startsecs": "0", "autorestart": "false"}))
    done = as_user(APP_UID, [*argv, str(mount / "bin" / "id"), "-u"], PODMEDIC_STATE_DIR=str(state))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(APP_UID)
    status = as_user(APP_UID, toolbox.pmctl_argv("status", str(mount), name="app"), PODMEDIC_STATE_DIR=str(state))
    assert status.returncode == 0 and "EXITED" in status.stdout and "last exit 0" in status.stdout


def test_a_destination_other_uids_cannot_enter_is_an_error_not_a_half_install(world: Path):
    mount = emptydir(world)
    mount.chmod(0o770)  # root's, and closed to others: 65532 can neither use nor fix it
    code, output = cli_as(INIT_UID, "toolbox", "install", str(mount), "--from", str(world / "src"))
    assert code == 1
    assert "not readable by every UID" in output and "Traceback" not in output
    assert list(mount.iterdir()) == []


def test_the_built_toolbox_records_its_architecture(built: Path):
    """The webhook's default toolbox.architectures reads it: the binaries are this machine's,
    in the GOARCH name of the node label kubernetes.io/arch."""
    assert (built / "arch").read_text() == goarch(platform.machine()) + "\n"
    assert build.built_architecture(built) == goarch(platform.machine())

"""The in-pod toolbox: what podmedic runs inside application containers, from any image.

Layout (built by `podmedic toolbox build`, shipped in the image at /opt/podmedic/toolbox,
copied into each pod by the init container's `podmedic toolbox install /podmedic`):

    bin/busybox   Debian busybox-static: a shell and the applets, statically linked
    bin/tini      Debian tini-static: PID 1 that reaps zombies and forwards signals
    bin/sigreset  10 lines of C, static: starts the app with default signal actions (see .c)
    bin/<applet>  links to busybox (created at install), the collector's PATH
    supervise     the supervisor wrapper (POSIX sh)
    pmctl         state for people and exec probes (POSIX sh)
    forensics     the preStop collector (POSIX sh)

Why busybox sh and tini: the wrapper must run in images with no shell, no libc and no Python
(distroless, scratch). Two static binaries carry everything; the scripts are small enough to
read in a review, and tini does the one thing sh is bad at as PID 1 (reaping every orphan).
Scripts name the toolbox's own interpreter: an image without /bin/sh fails a `#!/bin/sh` script
with exit 128, so `install` rewrites the interpreter line and the webhook invokes
`<mount>/bin/busybox sh <script>` explicitly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

TOOLBOX_MOUNT = "/podmedic"
DEFAULT_SOURCE = "/opt/podmedic/toolbox"
STATE_DIR = "/podmedic-state"  # PODMEDIC_STATE_DIR; a small writable emptyDir the webhook mounts
SCRIPTS = ("supervise", "pmctl", "forensics")
BINARIES = {"busybox": ("/bin/busybox", "busybox-static"), "tini": ("/usr/bin/tini-static", "tini")}
SUPERVISOR_OPTIONS = ("autorestart", "startsecs", "startretries", "exitcodes", "stopsignal", "stopwaitsecs",
                      "on-fatal", "max-hold")


class ToolboxError(Exception):
    """The toolbox cannot be built or installed; the message says what is missing."""


def build(dest: str | Path) -> None:
    """Assemble a toolbox from the package's scripts and the Debian static binaries."""
    dest = Path(dest)
    (dest / "bin").mkdir(parents=True, exist_ok=True)
    for name, (path, package) in BINARIES.items():
        if not os.path.isfile(path):
            raise ToolboxError(f"{path} not found: apt-get install {package}")
        shutil.copy2(path, dest / "bin" / name)
    for script in SCRIPTS:
        (dest / script).write_bytes(_package_file(script))
    _compile_sigreset(dest / "bin" / "sigreset")
    dest.chmod(0o755)
    _open_up(dest)


def _package_file(name: str) -> bytes:
    return resources.files("webhook").joinpath("toolbox", name).read_bytes()


def _compile_sigreset(out: Path) -> None:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise ToolboxError("no C compiler to build bin/sigreset: apt-get install gcc libc6-dev")
    source = out.with_suffix(".c")
    source.write_bytes(_package_file("sigreset.c"))
    try:
        subprocess.run([compiler, "-static", "-Os", "-s", "-o", str(out), str(source)], check=True,
                       capture_output=True, text=True, timeout=120)
    except subprocess.CalledProcessError as exc:
        raise ToolboxError(f"building bin/sigreset failed (static libc: apt-get install libc6-dev): {exc.stderr}")
    finally:
        source.unlink()


def install(dest: str | Path, source: str | Path | None = None) -> None:
    """Copy a built toolbox into dest (idempotent): world-readable and executable, so an app
    running as any UID can use it; interpreter lines and applet links point into dest.

    dest itself is usually not ours: in a pod it is the kubelet's emptyDir mount point, owned
    by root with mode 0777, while the init container runs as 65532 without capabilities. Only
    what install creates gets its mode set; dest is left as it is when every UID can already
    enter it, and is an error (not a silent half-install) when it cannot."""
    src = Path(source or os.environ.get("PODMEDIC_TOOLBOX_DIR") or DEFAULT_SOURCE)
    dest = Path(dest)
    if not (src / "bin" / "busybox").is_file():
        raise ToolboxError(f"{src} is not a built toolbox (no bin/busybox); see `podmedic toolbox build`")
    _open_dest(dest)
    (dest / "bin").mkdir(exist_ok=True)
    for name in (*BINARIES, "sigreset"):
        shutil.copy2(src / "bin" / name, dest / "bin" / name)
    interpreter = f"#!{dest}/bin/busybox sh\n".encode()
    for script in SCRIPTS:
        body = (src / script).read_bytes()
        body = body.split(b"\n", 1)[1] if body.startswith(b"#!") else body
        (dest / script).write_bytes(interpreter + body)
    applets = subprocess.run([str(dest / "bin" / "busybox"), "--list"], capture_output=True, text=True,
                             check=True, timeout=30).stdout.split()
    for applet in applets:
        link = dest / "bin" / applet
        if applet not in BINARIES and not link.exists():
            link.symlink_to("busybox")
    _open_up(dest)


def _open_dest(dest: Path) -> None:
    """Create dest (0755) if missing; else require that any UID can read and enter it."""
    if not dest.exists():
        dest.mkdir(parents=True)
        dest.chmod(0o755)
        return
    if dest.stat().st_mode & 0o005 != 0o005:
        try:
            dest.chmod(0o755)
        except PermissionError:
            raise ToolboxError(f"{dest} is not readable by every UID (mode {dest.stat().st_mode & 0o7777:o}) "
                               "and not ours to change: an app running as another UID could not use the toolbox")


def _open_up(root: Path) -> None:
    """Everything below root 0755 (all of it made by us): the app may run as any UID."""
    for path in root.rglob("*"):
        if not path.is_symlink():
            path.chmod(0o755)


def supervise_argv(mount: str = TOOLBOX_MOUNT, *, name: str, options: Mapping[str, str]) -> list[str]:
    """The argv prefix before the app's command: tini as PID 1, then the wrapper, then `--`."""
    unknown = set(options) - set(SUPERVISOR_OPTIONS)
    if unknown:
        raise ValueError(f"unknown supervisor options: {', '.join(sorted(unknown))}")
    flags = [f"--{key}={options[key]}" for key in SUPERVISOR_OPTIONS if key in options]
    return [f"{mount}/bin/tini", "-s", "--", f"{mount}/bin/busybox", "sh", f"{mount}/supervise",
            "--name", name, *flags, "--"]


def forensics_argv(mount: str = TOOLBOX_MOUNT, *, name: str, out_dir: str | None, budget_seconds: int) -> list[str]:
    """The exec preStop command; without out_dir the summary goes to the termination message."""
    argv = [f"{mount}/bin/busybox", "sh", f"{mount}/forensics", "--name", name, "--budget", str(budget_seconds)]
    return argv + (["--out", out_dir] if out_dir else [])


def pmctl_argv(check: Literal["alive", "ready", "status"], mount: str = TOOLBOX_MOUNT, *, name: str) -> list[str]:
    return [f"{mount}/bin/busybox", "sh", f"{mount}/pmctl", check, name]


def register(sub: Any) -> None:
    p = sub.add_parser("toolbox", help="build or install the in-pod toolbox")
    commands = p.add_subparsers(dest="toolbox_command", required=True)
    b = commands.add_parser("build", help="assemble a toolbox from the package and busybox-static/tini")
    b.add_argument("dest")
    b.set_defaults(func=lambda a: _run(build, a.dest))
    i = commands.add_parser("install", help="copy a built toolbox into DEST (the init container's job)")
    i.add_argument("dest")
    i.add_argument("--from", dest="source", help=f"built toolbox (default $PODMEDIC_TOOLBOX_DIR or {DEFAULT_SOURCE})")
    i.set_defaults(func=lambda a: _run(install, a.dest, a.source))


def _run(action: Any, *args: Any) -> int:
    try:
        action(*args)
    except (ToolboxError, OSError, subprocess.SubprocessError) as exc:
        print(f"podmedic toolbox: {exc}")
        return 1
    print(f"podmedic toolbox: {args[0]} ready")
    return 0

"""Building and installing the in-pod toolbox (see the package docstring for its layout):
`podmedic toolbox build` assembles it where the image is built, `podmedic toolbox install` (the
init container) copies it into the pod's emptyDir.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from importlib import resources
from pathlib import Path

from webhook.toolbox.arch import goarch

DEFAULT_SOURCE = "/opt/podmedic/toolbox"
SCRIPTS = ("supervise", "pmctl", "forensics")
BINARIES = {"busybox": ("/bin/busybox", "busybox-static"), "tini": ("/usr/bin/tini-static", "tini")}
ARCH_FILE = "arch"  # the toolbox's architecture, as the node label kubernetes.io/arch names it


class ToolboxError(Exception):
    """The toolbox cannot be built or installed; the message says what is missing."""


def build(dest: str | Path) -> None:
    """Assemble a toolbox from the package's scripts and the Debian static binaries, which are
    this machine's: its architecture is recorded (ARCH_FILE) for the webhook's default
    toolbox.architectures."""
    dest = Path(dest)
    (dest / "bin").mkdir(parents=True, exist_ok=True)
    for name, (path, package) in BINARIES.items():
        if not os.path.isfile(path):
            raise ToolboxError(f"{path} not found: apt-get install {package}")
        shutil.copy2(path, dest / "bin" / name)
    for script in SCRIPTS:
        (dest / script).write_bytes(_package_file(script))
    _compile_sigreset(dest / "bin" / "sigreset")
    (dest / ARCH_FILE).write_text(goarch(platform.machine()) + "\n")
    dest.chmod(0o755)
    _open_up(dest)


def built_architecture(source: str | Path | None = None) -> str | None:
    """The architecture of the built toolbox (what `build` recorded), or None without one. The
    image always has it (its Dockerfile builds the toolbox); elsewhere -- offline `podmedic
    inject` on a laptop, a checkout -- the machine running the command says nothing of the
    image's architecture, so it is not guessed from it."""
    try:
        return (_source(source) / ARCH_FILE).read_text().strip()
    except OSError:  # none there (or unreadable)
        return None


def _source(source: str | Path | None) -> Path:
    return Path(source or os.environ.get("PODMEDIC_TOOLBOX_DIR") or DEFAULT_SOURCE)


def _package_file(name: str) -> bytes:
    return resources.files("webhook.toolbox").joinpath(name).read_bytes()


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
    src = _source(source)
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

"""The in-pod runtime, run exactly as a pod runs it: a toolbox installed by `podmedic toolbox
install` at an absolute path, started by the toolbox's own tini and busybox, in an environment
without /bin/sh on PATH, as a non-root UID where it matters."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
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
    sessions: list[subprocess.Popen[str]] = field(default_factory=list)  # what supervise started

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
                  ignored: tuple[signal.Signals, ...] = (), exit_bundles: tuple[str, int] | None = None,
                  cgroup: Path | None = None, stdin: int | None = None, args: tuple[str, ...] = (),
                  redact: tuple[str, ...] = (), termination_log: bool = True, flags: tuple[str, ...] = (),
                  **env: str) -> subprocess.Popen[str]:
        """Start the wrapper exactly as the webhook's command prefix does (tini as PID 1's stand-in),
        in a session of its own, with the `ignored` signals ignored as a parent shell may leave them
        (nohup, a background job), in the cgroup directory `cgroup` (its cgroup.procs) when given,
        as a container's processes are, reading `stdin` (default: the test's own), with the app's
        `args` after its program and the `redact` flags (secret_env) after the others; without
        `termination_log`, the flag of a FallbackToLogsOnError container; `flags`, last, as the engine
        rendered them for one container. The fixture's teardown kills whatever the session started."""
        off = () if termination_log else (toolbox_argv.NO_TERMINATION_LOG,)
        rendered = (*toolbox_argv.supervise_flags(options or {}, exit_bundles), *off, *redact, *flags)
        argv = toolbox_argv.supervise_command(str(self.root), name="app", app=[program, *args], flags=rendered)
        ids = {"user": user, "group": user, "extra_groups": []} if user is not None else {}

        def prepare() -> None:
            if cgroup is not None:
                (cgroup / "cgroup.procs").write_text(str(os.getpid()))
            for sig in ignored:
                signal.signal(sig, signal.SIG_IGN)

        proc = subprocess.Popen(argv, env=self.env(**env), stdin=stdin, stderr=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True,
                                start_new_session=True, preexec_fn=prepare if ignored or cgroup else None, **ids)
        self.sessions.append(proc)
        return proc

    def processes(self) -> set[int]:
        """Every process still alive (zombies aside) that the sessions started: in a session, or a
        descendant of one that left it (setsid) and its process group."""
        table: dict[int, tuple[int, int, str]] = {}  # pid -> (ppid, sid, state)
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                table[int(entry)] = (int(fields[1]), int(fields[3]), fields[0])
        sids = {p.pid for p in self.sessions}
        found = {pid for pid, (_, sid, _) in table.items() if sid in sids}
        grew = True
        while grew:
            more = {pid for pid, (ppid, _, _) in table.items() if ppid in found} - found
            found |= more
            grew = bool(more)
        return {pid for pid in found if table[pid][2] != "Z"}

    def kill_all(self) -> None:
        """SIGKILL every process the sessions started (a failed test leaves tini, the wrapper
        and an app that loops or holds), collect the wrappers, and check that none is left."""
        deadline = time.monotonic() + 10
        while True:
            left = self.processes()
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            for proc in self.sessions:
                if proc.poll() is None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.communicate(timeout=1)
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        left = self.processes()
        assert not left, f"processes left behind by the test: {sorted(left)}"

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
    installed = Toolbox(base / "podmedic", work)
    try:
        yield installed
    finally:
        try:
            installed.kill_all()
        finally:
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def small_volume(tb: Toolbox) -> Iterator[Callable[[str, int], Path]]:
    """small_volume(NAME, KIB): a tmpfs of KIB KiB mounted at tb.work/NAME (mode 1777), as the
    kubelet mounts a sizeLimit'd memory emptyDir (the 1Mi state dir) and as a full log volume
    answers: ENOSPC. Mounting needs root (CAP_SYS_ADMIN): the test skips without it."""
    mounted: list[Path] = []

    def mount(name: str, kib: int) -> Path:
        path = tb.work / name
        path.mkdir(exist_ok=True)  # "state": the wrapper's usual state dir, now on the volume
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k,mode=1777", "tmpfs", str(path)],
                              capture_output=True, text=True)
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs (needs root): {done.stderr.strip()}")
        mounted.append(path)
        return path

    try:
        yield mount
    finally:
        tb.kill_all()  # nothing may hold the volume open
        for path in mounted:
            subprocess.run(["umount", "-l", str(path)], check=True)


def wait_for(predicate, timeout: float = 15.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")

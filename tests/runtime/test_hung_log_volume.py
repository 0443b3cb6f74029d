"""A log volume that stops answering (CephFS or NFS whose server is gone): the collector returns
within its budget plus MARGIN whatever the log directory does, and writes what is not on that
volume. Three real hangs: a FIFO where the collector opens a file for writing (open() waits for
a reader forever, a hang that SIGKILL ends); a frozen filesystem (`fsfreeze` of an ext4 on a loop
device: every write waits in D state, and SIGKILL does not end it until the thaw, as on a hard
NFS mount); and a FUSE mount whose server never answers (every lookup, stat and open waits, as
on NFS: the log directory itself cannot even be looked up). Before, the preStop held the
container until the end of its grace period and the wrapper never restarted a crashed app, nor
started the app at all after an unclean run (it moves that run's pre-mortem snapshot there)."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.runtime.conftest import NOBODY, wait_for
from tests.runtime.test_exit_bundles import bundles, exit_bundle
from tests.runtime.test_forensics import collect
from tests.runtime.test_unclean_exit import FAST, NO_CGROUP, SERVER, group_kill, premortem, running, stop, summary, unclean_lines

MARGIN = 2  # docs/toolbox.md: the collector returns within its budget plus 2 s
SLACK = 2   # this machine's own delays (process start, a loaded CI host); a hang is forever
BUDGET = 2
FAST_START = 1 + 5  # startsecs, and the wrapper's own start on a loaded machine


@pytest.fixture
def frozen(tb) -> Iterator[tuple[Path, Callable[[], None]]]:
    """(LOGS, freeze): LOGS a directory (mode 1777) on an ext4 of its own on a loop device;
    freeze() freezes that filesystem until the test ends (needs root: skips without)."""
    if os.geteuid() != 0 or not all(shutil.which(t) for t in ("mkfs.ext4", "fsfreeze", "mount")):
        pytest.skip("a frozen filesystem needs root, mkfs.ext4, fsfreeze and mount")
    scratch = Path(tempfile.mkdtemp(prefix="podmedic-frozen-"))
    image, mnt = scratch / "volume.img", tb.work / "volume"
    mnt.mkdir()
    with image.open("wb") as f:
        f.truncate(16 * 2**20)
    subprocess.run(["mkfs.ext4", "-q", str(image)], check=True, capture_output=True)
    done = subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], capture_output=True, text=True)
    if done.returncode:
        shutil.rmtree(scratch)
        pytest.skip(f"cannot mount a loop device: {done.stderr.strip()}")
    logs = mnt / "logs"
    logs.mkdir()
    logs.chmod(0o1777)  # what podmedic logdir makes of the container's log directory
    frozen_now = []

    def freeze() -> None:
        subprocess.run(["fsfreeze", "--freeze", str(mnt)], check=True)
        frozen_now.append(True)

    try:
        yield logs, freeze
    finally:
        if frozen_now:
            subprocess.run(["fsfreeze", "--unfreeze", str(mnt)], check=True)
        tb.kill_all()
        wait_for(lambda: not stuck(tb), timeout=10)  # what waited in D state dies at the thaw
        subprocess.run(["umount", str(mnt)], check=True)
        shutil.rmtree(scratch)


@pytest.fixture
def silent_fuse(tb) -> Iterator[Path]:
    """A FUSE mount (allow_other) whose server never reads its device, not even the kernel's
    INIT: every request on it waits (killably, as on NFS) until the test closes the device, which
    aborts the connection. Needs root and /dev/fuse: skips without."""
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        pytest.skip("a FUSE mount needs root and /dev/fuse")
    mnt = tb.work / "fuse"
    mnt.mkdir()
    device = os.open("/dev/fuse", os.O_RDWR)
    libc = ctypes.CDLL(None, use_errno=True)
    options = f"fd={device},rootmode=40000,user_id=0,group_id=0,allow_other".encode()
    if libc.mount(b"podmedic-silent", str(mnt).encode(), b"fuse", 0, options) != 0:
        os.close(device)
        pytest.skip(f"cannot mount FUSE: {os.strerror(ctypes.get_errno())}")
    try:
        yield mnt
    finally:
        os.close(device)  # aborts: whatever still waits gets ENOTCONN
        tb.kill_all()
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def stuck(tb) -> list[int]:
    """Live processes still running the collector (its own busybox, any of its helpers)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                exe = os.readlink(f"/proc/{entry}/exe")
                state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if exe == tb.busybox and state != "Z":
                found.append(int(entry))
    return found


def test_a_frozen_log_volume_bounds_the_prestop_and_the_summary_goes_to_the_termination_message(tb, frozen):
    logs, freeze = frozen
    term = tb.work / "termination-log"
    term.write_text("")  # the kubelet creates it for every container start
    freeze()  # mkdir of forensics/ waits in D state, unkillable
    done, took = collect(tb, str(logs), budget=BUDGET, PODMEDIC_TERMINATION_LOG=str(term))
    assert done.returncode == 0 and took < BUDGET + MARGIN + SLACK, (took, done.stderr)
    text = term.read_text()
    assert text.startswith("podmedic forensics ") and "container app" in text, text
    assert f"log directory {logs} did not answer within {BUDGET + MARGIN}s: no complete bundle" in text, text
    assert stuck(tb), "the hang was not real: nothing waits on the frozen volume"


def test_a_frozen_log_volume_leaves_the_apps_own_termination_message(tb, frozen):
    logs, freeze = frozen
    term = tb.work / "termination-log"
    term.write_text("FATAL: config missing\n")
    freeze()
    done, took = collect(tb, str(logs), budget=BUDGET, PODMEDIC_TERMINATION_LOG=str(term))
    assert done.returncode == 0 and took < BUDGET + MARGIN + SLACK
    assert term.read_text() == "FATAL: config missing\n"


def test_a_log_volume_frozen_mid_bundle_bounds_the_exit_collector(tb, frozen):
    """Frozen after the first bundle: the rate limit's bucket, the bundle's directory or its
    files wait. The wrapper waits for this collector before it restarts the app."""
    logs, freeze = frozen
    assert exit_bundle(tb, logs, "--exit", "1", budget=BUDGET).returncode == 0
    assert len(bundles(logs)) == 1
    freeze()
    # its stderr is the container's, which a worker left waiting keeps open (as any of the
    # container's processes waiting on the volume would): a file, not a pipe read to its end
    err = tb.work / "stderr"
    argv = [tb.busybox, "sh", str(tb.root / "forensics"), "--name", "app", "--budget", str(BUDGET),
            "--out", str(logs), "--exit", "1"]
    started = time.monotonic()
    with err.open("w") as f:
        done = subprocess.run(argv, env=tb.env(), stdout=f, stderr=f, timeout=BUDGET + 10)
    took = time.monotonic() - started
    assert done.returncode == 0 and took < BUDGET + MARGIN + SLACK, (took, err.read_text())
    assert err.read_text().splitlines() == [
        f"podmedic-forensics: app: exit 1: log directory {logs} did not answer within {BUDGET + MARGIN}s "
        "(a hung volume?): no complete exit bundle"], err.read_text()
    assert stuck(tb), "the hang was not real: nothing waits on the frozen volume"


def fifo_where_the_bucket_is_written(logs: Path) -> Path:
    """The rate limit's bucket is written to .exit-app.ratelimit.tmp first: a FIFO there blocks
    that open() forever, as a write to a hung mount does."""
    (logs / "forensics").mkdir(mode=0o755)
    fifo = logs / "forensics" / ".exit-app.ratelimit.tmp"
    os.mkfifo(fifo, 0o666)
    return fifo


def test_a_write_that_never_returns_bounds_the_exit_collector_and_leaves_nothing_waiting(tb):
    logs = tb.work / "logs"
    logs.mkdir()
    logs.chmod(0o1777)
    fifo_where_the_bucket_is_written(logs)
    exit_collector_gives_up_in_time(tb, logs, "exit 3", "--exit", "3")
    assert bundles(logs) == []


def test_the_wrapper_restarts_a_crashed_app_though_the_log_volume_hangs(tb):
    """The wrapper waits for the exit collector before the restart: a collector that never
    returned kept the app down for good (the container stayed, neither restarted nor held)."""
    logs = tb.work / "logs"
    logs.mkdir()
    logs.chmod(0o1777)
    fifo_where_the_bucket_is_written(logs)
    app = tb.program("crash.sh", "sleep 1.2; exit 3")
    tb.supervise(app, {"startsecs": "1", "restart-backoff-max": "0"}, exit_bundles=(str(logs), BUDGET))
    wait_for(lambda: (tb.work / "state" / "app.json").exists() and tb.state()["start_count"] >= 2, timeout=BUDGET + MARGIN + SLACK + 5)
    assert bundles(logs) == []
    history = [h["state"] for h in tb.state()["history"]]
    assert history.count("STARTING") >= 2, history


def test_a_log_directory_that_cannot_even_be_looked_up_bounds_the_prestop(tb, silent_fuse):
    logs = silent_fuse / "logs"
    term = tb.work / "termination-log"
    term.write_text('{"podmedic":"summary","name":"app","state":"RUNNING"}\n')  # the wrapper's: replaced
    term.chmod(0o666)  # the container's UID writes its termination log
    done, took = collect(tb, str(logs), budget=BUDGET, user=NOBODY, PODMEDIC_TERMINATION_LOG=str(term))
    assert done.returncode == 0 and took < BUDGET + MARGIN + SLACK, (took, done.stderr)
    assert f"log directory {logs} did not answer within {BUDGET + MARGIN}s: no complete bundle" in term.read_text()
    wait_for(lambda: not stuck(tb), timeout=5)  # SIGKILL ends a FUSE wait: nothing is left waiting


def test_a_log_directory_that_cannot_even_be_looked_up_bounds_the_exit_collector(tb, silent_fuse):
    exit_collector_gives_up_in_time(tb, silent_fuse / "logs", "exit SIGSEGV", "--signal", "SEGV", user=NOBODY)


def exit_collector_gives_up_in_time(tb, logs: Path, what: str, *exit_args: str, **kwargs: Any) -> None:
    """The exit collector on a log directory that does not answer returns within the bound with one
    line, and leaves nothing waiting on it (a hang SIGKILL ends: a FIFO's open, a FUSE lookup)."""
    started = time.monotonic()
    done = exit_bundle(tb, logs, *exit_args, budget=BUDGET, **kwargs)
    took = time.monotonic() - started
    assert done.returncode == 0 and took < BUDGET + MARGIN + SLACK, (took, done.stderr)
    assert done.stderr.splitlines() == [
        f"podmedic-forensics: app: {what}: log directory {logs} did not answer within {BUDGET + MARGIN}s "
        "(a hung volume?): no complete exit bundle"], done.stderr
    wait_for(lambda: not stuck(tb), timeout=5)


def unclean_start_on(tb, logs: Path, hang: Callable[[], None],
                     budget: int = BUDGET) -> tuple[subprocess.Popen[str], Path, int]:
    """A wrapper RUNNING with exit bundles to `logs`, a pre-mortem snapshot in the state dir, then
    an OOM group kill (the summary says "clean":false); hang() makes the log volume stop
    answering, and a new wrapper starts on the same state dir, which finds the snapshot to move
    into `logs`. (the new wrapper, the snapshot, the killed wrapper's pid)"""
    app = tb.program("srv.sh", SERVER)
    first = tb.supervise(app, FAST, exit_bundles=(str(logs), budget), PODMEDIC_MEMORY_CGROUP=NO_CGROUP)
    wait_for(lambda: running(tb))
    snap = premortem(tb)
    wait_for(lambda: summary(tb)["state"] == "RUNNING")
    before = tb.state()["wrapper_pid"]
    group_kill(tb, first)
    assert summary(tb)["clean"] is False
    hang()
    return tb.supervise(app, FAST, exit_bundles=(str(logs), budget), PODMEDIC_MEMORY_CGROUP=NO_CGROUP), snap, before


def started_though_the_snapshot_did_not_move(tb, logs: Path, second, snap: Path, before: int) -> None:
    """The app runs within the bound, the snapshot is still in the state dir, and one line says why."""
    wait_for(lambda: running(tb, before), timeout=BUDGET + MARGIN + SLACK + FAST_START)
    assert tb.state()["previous_exit"] == "unclean" and tb.state()["previous_premortem"] is None
    assert (snap / "processes.txt").read_text() == "pid 42 rss 900M\n"
    assert summary(tb)["premortem"] == str(snap)
    _, err = stop(second)
    lines = unclean_lines(err)
    assert len(lines) == 1 and lines[0].endswith(
        f"; log directory {logs} did not answer within {BUDGET + MARGIN}s (a hung volume?): "
        f"pre-mortem snapshot left in {snap}"), err
    assert all(line.startswith("podmedic-supervise: app: ") for line in err.splitlines()), err


def test_an_unclean_start_on_a_frozen_log_volume_starts_the_app(tb, frozen):
    """check_previous moves the snapshot into LOGDIR/forensics: its mkdir waited in D state, and the
    wrapper never started the app."""
    logs, freeze = frozen
    second, snap, before = unclean_start_on(tb, logs, freeze)
    started_though_the_snapshot_did_not_move(tb, logs, second, snap, before)
    assert stuck(tb), "the hang was not real: nothing waits on the frozen volume"


def test_an_unclean_start_where_the_log_directory_cannot_even_be_looked_up_starts_the_app(tb, silent_fuse):
    """The destination's stat ([ -e ]) is the wrapper's own builtin: it waited on the lookup."""
    logs = silent_fuse / "logs"
    second, snap, before = unclean_start_on(tb, logs, lambda: None)
    started_though_the_snapshot_did_not_move(tb, logs, second, snap, before)
    wait_for(lambda: not stuck(tb), timeout=5)  # SIGKILL ends a FUSE wait: nothing is left waiting


def test_a_restarted_container_is_not_ready_while_the_wrapper_looks_at_the_run_before(tb, silent_fuse):
    """The killed run's state file (RUNNING) outlives the container in the state dir, an emptyDir:
    `pmctl ready` answered 0 from it, Ready before the app started, for as long as check_previous
    took (here the move of the snapshot waits on the hung volume for its whole budget, 30 s)."""
    second, snap, before = unclean_start_on(tb, silent_fuse / "logs", lambda: None, budget=30)
    wait_for(lambda: tb.state()["wrapper_pid"] != before, timeout=FAST_START)
    assert tb.state()["state"] == "STOPPED" and tb.state()["start_count"] == 0, tb.state()
    ready = tb.pmctl("ready")
    assert ready.returncode == 1 and ready.stdout == "", ready
    assert tb.pmctl("alive").returncode == 0
    assert (snap / "processes.txt").exists() and summary(tb)["clean"] is False  # check_previous still waits

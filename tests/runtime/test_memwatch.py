"""The wrapper's memory watch and its view of an OOM kill, with the memory cgroup's files written
by the test (cgroup v2 and v1 layouts, $PODMEDIC_MEMORY_CGROUP): the working set crossing
memwatch-threshold writes one pre-mortem snapshot to STATE_DIR/NAME.premortem/ that the summary names,
file cache does not count, no limit means no watch, and an app killed by SIGKILL while oom_kill
went up is OOMKilled (state file, pmctl, summary, an `-exit-oomkilled` bundle holding the
snapshot), and an exit bundle waits for a snapshot still being written (but a stop does not). The kernel's own OOM killer is in test_oom.py. Real processes under the installed toolbox."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.runtime.conftest import wait_for
from webhook.toolbox import argv as toolbox_argv

MiB = 1 << 20
SECRET = "hunter2-" + os.urandom(4).hex()
LIMIT = 100 * MiB
WATCH = {"startsecs": "0", "memwatch-interval": "1", "memwatch-threshold": "90"}
SERVER = "while :; do sleep 0.1; done"
# name: (usage, limit, stat inactive key, oom counter file)
LAYOUTS = {
    "v2": ("memory.current", "memory.max", "inactive_file", "memory.events"),
    "v1": ("memory.usage_in_bytes", "memory.limit_in_bytes", "total_inactive_file", "memory.oom_control"),
}


def put(path: Path, text: str) -> None:
    """Replace a counter file at once, as the kernel's files never read half-written."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.rename(path)


class FakeCgroup:
    def __init__(self, root: Path, layout: str, limit: str = str(LIMIT)):
        self.dir = root / f"cg-{layout}"
        self.dir.mkdir()
        self.usage_name, limit_name, self.inactive_key, self.events_name = LAYOUTS[layout]
        put(self.dir / limit_name, limit + "\n")
        self.set(10 * MiB)
        self.oom_kill(0)

    def set(self, usage: int, inactive: int = 0) -> None:
        put(self.dir / "memory.stat", f"anon {usage - inactive}\n{self.inactive_key} {inactive}\nactive_file 0\n")
        put(self.dir / self.usage_name, f"{usage}\n")

    def oom_kill(self, n: int) -> None:
        put(self.dir / self.events_name, f"low 0\nhigh 0\nmax 3\noom 0\noom_kill {n}\n")


def premortem(tb) -> Path:
    return tb.work / "state" / "app.premortem"


# The wrapper runs the snapshot's collector under `timeout 20`; a few seconds more for the tick
# that finds the crossing and the collector's start on a loaded machine
SNAPSHOT_BOUND = 20 + 5


def snapshot_written(tb) -> bool:
    """The snapshot is complete: its last file is there and its collector no longer runs. The
    collector creates supervisor.txt before it writes it, and then cuts three of the files through
    copies renamed over them: seen at once, the directory still held such a .tmp, gone by the
    time it was looked at (and on a loaded machine the collector needed more than 10 s)."""
    if not (premortem(tb) / "supervisor.txt").exists():
        return False
    for pid in tb.processes():
        with contextlib.suppress(OSError):
            if b"\0--premortem\0" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return False
    return True


def summary(tb) -> dict:
    return json.loads((tb.work / "state" / "app.summary").read_text())


def stop(proc: subprocess.Popen[str]) -> str:
    """SIGTERM, as the kubelet stops a container, and the wrapper's stderr once it and everything
    holding its stderr are gone. The wrapper SIGKILLs the app after stopwaitsecs (10 s): 40 s is
    slack for a loaded machine. Should that pass, the failure shows what was still running (a CI
    run once timed out at 20 s and said nothing more)."""
    os.kill(proc.pid, signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=40)
    except subprocess.TimeoutExpired:
        exited = proc.poll()
        listing = subprocess.run(["ps", "-e", "-o", "pid,ppid,sid,stat,etime,args"], capture_output=True,
                                 text=True, timeout=10).stdout.splitlines()
        session = [row for row in listing[1:] if row.split()[2] == str(proc.pid)]
        with contextlib.suppress(ProcessLookupError):  # its last process may have just ended
            os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=10)
        pytest.fail(f"40 s after SIGTERM: tini {'running' if exited is None else f'exited {exited}'}; still in its "
                    f"session:\n{listing[0]}\n" + "\n".join(session) + f"\nstderr:\n{err}")
    return err


def log_directory(tb) -> Path:
    logs = tb.work / "logs"
    logs.mkdir()
    logs.chmod(0o1777)
    return logs


@pytest.fixture
def multiline_argv():
    """A process whose arguments hold a newline, as a CI runner's `sh -c SCRIPT` does: it must
    stay one row of processes.txt (this failed in CI, where the runner shares our cgroup)."""
    proc = subprocess.Popen(["sh", "-c", "sleep 60; :", "first line\nsecond line", f"--api-token={SECRET}"],
                            start_new_session=True)
    yield proc
    os.killpg(proc.pid, signal.SIGKILL)  # the shell and its sleep
    proc.wait()


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_crossing_the_threshold_writes_one_snapshot_that_the_summary_names(tb, layout, multiline_argv):
    cg = FakeCgroup(tb.work, layout)
    proc = tb.supervise(tb.program("srv.sh", SERVER), WATCH, PODMEDIC_MEMORY_CGROUP=str(cg.dir))
    wait_for(lambda: tb.pmctl("ready").returncode == 0)
    # 95 % of the limit, but a third of it inactive file cache: the working set is 62 %
    cg.set(95 * MiB, inactive=33 * MiB)
    time.sleep(2.5)  # more than two ticks
    assert not premortem(tb).exists()
    cg.set(95 * MiB, inactive=1 * MiB)  # 94 %
    wait_for(lambda: snapshot_written(tb), timeout=SNAPSHOT_BOUND)
    assert summary(tb)["premortem"] == str(premortem(tb))
    app = tb.state()["pid"]
    text = (premortem(tb) / "summary.txt").read_text()
    assert f"working set {94 * MiB} bytes (94% of the limit), limit {LIMIT} bytes, threshold 90%" in text
    rows = (premortem(tb) / "processes.txt").read_text().splitlines()[1:]
    rss = {int(r.split()[1]): int(r.split()[0]) for r in rows}
    assert multiline_argv.pid in rss
    listed = (premortem(tb) / "processes.txt").read_text()
    assert "first line second line --api-token=<redacted>" in listed and SECRET not in listed
    assert stat.S_IMODE(premortem(tb).stat().st_mode) == 0o700  # the app's UID and root only
    assert {stat.S_IMODE(f.stat().st_mode) for f in premortem(tb).iterdir()} == {0o600}
    assert rss[app] > 0 and list(rss.values()) == sorted(rss.values(), reverse=True)  # largest first
    assert "Rss:" in (premortem(tb) / "smaps_rollup.txt").read_text()
    assert f"=== cgroup {layout} memory.stat" in (premortem(tb) / "memory.txt").read_text()
    first = (premortem(tb) / "summary.txt").stat().st_mtime_ns
    # down and up again within restart-window: no second snapshot (three ticks each way, so a
    # loaded machine still sees both)
    cg.set(50 * MiB)
    time.sleep(3.5)
    cg.set(99 * MiB)
    time.sleep(3.5)
    err = stop(proc)
    assert err.count("pre-mortem snapshot in") == 1, err
    assert "memory at 99% of the limit: no new pre-mortem snapshot (one per 300s)" in err
    assert (premortem(tb) / "summary.txt").stat().st_mtime_ns == first


@pytest.mark.parametrize("layout,limit", [("v2", "max"), ("v1", "9223372036854771712")])
def test_no_memory_limit_no_watch(tb, layout, limit):
    cg = FakeCgroup(tb.work, layout, limit=limit)
    cg.set(10 ** 15)
    proc = tb.supervise(tb.program("srv.sh", SERVER), WATCH, PODMEDIC_MEMORY_CGROUP=str(cg.dir))
    wait_for(lambda: tb.pmctl("ready").returncode == 0)
    time.sleep(2.5)
    err = stop(proc)
    assert "memory watch" not in err and not premortem(tb).exists()
    assert not (tb.work / "state" / ".app.tick").exists()


def test_threshold_zero_turns_the_watch_off(tb):
    cg = FakeCgroup(tb.work, "v2")
    cg.set(99 * MiB)
    proc = tb.supervise(tb.program("srv.sh", SERVER), {**WATCH, "memwatch-threshold": "0"},
                        PODMEDIC_MEMORY_CGROUP=str(cg.dir))
    wait_for(lambda: tb.pmctl("ready").returncode == 0)
    time.sleep(2.5)
    assert "memory watch" not in stop(proc) and not premortem(tb).exists()


def test_the_watch_does_not_delay_noticing_the_exit(tb):
    """The wrapper sleeps in `read -t 60`; the app's SIGCHLD must end it at once."""
    cg = FakeCgroup(tb.work, "v2")
    proc = tb.supervise(tb.program("quit.sh", "sleep 1; exit 3"),
                        {**WATCH, "memwatch-interval": "60", "autorestart": "false"},
                        PODMEDIC_MEMORY_CGROUP=str(cg.dir))
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 3 and "memory watch: limit" in err
    assert tb.state()["last_exit_time"] - tb.state()["history"][0]["time"] < 10


@pytest.mark.parametrize("phase", ["RUNNING", "STARTING"])
def test_under_the_watch_an_exit_with_127_is_127_not_a_clean_exit(tb, phase):
    """127 is what a shell or sigreset returns for a command that is not found. The watch reads
    instead of waiting, so the wrapper's first wait is the one that returns the app's status; it
    used to be taken for "already collected", and the crash became "exited with code 0
    (expected)": no restart, no exit bundle, a container that completes."""
    cg = FakeCgroup(tb.work, "v2")
    options = {**WATCH, "autorestart": "false"} if phase == "RUNNING" else \
        {**WATCH, "startsecs": "5", "startretries": "0", "on-fatal": "exit"}
    body = "sleep 1; exit 127" if phase == "RUNNING" else "exit 127"
    proc = tb.supervise(tb.program("missing.sh", body), options, PODMEDIC_MEMORY_CGROUP=str(cg.dir))
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 127, err
    assert "memory watch: limit" in err and "app exited with code 127" in err
    assert tb.state()["last_exit_code"] == 127 and summary(tb)["last_exit_code"] == 127


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_a_sigkill_with_oom_kill_counted_is_oomkilled_and_its_bundle_holds_the_snapshot(tb, layout):
    cg = FakeCgroup(tb.work, layout)
    logs = log_directory(tb)
    usage = cg.dir / cg.usage_name
    events = cg.dir / cg.events_name
    # the app fills its memory, then the "kernel" counts an OOM kill and kills it
    body = (f"echo {95 * MiB} > {usage}; sleep 2.5; "
            f"printf 'oom 1\\noom_kill 1\\n' > {events}; kill -s KILL $$")
    proc = tb.supervise(tb.program("hog.sh", body), {**WATCH, "autorestart": "false"},
                        exit_bundles=(str(logs), 5), PODMEDIC_MEMORY_CGROUP=str(cg.dir))
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 137, err
    assert "the kernel's OOM killer killed the app (oom_kill 0 -> 1)" in err
    assert "app exited with code 137 (unexpected, OOMKilled)" in err
    assert tb.state()["last_exit_reason"] == "OOMKilled" and summary(tb)["last_exit_reason"] == "OOMKilled"
    assert "last exit 137 OOMKilled" in tb.pmctl("status").stdout
    [bundle] = [p for p in (logs / "forensics").iterdir() if "-exit-" in p.name]
    assert bundle.name.endswith("-app-exit-oomkilled"), bundle.name
    info = json.loads((bundle / "summary.json").read_text())
    assert info["exit"]["oom_killed"] is True and info["exit"]["signal"] == "SIGKILL" and info["premortem"] is True
    assert (bundle / "exit.txt").read_text().startswith("killed by the kernel's OOM killer")
    assert "95% of the limit" in (bundle / "premortem" / "summary.txt").read_text()
    assert not premortem(tb).exists() and summary(tb)["premortem"] is None  # moved, not copied


def test_a_sigkill_without_an_oom_kill_is_a_plain_signal(tb):
    cg = FakeCgroup(tb.work, "v2")
    logs = log_directory(tb)
    proc = tb.supervise(tb.program("die.sh", "sleep 1; kill -s KILL $$"), {**WATCH, "autorestart": "false"},
                        exit_bundles=(str(logs), 5), PODMEDIC_MEMORY_CGROUP=str(cg.dir))
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 137 and "OOM" not in err
    assert tb.state()["last_exit_reason"] is None
    [bundle] = [p for p in (logs / "forensics").iterdir() if "-exit-" in p.name]
    assert bundle.name.endswith("-app-exit-SIGKILL")
    info = json.loads((bundle / "summary.json").read_text())
    assert info["exit"]["oom_killed"] is False and info["exit"]["core_dumped"] is False  # KILL never dumps core


def test_the_wrappers_own_sigkill_after_stopwaitsecs_is_not_an_oom_kill(tb):
    """Another process of the cgroup was OOM-killed while the app ran; the app then ignored the
    stop signal and the wrapper SIGKILLed it: 137, oom_kill up since the start, and no OOM kill."""
    cg = FakeCgroup(tb.work, "v2")
    body = f"trap '' TERM; printf 'oom 1\\noom_kill 1\\n' > {cg.dir / cg.events_name}; {SERVER}"
    proc = tb.supervise(tb.program("stubborn.sh", body), {**WATCH, "stopwaitsecs": "1"},
                        PODMEDIC_MEMORY_CGROUP=str(cg.dir))
    wait_for(lambda: "oom_kill 1" in (cg.dir / cg.events_name).read_text() and tb.pmctl("ready").returncode == 0)
    err = stop(proc)
    assert proc.returncode == 137 and "still running after 1s: SIGKILL" in err, err
    assert "OOM" not in err and tb.state()["last_exit_reason"] is None


def test_a_signal_that_may_dump_core_says_unknown_with_the_core_pattern(tb):
    logs = log_directory(tb)
    proc = tb.supervise(tb.program("segv.sh", "sleep 1; kill -s SEGV $$"), {"startsecs": "0", "autorestart": "false"},
                        exit_bundles=(str(logs), 5))
    proc.communicate(timeout=30)
    [bundle] = [p for p in (logs / "forensics").iterdir() if "-exit-" in p.name]
    info = json.loads((bundle / "summary.json").read_text())
    pattern = Path("/proc/sys/kernel/core_pattern").read_text().strip()
    assert info["exit"]["core_dumped"] is None and info["core_pattern"] == pattern.replace('"', "").replace("\\", "")
    assert f"core dump: unknown (the wrapper's wait cannot report it); core_pattern: {pattern}" in \
        (bundle / "exit.txt").read_text()


@pytest.fixture
def stalled_snapshot(tb):
    """A cgroup v2 whose memory.pressure is a FIFO held open by the test and never written: the
    pre-mortem snapshot collector's `cat` of it blocks (the wrapper reads no such file), so the
    snapshot stays half-written until the test closes its end (the returned function)."""
    cg = FakeCgroup(tb.work, "v2")
    fifo = cg.dir / "memory.pressure"
    os.mkfifo(fifo)
    held = [os.open(fifo, os.O_RDWR | os.O_NONBLOCK)]  # a writer that never writes; no blocking open

    def release() -> None:
        if held:
            os.close(held.pop())
            put(fifo, "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")  # later readers: a plain file

    yield cg, release
    release()


def read_lines(stream, lines: list[str]) -> threading.Thread:
    """Collect a stream's lines while the test goes on (the wrapper's log, as it happens)."""
    thread = threading.Thread(target=lambda: lines.extend(stream), daemon=True)
    thread.start()
    return thread


def crossing_then_exit(tb, cg, logs: Path) -> tuple[subprocess.Popen[str], list[str], threading.Thread]:
    """An app that crosses the threshold, then exits (3) while the snapshot collector is still at
    memory.txt; the wrapper's stderr lines are gathered as they come."""
    body = (f"echo {95 * MiB} > {cg.dir / cg.usage_name}; "
            f"while [ ! -e {premortem(tb) / 'memory.txt'} ]; do sleep 0.05; done; exit 3")
    proc = tb.supervise(tb.program("hog.sh", body), {**WATCH, "autorestart": "false"},
                        exit_bundles=(str(logs), 5), PODMEDIC_MEMORY_CGROUP=str(cg.dir))
    err: list[str] = []
    return proc, err, read_lines(proc.stderr, err)


def test_the_exit_bundle_waits_for_a_running_snapshot_collector(tb, stalled_snapshot):
    cg, release = stalled_snapshot
    logs = log_directory(tb)
    proc, err, reader = crossing_then_exit(tb, cg, logs)
    # either the wrapper waits for the snapshot, or (the race) the exit collector has already
    # moved the half-written snapshot into its bundle
    wait_for(lambda: any("waiting for the pre-mortem snapshot" in line for line in err)
             or any((b / "summary.json").exists() for b in (logs / "forensics").glob("*-exit-*")), timeout=20)
    release()
    assert proc.wait(timeout=30) == 3
    reader.join(timeout=10)
    [bundle] = [p for p in (logs / "forensics").iterdir() if "-exit-" in p.name]
    assert (bundle / "premortem" / "supervisor.txt").exists(), "".join(err)  # the snapshot's last file
    assert "=== cgroup v2 memory.pressure" in (bundle / "premortem" / "memory.txt").read_text()
    assert json.loads((bundle / "summary.json").read_text())["premortem"] is True


def test_a_stop_while_waiting_for_the_snapshot_does_not_wait(tb, stalled_snapshot):
    cg, release = stalled_snapshot
    logs = log_directory(tb)
    proc, err, reader = crossing_then_exit(tb, cg, logs)
    wait_for(lambda: any("waiting for the pre-mortem snapshot" in line for line in err), timeout=20)
    os.kill(proc.pid, signal.SIGTERM)
    # the snapshot collector is still stalled (its timeout is 20 s): the wrapper ends without
    # waiting for it, as a stop never waited for the exit collector
    assert proc.wait(timeout=10) == 3
    # wherever the snapshot is now (the exit collector, not waited for either, may have moved it)
    assert not [*logs.glob("forensics/*/premortem/supervisor.txt"), *premortem(tb).glob("supervisor.txt")]
    release()
    reader.join(timeout=10)
    assert "app: EXITED: app exited with code 3 (unexpected)" in "".join(err)


def test_another_containers_exit_bundle_leaves_this_containers_snapshot_alone(tb):
    """Every container of a pod mounts the same state emptyDir. A sidecar's crash used to move
    the app's pre-mortem snapshot into the sidecar's exit bundle (`"premortem": true`, the app's
    processes as the sidecar's), and the sidecar's summary named it while it ran."""
    cg = FakeCgroup(tb.work, "v2")
    logs = log_directory(tb)
    proc = tb.supervise(tb.program("srv.sh", SERVER), WATCH, PODMEDIC_MEMORY_CGROUP=str(cg.dir))
    wait_for(lambda: tb.pmctl("ready").returncode == 0)
    cg.set(95 * MiB)
    wait_for(lambda: snapshot_written(tb), timeout=SNAPSHOT_BOUND)
    # the sidecar: no memory limit, crashes after RUNNING, exit bundles on
    argv = toolbox_argv.supervise_command(
        str(tb.root), name="side", app=[tb.program("side.sh", "sleep 1.5; exit 3")],
        flags=toolbox_argv.supervise_flags({"startsecs": "1", "autorestart": "false"}, (str(logs), 5)))
    side = subprocess.Popen(argv, env=tb.env(PODMEDIC_MEMORY_CGROUP=str(tb.work / "none")), stderr=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    tb.sessions.append(side)
    wait_for(lambda: (tb.work / "state" / "side.summary").exists())
    ran = json.loads((tb.work / "state" / "side.summary").read_text())
    _, err = side.communicate(timeout=30)
    assert side.returncode == 3, err
    [bundle] = [p for p in (logs / "forensics").iterdir() if "-side-exit-" in p.name]
    assert json.loads((bundle / "summary.json").read_text())["premortem"] is False
    assert not (bundle / "premortem").exists()
    assert ran["premortem"] is None
    assert (premortem(tb) / "supervisor.txt").exists() and summary(tb)["premortem"] == str(premortem(tb))
    stop(proc)


def test_a_snapshot_of_many_processes_leaves_room_in_the_1mi_state_dir(tb, small_volume):
    """The snapshot is written into the state dir, a 1Mi memory emptyDir that also holds the
    wrapper's state file and summary: with 1700 processes its process list (and the copy cap_file
    made of it) filled the volume, the list was cut without saying so, and the wrapper's writes
    at that moment, just before the OOM kill, failed. Run as the wrapper runs it."""
    state = small_volume("state", 1024)
    forker = ("import os, time\nfor _ in range(1700):\n    if os.fork() == 0:\n        time.sleep(120); os._exit(0)\n"
              "print('forked', flush=True); time.sleep(120)")
    parent = subprocess.Popen([sys.executable, "-c", forker, "many-" + "x" * 400], start_new_session=True,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None and parent.stdout.readline() == "forked\n"
        snap = state / "app.premortem"
        done = subprocess.run([tb.busybox, "timeout", "60", tb.busybox, "sh", str(tb.root / "forensics"), "--name", "app",
                               "--premortem", str(snap), "--usage", str(95 * MiB), "--limit", str(LIMIT)],
                              env=tb.env(), capture_output=True, text=True, timeout=90)
    finally:
        os.killpg(parent.pid, signal.SIGKILL)
        parent.wait()
    assert done.returncode == 0 and "No space left" not in done.stderr, done.stderr
    listed = (snap / "processes.txt").read_text()
    assert f"many-{'x' * 100}" in listed
    assert "[podmedic: cut at 131072 bytes;" in listed.splitlines()[-1], listed[-300:]
    used = sum(f.stat().st_size for f in snap.iterdir())
    assert used < 512 * 1024, used  # half the volume at most: the wrapper's own files need the rest


def test_under_the_watch_a_stop_while_starting_ends_the_container(tb):
    """The watch traps SIGCHLD (its `read -t` ends when the app exits). busybox ash runs a trap
    that comes in while the shell is not in `wait` or `read` (an external command, a builtin)
    such that, with SIGCHLD trapped, every test after a fork in it reads as true: the stop's
    trap, recording STOPPING, looped for ever on its history check and the container never
    stopped. STARTING polls with `sleep 0.05` (external) for startsecs, where a stop comes in
    so; in RUNNING the wrapper waits in the watch's `read -t`, and only a stop in the moment it
    looks at the memory (or on a heavily loaded machine) met it."""
    cg = FakeCgroup(tb.work, "v2")
    proc = tb.supervise(tb.program("srv.sh", SERVER), {**WATCH, "startsecs": "30"}, PODMEDIC_MEMORY_CGROUP=str(cg.dir))
    wait_for(lambda: (tb.work / "state" / "app.json").exists() and tb.state()["pid"] > 0)
    time.sleep(0.5)  # in the poll, between its sleeps
    err = stop(proc)
    assert err.rstrip().splitlines()[-1].startswith("podmedic-supervise: app: STOPPED"), err


def test_an_exit_bundle_takes_no_snapshot_of_a_run_before(tb):
    """The state dir outlives the container: a snapshot the run before left there (it was stopped,
    a liveness kill of a bloated app: a clean end, nothing moved it) is not this run's. The next
    run's app crashed without crossing the threshold, and its exit bundle took that snapshot as
    its own (`"premortem": true`, the other run's processes as this crash's)."""
    cg = FakeCgroup(tb.work, "v2")
    logs = log_directory(tb)
    first = tb.supervise(tb.program("srv.sh", SERVER), WATCH, exit_bundles=(str(logs), 5),
                         PODMEDIC_MEMORY_CGROUP=str(cg.dir))
    wait_for(lambda: tb.pmctl("ready").returncode == 0)
    cg.set(95 * MiB)
    wait_for(lambda: snapshot_written(tb), timeout=SNAPSHOT_BOUND)
    stop(first)
    assert summary(tb)["clean"] is True
    old = (premortem(tb) / "summary.txt").read_text()
    cg.set(10 * MiB)  # the restarted container's cgroup
    second = tb.supervise(tb.program("crash.sh", "sleep 1.5; exit 3"), {**WATCH, "autorestart": "false"},
                          exit_bundles=(str(logs), 5), PODMEDIC_MEMORY_CGROUP=str(cg.dir))
    _, err = second.communicate(timeout=30)
    assert second.returncode == 3, err
    [bundle] = [p for p in (logs / "forensics").iterdir() if "-app-exit-" in p.name]
    assert json.loads((bundle / "summary.json").read_text())["premortem"] is False
    assert not (bundle / "premortem").exists()
    assert (premortem(tb) / "summary.txt").read_text() == old  # left where it was


def test_an_exit_bundle_takes_no_snapshot_of_an_earlier_start(tb):
    """The first start crosses the threshold and exits 0 (autorestart: true, no bundle); the second
    crashes well below it: its bundle is not the first start's snapshot."""
    cg = FakeCgroup(tb.work, "v2")
    logs = log_directory(tb)
    once, crashed = tb.work / "started-once", tb.work / "crashed-once"
    # later starts run on: a second crash, a second bundle, before the stop comes on a loaded machine
    body = (f"if [ ! -e {once} ]; then touch {once}; echo {95 * MiB} > {cg.dir / cg.usage_name}; "
            f"while [ ! -e {premortem(tb) / 'supervisor.txt'} ]; do sleep 0.05; done; "
            f"echo {10 * MiB} > {cg.dir / cg.usage_name}; exit 0; fi; "
            f"[ -e {crashed} ] && {{ {SERVER}; }}; touch {crashed}; sleep 1.5; exit 3")
    proc = tb.supervise(tb.program("twice.sh", body), {**WATCH, "autorestart": "true"},
                        exit_bundles=(str(logs), 5), PODMEDIC_MEMORY_CGROUP=str(cg.dir))
    wait_for(lambda: [b for b in logs.glob("forensics/*-app-exit-3") if (b / "summary.json").exists()], timeout=30)
    err = stop(proc)
    [bundle] = logs.glob("forensics/*-app-exit-3")
    assert json.loads((bundle / "summary.json").read_text())["premortem"] is False, err
    assert (premortem(tb) / "supervisor.txt").exists()

"""A kill nobody saw: the wrapper keeps a one-line JSON summary in the state dir (and the
termination log) up to date, "clean": false while it runs and true when it exits on its own. The
next start in the same pod (the same state dir) that finds "clean": false records previous_exit
(unclean, or OOMKilled by the OOM counters), pmctl shows it, one line is logged and the pre-mortem
snapshot moves into the log directory's forensics/. Real processes under the installed toolbox;
the whole session is killed with SIGKILL at once, as an OOM group kill does."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.procs import children
from tests.runtime.conftest import wait_for
from webhook.toolbox import argv as toolbox_argv

FAST = {"startsecs": "1"}
SERVER = "while :; do sleep 0.1; done"
NO_CGROUP = "/nonexistent-memory-cgroup"  # the host's own counters must not decide these tests


def summary(tb) -> dict:
    return json.loads((tb.work / "state" / "app.summary").read_text())


def running(tb, before: int = 0) -> bool:
    """The app RUNNING under a wrapper that is not `before` (the state file of a killed run stays).
    The wrapper first, then its readiness: `pmctl ready` first could read the killed run's file
    (RUNNING) and the state file then the new wrapper's first one (STOPPED, written before it
    looks at the run before), and this said RUNNING before previous_exit was known. Once the
    file names the new wrapper, every later reading is that wrapper's."""
    path = tb.work / "state" / "app.json"
    return path.exists() and tb.state()["wrapper_pid"] != before and tb.pmctl("ready").returncode == 0


def group_kill(tb, proc: subprocess.Popen[str]) -> str:
    """SIGKILL tini, the wrapper and the app at once (the kernel's OOM group kill); the wrapper's stderr.
    The wrapper (tini's child) first: one after the app, in the set's order, could still see it die
    and write EXITED (the state a run killed while RUNNING then said, seen under load)."""
    for pid in children(proc.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    while left := tb.processes():
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    _, err = proc.communicate(timeout=10)
    return err


def stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    os.kill(proc.pid, signal.SIGTERM)  # tini forwards it: the kubelet stopping the container
    _, err = proc.communicate(timeout=20)
    return proc.returncode, err


def log_directory(tb) -> Path:
    logs = tb.work / "logs"
    logs.mkdir()
    logs.chmod(0o1777)
    return logs


def premortem(tb) -> Path:
    """What item 3's memory watch leaves before the kill: STATE_DIR/NAME.premortem/."""
    snap = tb.work / "state" / "app.premortem"
    snap.mkdir()
    (snap / "processes.txt").write_text("pid 42 rss 900M\n")
    return snap


def unclean_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if "previous run did not end cleanly" in line]


def test_a_group_kill_is_found_unclean_on_the_next_start_and_the_premortem_moves(tb):
    logs = log_directory(tb)
    app = tb.program("srv.sh", SERVER)
    first = tb.supervise(app, FAST, exit_bundles=(str(logs), 5), PODMEDIC_MEMORY_CGROUP=NO_CGROUP)
    wait_for(lambda: running(tb))
    snap = premortem(tb)
    wait_for(lambda: summary(tb)["state"] == "RUNNING")
    assert summary(tb)["clean"] is False
    before = tb.state()["wrapper_pid"]
    assert not unclean_lines(group_kill(tb, first))

    second = tb.supervise(app, FAST, exit_bundles=(str(logs), 5), PODMEDIC_MEMORY_CGROUP=NO_CGROUP)
    wait_for(lambda: running(tb, before))
    state = tb.state()
    assert state["previous_exit"] == "unclean"
    status = tb.pmctl("status").stdout
    assert "previous exit unclean" in status, status
    moved = [p for p in (logs / "forensics").iterdir() if p.name.endswith("-app-premortem")]
    assert len(moved) == 1 and (moved[0] / "processes.txt").read_text() == "pid 42 rss 900M\n"
    assert not snap.exists() and state["previous_premortem"] == str(moved[0])
    assert summary(tb)["previous_exit"] == "unclean" and summary(tb)["premortem"] is None
    code, err = stop(second)
    lines = unclean_lines(err)
    assert len(lines) == 1 and "unclean (last state RUNNING" in lines[0] and str(moved[0]) in lines[0], err
    # the wrapper's lines only: no "Terminated" of the shell's for the move's timer
    assert all(line.startswith("podmedic-supervise: app: ") for line in err.splitlines()), err


def test_a_clean_stop_or_exit_then_a_restart_records_nothing(tb):
    logs = log_directory(tb)
    app = tb.program("srv.sh", SERVER)
    first = tb.supervise(app, FAST, exit_bundles=(str(logs), 5), PODMEDIC_MEMORY_CGROUP=NO_CGROUP)
    wait_for(lambda: running(tb))
    stop(first)
    assert summary(tb)["clean"] is True and summary(tb)["state"] == "STOPPED"
    snap = premortem(tb)

    second = tb.supervise(app, FAST, exit_bundles=(str(logs), 5), PODMEDIC_MEMORY_CGROUP=NO_CGROUP)
    wait_for(lambda: running(tb))
    assert tb.state()["previous_exit"] is None
    assert "previous exit" not in tb.pmctl("status").stdout
    _, err = stop(second)
    assert not unclean_lines(err) and snap.is_dir() and not (logs / "forensics").exists()

    # an expected exit the wrapper does not restart is clean too
    done = tb.supervise(tb.program("ok.sh", "sleep 1.2; exit 0"), {**FAST, "autorestart": "unexpected"},
                        PODMEDIC_MEMORY_CGROUP=NO_CGROUP)
    _, err = done.communicate(timeout=20)
    assert done.returncode == 0 and summary(tb)["clean"] is True and summary(tb)["state"] == "EXITED"
    assert not unclean_lines(err)


def test_the_termination_log_holds_the_summary(tb):
    termlog = tb.work / "termination-log"
    termlog.write_text("")  # the kubelet creates it for every container start
    app = tb.program("srv.sh", SERVER)
    proc = tb.supervise(app, FAST, PODMEDIC_TERMINATION_LOG=str(termlog), PODMEDIC_MEMORY_CGROUP=NO_CGROUP)
    wait_for(lambda: running(tb))
    wait_for(lambda: json.loads(termlog.read_text() or "{}").get("state") == "RUNNING")
    text = termlog.read_text()
    assert len(text.encode()) <= 4096 and text.count("\n") == 1
    written = json.loads(text)
    assert written == summary(tb) and written["clean"] is False
    assert written["pid"] > 0 and written["start_count"] == 1
    assert written["peak_memory_bytes"] is None and written["oom_kill"] is None
    stop(proc)
    final = json.loads(termlog.read_text())
    assert final["clean"] is True and final["state"] == "STOPPED"

    # a termination message someone else wrote (the preStop collector, the app) stays, even one
    # that starts with an empty line
    termlog.write_text("\napp: cannot reach the database\n")
    proc = tb.supervise(app, FAST, PODMEDIC_TERMINATION_LOG=str(termlog), PODMEDIC_MEMORY_CGROUP=NO_CGROUP)
    wait_for(lambda: running(tb))
    stop(proc)
    assert termlog.read_text() == "\napp: cannot reach the database\n"


def test_with_termination_log_off_a_failed_app_leaves_it_empty_and_the_summary_in_the_state_dir(tb):
    """terminationMessagePolicy FallbackToLogsOnError: the kubelet shows the log's tail only
    while the termination log is empty. A run-to-completion app that fails, then a group kill and
    a new start: the termination log stays empty, the state dir's summary still finds the kill."""
    termlog = tb.work / "termination-log"
    termlog.write_text("")  # the kubelet creates it for every container start
    once = {"autorestart": "false", "startsecs": "0"}  # a Job's container (supervisor.py _RUN_ONCE)
    failing = tb.program("fail.sh", "echo 'FATAL: config missing' >&2; exit 1")
    done = tb.supervise(failing, once, termination_log=False, PODMEDIC_TERMINATION_LOG=str(termlog),
                        PODMEDIC_MEMORY_CGROUP=NO_CGROUP)
    _, err = done.communicate(timeout=20)
    assert done.returncode == 1 and "FATAL: config missing" in err
    assert termlog.read_text() == ""
    assert summary(tb)["last_exit_code"] == 1 and summary(tb)["clean"] is True

    app = tb.program("srv.sh", SERVER)
    first = tb.supervise(app, FAST, termination_log=False, PODMEDIC_TERMINATION_LOG=str(termlog),
                         PODMEDIC_MEMORY_CGROUP=NO_CGROUP)
    wait_for(lambda: running(tb))
    wait_for(lambda: summary(tb)["state"] == "RUNNING")
    before = tb.state()["wrapper_pid"]
    group_kill(tb, first)
    second = tb.supervise(app, FAST, termination_log=False, PODMEDIC_TERMINATION_LOG=str(termlog),
                          PODMEDIC_MEMORY_CGROUP=NO_CGROUP)
    wait_for(lambda: running(tb, before))
    assert tb.state()["previous_exit"] == "unclean"
    stop(second)
    assert termlog.read_text() == ""


def fake_cgroup(path: Path, files: dict[str, str]) -> str:
    path.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (path / name).write_text(text)
    return str(path)


def test_oom_kills_counted_before_the_kill_make_it_oomkilled_v2(tb):
    events = "low 0\nhigh 0\nmax 7\noom 2\noom_kill {}\noom_group_kill 0\n"
    run1 = fake_cgroup(tb.work / "cg1", {"memory.peak": "734003200\n", "memory.events": events.format(1)})
    app = tb.program("srv.sh", SERVER)
    first = tb.supervise(app, FAST, PODMEDIC_MEMORY_CGROUP=run1)
    wait_for(lambda: running(tb))
    s = summary(tb)
    assert s["memory_cgroup"] == "v2" and s["peak_memory_bytes"] == 734003200 and s["oom_kill"] == 1
    before = tb.state()["wrapper_pid"]
    group_kill(tb, first)
    # the restarted container has a cgroup of its own: nothing counted there yet
    run2 = fake_cgroup(tb.work / "cg2", {"memory.peak": "0\n", "memory.events": events.format(0)})
    second = tb.supervise(app, FAST, PODMEDIC_MEMORY_CGROUP=run2)
    wait_for(lambda: running(tb, before))
    assert tb.state()["previous_exit"] == "OOMKilled"
    assert "previous exit OOMKilled" in tb.pmctl("status").stdout
    _, err = stop(second)
    assert len(unclean_lines(err)) == 1 and "OOMKilled" in unclean_lines(err)[0]


def test_oom_kills_counted_now_make_it_oomkilled_v1(tb):
    control = "oom_kill_disable 0\nunder_oom 0\noom_kill {}\n"
    cg = tb.work / "cgv1"
    fake_cgroup(cg, {"memory.max_usage_in_bytes": "4096000\n", "memory.oom_control": control.format(0)})
    app = tb.program("srv.sh", SERVER)
    first = tb.supervise(app, FAST, PODMEDIC_MEMORY_CGROUP=str(cg))
    wait_for(lambda: running(tb))
    s = summary(tb)
    assert s["memory_cgroup"] == "v1" and s["peak_memory_bytes"] == 4096000 and s["oom_kill"] == 0
    before = tb.state()["wrapper_pid"]
    group_kill(tb, first)
    (cg / "memory.oom_control").write_text(control.format(3))  # the cgroup outlived the run
    second = tb.supervise(app, FAST, PODMEDIC_MEMORY_CGROUP=str(cg))
    wait_for(lambda: running(tb, before))
    assert tb.state()["previous_exit"] == "OOMKilled"
    stop(second)


UNSHARE, NSENTER = shutil.which("unshare"), shutil.which("nsenter")


class Container:
    """The wrapper in a PID namespace of its own, as in a container: tini is PID 1 and the wrapper
    PID 2 in every run, so a restarted container's wrapper has the killed one's pid. `stopped`:
    PID 2 stops itself before it execs the wrapper (the same process, pid and start time: the new
    wrapper before its first write, as a throttled CPU keeps it). Needs root (unshare)."""

    def __init__(self, tb, app: str, stopped: bool = False):
        self.tb = tb
        argv = toolbox_argv.supervise_command(str(tb.root), name="app", app=[app],
                                              flags=toolbox_argv.supervise_flags(FAST))
        if stopped:
            argv[3:3] = [tb.busybox, "sh", "-c", 'kill -s STOP $$; exec "$@"', "sh"]
        assert UNSHARE
        self.proc = subprocess.Popen([UNSHARE, "--pid", "--fork", "--mount-proc", *argv],
                                     env=tb.env(PODMEDIC_MEMORY_CGROUP=NO_CGROUP), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True)
        tb.sessions.append(self.proc)
        self.init = wait_for(lambda: children(self.proc.pid), timeout=10)[0]  # tini, PID 1 inside
        self.second = wait_for(lambda: children(self.init), timeout=10)[0]  # PID 2 inside

    def kill(self) -> None:
        """The OOM group kill: the wrapper first (it must not see its app die and write again),
        then PID 1, whose end has the kernel kill the rest of the namespace."""
        os.kill(self.second, signal.SIGKILL)
        os.kill(self.init, signal.SIGKILL)
        self.proc.communicate(timeout=10)

    def pmctl(self, check: str) -> subprocess.CompletedProcess[str]:
        """pmctl as the kubelet's exec probe runs it: in the container's PID namespace and /proc."""
        assert NSENTER
        return subprocess.run([NSENTER, "-t", str(self.init), "-p", "-m", "--",
                               *toolbox_argv.pmctl_argv(check, str(self.tb.root), name="app")],  # type: ignore[arg-type]
                              env=self.tb.env(), capture_output=True, text=True, timeout=10)


def test_a_restarted_containers_new_wrapper_with_the_killed_ones_pid_is_not_ready_from_its_file(tb):
    """Before its first write the new wrapper finds the killed run's state file: RUNNING, and a
    wrapper_pid that is its own pid. pmctl ready answered 0 from it, the container Ready before
    its app had started (tests under load saw it too: the new wrapper's first file came just after)."""
    if not UNSHARE or not NSENTER or subprocess.run([UNSHARE, "--pid", "--fork", "--mount-proc", "true"],
                                                    capture_output=True).returncode:
        pytest.skip("cannot unshare a PID namespace (needs util-linux and root)")
    app = tb.program("srv.sh", SERVER)
    first = Container(tb, app)
    wait_for(lambda: first.pmctl("ready").returncode == 0 and summary(tb)["state"] == "RUNNING")
    assert tb.state()["wrapper_pid"] == 2
    first.kill()

    second = Container(tb, app, stopped=True)
    wait_for(lambda: Path(f"/proc/{second.second}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T")
    assert tb.state()["state"] == "RUNNING" and tb.state()["wrapper_pid"] == 2  # the killed run's file
    assert second.pmctl("alive").returncode == 0  # a process with that pid runs: the new wrapper
    ready = second.pmctl("ready")
    assert ready.returncode == 1 and ready.stdout == "", ready
    os.kill(second.second, signal.SIGCONT)
    wait_for(lambda: tb.state()["previous_exit"] == "unclean" and second.pmctl("ready").returncode == 0)
    os.kill(second.init, signal.SIGTERM)  # tini forwards it: the kubelet stopping the container
    _, err = second.proc.communicate(timeout=20)
    assert summary(tb)["clean"] is True and len(unclean_lines(err)) == 1, err


def test_a_restart_on_a_full_state_dir_keeps_the_state_file_current(tb, small_volume):
    """The 1Mi state dir full (other containers' snapshots, one a run before left): busybox's printf
    applet said nothing when its write failed, and the empty copy was renamed over the state file.
    The app ran, but pmctl alive failed (the liveness probe would kill it) and ready too. A
    restarted container, whose killed run's files hold a page each, rewrites them in place."""
    state = small_volume("state", 64)
    app = tb.program("srv.sh", SERVER)
    first = tb.supervise(app, FAST, PODMEDIC_MEMORY_CGROUP=NO_CGROUP)
    wait_for(lambda: running(tb) and summary(tb)["state"] == "RUNNING")
    before = tb.state()["wrapper_pid"]
    group_kill(tb, first)
    filler = subprocess.run(["dd", "if=/dev/zero", f"of={state / 'filler'}", "bs=4k", "count=64"],
                            capture_output=True, text=True)
    assert "No space left on device" in filler.stderr, filler.stderr  # full
    second = tb.supervise(app, FAST, PODMEDIC_MEMORY_CGROUP=NO_CGROUP)
    wait_for(lambda: running(tb, before) and summary(tb)["state"] == "RUNNING")
    assert tb.pmctl("alive").returncode == 0 and tb.state()["previous_exit"] == "unclean"
    code, err = stop(second)
    assert code == 143 and summary(tb)["clean"] is True and tb.state()["state"] == "STOPPED", err

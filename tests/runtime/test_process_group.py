"""The app's process group under the wrapper, with real processes: without podmedic the app is
the container's PID 1, the leader of its own process group, and the shell idioms that clean up
at exit signal that group (`kill 0`, `kill -- -$$`). Under the wrapper they must reach the app
and its children only: not the wrapper (a `kill 0` was a container stop), not nobody (a `kill --
-$$` failed with "no such process" and the children outlived the app, holding its port)."""

from __future__ import annotations

import fcntl
import os
import pty
import shutil
import signal
import subprocess
import termios
from pathlib import Path

from tests.runtime.conftest import wait_for
from webhook.toolbox import argv as toolbox_argv

# restarts at once, without a limit: only the process group decides what happens
RESTARTS = {"startsecs": "1", "startretries": "2", "restart-backoff-max": "0", "restart-limit": "0",
            "memwatch-threshold": "0"}


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_the_app_leads_its_own_process_group(tb):
    """As PID 1 of its container: its process group is its pid (getpgrp() == getpid())."""
    seen = tb.work / "pgrp"
    app = tb.program("app.sh", f'read -r s < /proc/$$/stat; set -- ${{s##*) }}; echo "$$ $3" > {seen}\n'
                               "while :; do sleep 0.1; done")
    proc = tb.supervise(app, RESTARTS)
    wait_for(lambda: len(lines(seen)) == 1)
    pid, pgrp = lines(seen)[0].split()
    assert pgrp == pid
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(20) == 128 + signal.SIGTERM


def test_kill_0_at_exit_reaches_the_app_and_its_children_not_the_wrapper(tb):
    """`trap 'kill 0' EXIT`: the wrapper in the app's group took the SIGTERM as a container stop,
    so a crash was never restarted and the container ended."""
    runs, kids = tb.work / "runs", tb.work / "kids"
    app = tb.program("app.sh", f"trap 'kill 0' EXIT\nsleep 600 &\necho $! >> {kids}\necho run >> {runs}\n"
                               "sleep 1.3\nexit 1")
    proc = tb.supervise(app, RESTARTS)
    wait_for(lambda: len(lines(runs)) >= 3, timeout=20)
    assert proc.poll() is None, proc.communicate()[1]
    assert "STOPPING" not in [h["state"] for h in tb.state()["history"]]
    first_kid = int(lines(kids)[0])
    assert not alive(first_kid)
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(20) == 128 + signal.SIGTERM


def test_kill_minus_pid_at_exit_ends_the_apps_background_children(tb):
    """`trap 'kill -- -$$' EXIT`: the group $$ did not exist ("no such process"), so the app's
    background child outlived it, as a server keeping the port its restarted parent must bind."""
    runs, kids = tb.work / "runs", tb.work / "kids"
    app = tb.program("app.sh", f"trap 'kill -- -$$' EXIT\nsleep 600 &\necho $! >> {kids}\necho run >> {runs}\n"
                               "sleep 1.3\nexit 1")
    first_child_gone_after_a_restart(tb.supervise(app, RESTARTS), runs, kids)


def test_on_a_terminal_the_app_is_the_foreground_group(tb):
    """`tty: true` without stdin (wrapped): the terminal is the container's controlling terminal
    and tini makes its child's group the foreground one. The app, in a group of its own, must be
    in the foreground as PID 1 would be: a background group that changes the terminal's settings
    (stty, a progress bar, a pager) is stopped by SIGTTOU, one that reads it by SIGTTIN. And the
    wrapper, now in the background, still logs its stop when the app set `tostop`."""
    done = tb.work / "done"
    app = tb.program("tty.sh", f"stty -echo && stty echo && stty tostop && echo ok > {done}\n"
                               "trap 'exit 0' TERM\nwhile :; do sleep 0.1; done")
    controller, terminal = pty.openpty()
    argv = toolbox_argv.supervise_command(str(tb.root), name="app", app=[app],
                                          flags=toolbox_argv.supervise_flags(RESTARTS))

    def controlling_terminal() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(argv, env=tb.env(), stdin=terminal, stdout=terminal, stderr=terminal, text=True,
                            start_new_session=True, preexec_fn=controlling_terminal)
    tb.sessions.append(proc)
    os.close(terminal)
    try:
        wait_for(lambda: done.exists(), timeout=10)
        os.kill(proc.pid, signal.SIGTERM)
        code = proc.wait(10)
        assert code == 0, os.read(controller, 65536).decode(errors="replace")
        assert [h["state"] for h in tb.state()["history"]][-2:] == ["STOPPING", "STOPPED"]
    finally:
        os.close(controller)


def first_child_gone_after_a_restart(proc: subprocess.Popen[str], runs: Path, kids: Path) -> None:
    """Once the app ran twice, the child its first run started is gone; then stop the wrapper."""
    wait_for(lambda: len(lines(runs)) >= 2, timeout=20)
    first = int(lines(kids)[0])
    wait_for(lambda: not alive(first), timeout=3)
    os.kill(proc.pid, signal.SIGTERM)
    proc.wait(20)


def crashing_app(tb, ran_for: str) -> tuple[str, Path, Path]:
    """An app that starts a background child (a worker holding the port its restarted parent must
    bind) and exits 1 after `ran_for` seconds; it writes its runs and its children's pids. The
    child is the system's sleep: the collector does not list the toolbox's own processes."""
    runs, kids = tb.work / "runs", tb.work / "kids"
    app = tb.program("app.sh", f"{shutil.which('sleep')} 600 &\necho $! >> {kids}\necho run >> {runs}\nsleep {ran_for}\nexit 1")
    return app, runs, kids


def test_a_restart_after_running_ends_the_dead_apps_children(tb):
    """Without podmedic a crash restarts the container and the kernel kills everything in it; under
    the wrapper the dead app's background children ran on beside every restarted app. Its exit
    bundle (written before the kill) still lists them, as left behind."""
    logs = tb.work / "logs"
    logs.mkdir()
    logs.chmod(0o1777)
    app, runs, kids = crashing_app(tb, "1.3")
    for backoff in ("0", "1"):  # a restart at once, and one after the back-off
        proc = tb.supervise(app, {**RESTARTS, "restart-backoff-max": backoff}, exit_bundles=(str(logs), 5))
        wait_for(lambda: len(lines(runs)) >= 3, timeout=25)
        first, second = (int(k) for k in lines(kids)[:2])
        wait_for(lambda: not alive(first) and not alive(second), timeout=3)
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(20)
        runs.unlink()
        kids.unlink()
    left = [(b / "left_behind.txt").read_text() for b in sorted((logs / "forensics").glob("*-app-exit-*"))]
    assert left and all("sleep 600" in text for text in left), left


def test_a_restart_after_an_early_exit_ends_the_dead_apps_children(tb):
    """STARTING -> BACKOFF -> STARTING: the same, for an app that exits before startsecs."""
    app, runs, kids = crashing_app(tb, "0.2")
    first_child_gone_after_a_restart(tb.supervise(app, {**RESTARTS, "startsecs": "5", "startretries": "3"}), runs, kids)


def test_a_held_container_keeps_the_dead_apps_children_for_inspection(tb):
    """FATAL with on-fatal=hold: no restart, so nothing is killed; the operator who execs in sees
    what the app left."""
    app, runs, kids = crashing_app(tb, "0.2")
    proc = tb.supervise(app, {**RESTARTS, "startsecs": "5", "startretries": "0"})
    wait_for(lambda: (tb.work / "state" / "app.json").exists() and tb.state()["held_since"] is not None, timeout=20)
    assert alive(int(lines(kids)[0]))
    os.kill(proc.pid, signal.SIGTERM)
    proc.wait(20)

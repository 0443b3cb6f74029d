"""The crash-loop limit and the restart back-off of the supervise wrapper, with real processes:
an app that crashes after startsecs again and again is restarted after 1 s, 2 s, 4 s ... and held
(FATAL) once it exceeds restart-limit unexpected exits within restart-window; staying up a window
resets both; a stop ends a back-off at once; pmctl status shows the window, the count and the
next back-off. Windows and back-offs are short so that each test stays well under 20 s."""

from __future__ import annotations

import os
import signal
import time

from tests.runtime.conftest import wait_for
from tests.runtime.test_supervise import finish, states

SLACK = 0.8  # the wrapper's own work between an exit and the next start (busybox forks), loaded CI


def crasher(tb, body: str = "", code: int = 3) -> str:
    """An app that logs its start and its exit (uptime seconds), runs `body`, and exits `code`."""
    log = tb.work / "runs"
    return tb.program("crasher.sh", f"read up _ < /proc/uptime; echo \"start $up\" >> {log}\n{body}\n"
                                    f"read up _ < /proc/uptime; echo \"end $up\" >> {log}\nexit {code}")


def runs(tb) -> list[tuple[str, float]]:
    path = tb.work / "runs"
    if not path.exists():
        return []
    return [(kind, float(t)) for kind, t in (line.split() for line in path.read_text().splitlines())]


def backoffs(tb) -> list[float]:
    """Seconds from each exit to the next start."""
    events = runs(tb)
    return [round(events[i + 1][1] - events[i][1], 2) for i in range(1, len(events) - 1, 2)]


def assert_backoffs(measured: list[float], expected: list[int]) -> None:
    assert len(measured) == len(expected), (measured, expected)
    for got, want in zip(measured, expected):
        assert want - 0.05 <= got <= want + SLACK, (measured, expected)


def fatal(tb) -> bool:
    return (tb.work / "state" / "app.json").exists() and tb.state()["state"] == "FATAL"


def test_crash_loop_after_startsecs_backs_off_and_is_held_after_the_limit(tb):
    app = crasher(tb, "sleep 1.3")  # up past startsecs: RUNNING, then a crash
    proc = tb.supervise(app, {"startsecs": "1", "restart-limit": "3", "restart-window": "60",
                              "restart-backoff-max": "4", "on-fatal": "hold", "max-hold": "600"})
    wait_for(lambda: fatal(tb), timeout=30)
    # four crashes: the fourth exceeds restart-limit 3 within the window; back-offs 1, 2, 4 s
    assert_backoffs(backoffs(tb), [1, 2, 4])
    assert states(tb) == ["STARTING", "RUNNING", "EXITED"] * 4 + ["FATAL"]
    state = tb.state()
    assert state["start_count"] == 4 and state["last_exit_code"] == 3 and state["restart_count"] == 4
    time.sleep(0.5)
    assert proc.poll() is None and len(runs(tb)) == 8  # held, never restarted again
    assert tb.pmctl("alive").returncode == 0 and tb.pmctl("ready").returncode == 1
    os.kill(proc.pid, signal.SIGTERM)
    code, err = finish(proc, 5)
    assert code == 3
    assert "restart in 1s" in err and "restart in 2s" in err and "restart in 4s" in err
    assert "FATAL: 4 unexpected exits within 60s (restart-limit 3)" in err and "holding the container" in err
    assert f"; exec in: {tb.root}/bin/busybox sh {tb.root}/pmctl status\n" in err  # the toolbox's paths: no shell needed


def test_on_fatal_exit_after_the_limit_exits_with_the_apps_code(tb):
    proc = tb.supervise(crasher(tb, code=9), {"startsecs": "0", "restart-limit": "1", "restart-backoff-max": "1",
                                              "on-fatal": "exit"})
    code, err = finish(proc, 10)
    assert code == 9 and states(tb) == ["STARTING", "RUNNING", "EXITED"] * 2 + ["FATAL"]
    assert "holding" not in err


def test_staying_up_a_window_resets_the_back_off_and_the_count(tb):
    # run 3 stays up 4.3 s, longer than the 4 s window: its exit is the only one left in the window
    # (no FATAL although it is the third) and the back-off starts again from 1 s. Runs 4 and 5
    # crash at once: the fifth is the third exit within 4 s (3 s after run 3's), more than
    # restart-limit 2.
    count = tb.work / "count"
    app = crasher(tb, f"n=$(( $(cat {count} 2>/dev/null || echo 0) + 1 )); echo $n > {count}\n"
                      "[ $n = 3 ] && sleep 4.3")
    proc = tb.supervise(app, {"startsecs": "0", "restart-limit": "2", "restart-window": "4",
                              "restart-backoff-max": "8", "on-fatal": "hold", "max-hold": "600"})
    wait_for(lambda: fatal(tb), timeout=30)
    assert_backoffs(backoffs(tb), [1, 2, 1, 2])
    assert states(tb).count("STARTING") == 5 and states(tb)[-1] == "FATAL"
    assert tb.state()["restart_count"] == 3
    os.kill(proc.pid, signal.SIGTERM)
    assert finish(proc, 5)[0] == 3


def test_a_stop_ends_the_back_off_at_once_and_pmctl_shows_the_window(tb):
    proc = tb.supervise(crasher(tb, code=1), {"startsecs": "0", "restart-limit": "10", "restart-window": "60",
                                              "restart-backoff-max": "8"})
    # the third crash: a 4 s back-off
    wait_for(lambda: len(runs(tb)) == 6 and tb.state()["state"] == "EXITED" and tb.state()["start_count"] == 3,
             timeout=15)
    state = tb.state()
    assert (state["restart_window"], state["restart_limit"], state["restart_count"], state["next_backoff"]) == \
        (60, 10, 3, 4)
    status = tb.pmctl("status")
    assert status.returncode == 0 and "EXITED" in status.stdout, status
    assert "restarts 3/10 in 60s next back-off 4s" in status.stdout, status.stdout
    assert tb.pmctl("ready").returncode == 1  # out of the Service while backing off
    os.kill(proc.pid, signal.SIGTERM)
    started = time.monotonic()
    code, _ = finish(proc, 10)
    assert time.monotonic() - started < 1
    assert code == 1 and states(tb)[-2:] == ["EXITED", "STOPPED"] and tb.state()["start_count"] == 3


def test_no_limit_and_no_back_off_restart_at_once_as_supervisord(tb):
    proc = tb.supervise(crasher(tb), {"startsecs": "0", "restart-limit": "0", "restart-backoff-max": "0"})
    wait_for(lambda: len(runs(tb)) >= 24, timeout=10)  # twelve crashes, never FATAL
    assert "FATAL" not in states(tb) and proc.poll() is None
    assert "restarts " in tb.pmctl("status").stdout and "/no limit in 300s next back-off 0s" in tb.pmctl("status").stdout
    os.kill(proc.pid, signal.SIGTERM)
    assert finish(proc, 5)[0] == 3

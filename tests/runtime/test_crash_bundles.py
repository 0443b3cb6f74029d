"""The wrapper has the collector write a bundle on every unexpected exit of the app -- the
kubelet runs no preStop after a crash -- before it restarts or holds it; an expected exit and a
container stop leave none. Real processes under the installed toolbox."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from pathlib import Path

from tests.runtime.conftest import NOBODY, wait_for

FAST = {"startsecs": "1", "restart-backoff-max": "0"}


def log_directory(tb) -> Path:
    logs = tb.work / "logs"
    logs.mkdir()
    logs.chmod(0o1777)  # what podmedic logdir makes of the container's log directory
    return logs


def exit_bundles(logs: Path) -> list[str]:
    forensics = logs / "forensics"
    return sorted(p.name for p in forensics.iterdir() if "-exit-" in p.name) if forensics.is_dir() else []


def finish(proc: subprocess.Popen[str], timeout: float = 20) -> int:
    proc.communicate(timeout=timeout)
    return proc.returncode


def test_a_crash_after_running_leaves_a_bundle_then_the_app_is_restarted(tb):
    logs = log_directory(tb)
    app = tb.program("crash.sh", f"echo crashing >> {logs}/app.log; sleep 1.2; exit 3")
    tb.supervise(app, FAST, user=NOBODY, exit_bundles=(str(logs), 5))
    wait_for(lambda: exit_bundles(logs) and tb.state()["start_count"] >= 2, timeout=20)
    bundle = logs / "forensics" / exit_bundles(logs)[0]
    assert bundle.name.endswith("-app-exit-3")
    summary = json.loads((bundle / "summary.json").read_text())
    assert summary["exit"]["code"] == 3 and summary["exit"]["ran_seconds"] >= 1
    assert "crashing" in (bundle / "recent_logs.txt").read_text()


def test_a_signal_kill_is_named_in_the_bundle(tb):
    logs = log_directory(tb)
    app = tb.program("segv.sh", "sleep 1.2; kill -s SEGV $$")
    tb.supervise(app, {**FAST, "autorestart": "false"}, exit_bundles=(str(logs), 5))
    wait_for(lambda: exit_bundles(logs), timeout=20)
    assert exit_bundles(logs)[0].endswith("-app-exit-SIGSEGV")


def test_a_start_failure_leaves_a_bundle_before_the_hold(tb):
    logs = log_directory(tb)
    proc = tb.supervise(tb.program("fail.sh", "exit 4"), {"startretries": "0"}, exit_bundles=(str(logs), 5))
    wait_for(lambda: (tb.work / "state" / "app.json").exists() and tb.state()["state"] == "FATAL")
    assert [b.rsplit("-", 1)[1] for b in exit_bundles(logs)] == ["4"]
    assert proc.poll() is None  # held
    os.killpg(proc.pid, signal.SIGTERM)
    assert finish(proc) == 4


def test_an_expected_exit_and_a_stop_leave_no_bundle(tb):
    logs = log_directory(tb)
    clean = tb.supervise(tb.program("ok.sh", "sleep 1.2; exit 0"), FAST, exit_bundles=(str(logs), 5))
    assert finish(clean) == 0
    stopped = tb.supervise(tb.program("srv.sh", "while :; do sleep 0.1; done"), FAST, exit_bundles=(str(logs), 5))
    wait_for(lambda: tb.pmctl("ready").returncode == 0)
    os.killpg(stopped.pid, signal.SIGTERM)
    finish(stopped)
    assert exit_bundles(logs) == []


def test_without_a_log_directory_the_wrapper_writes_nothing(tb):
    proc = tb.supervise(tb.program("crash.sh", "sleep 1.2; exit 3"), {**FAST, "autorestart": "false"})
    assert finish(proc) == 3
    assert not any(p.name == "forensics" for p in tb.work.rglob("*"))


def test_an_exit_code_above_192_is_a_code_not_a_signal(tb):
    """128+N is signal N only up to 192: signals stop at 64, `exit 255` is the app's own code."""
    logs = log_directory(tb)
    proc = tb.supervise(tb.program("die.sh", "sleep 1.2; exit 255"), {**FAST, "autorestart": "false"},
                        exit_bundles=(str(logs), 5))
    assert finish(proc) == 255  # the wrapper exits after the bundle is written
    [name] = exit_bundles(logs)
    assert name.endswith("-app-exit-255"), name
    summary = json.loads((logs / "forensics" / name / "summary.json").read_text())
    assert summary["exit"]["code"] == 255 and summary["exit"]["signal"] is None


def test_a_stop_while_the_collector_runs_is_a_stop_not_a_hold(tb):
    """The kubelet stops a crash-looping container (a rollout) while the exit collector writes
    the last crash's bundle. The start failure is FATAL, as in supervisord, but the wrapper used
    to go on into "holding the container for up to 600s" (held_since set: pmctl ready printed
    "held since") and out of it at once; a stop is never held, and exits with the app's code."""
    logs = log_directory(tb)
    # a fresh rate-limit lock keeps the collector busy for about 2 s before it gives up
    (logs / "forensics" / ".exit-app.lock").mkdir(parents=True)
    proc = tb.supervise(tb.program("fail.sh", "exit 4"), {"startretries": "0", "max-hold": "600"},
                        exit_bundles=(str(logs), 5))

    def collecting() -> bool:
        for pid in tb.processes():
            with contextlib.suppress(OSError):
                if b"--exit=4" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return True
        return False
    wait_for(collecting)
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 4, err
    assert "holding the container" not in err and "hold ended" not in err, err
    assert tb.state()["state"] == "FATAL" and tb.state()["held_since"] is None
    assert json.loads((tb.work / "state" / "app.summary").read_text())["clean"] is True

"""While the wrapper holds a container after FATAL, the readiness check podmedic injects (`pmctl
ready`) fails printing `podmedic: held since <RFC 3339 UTC time> (FATAL, last exit N)`, so the
kubelet's Unhealthy event tells the API (and the quarantine controller) that it is a hold. Real
processes under the installed toolbox."""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone

import pytest

from tests.runtime.conftest import wait_for

HELD = re.compile(r"podmedic: held since (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ) \(FATAL, last exit (\S+)\)\n")


def held_message(tb) -> re.Match[str]:
    done = tb.pmctl("ready")
    assert done.returncode == 1
    match = HELD.fullmatch(done.stdout)
    assert match, done.stdout
    return match


@pytest.mark.parametrize("body,last", [("exit 3", "3"), ("kill -s SEGV $$", "SIGSEGV")])
def test_a_held_container_fails_readiness_saying_since_when_and_why(tb, body, last):
    start = time.time()
    proc = tb.supervise(tb.program("crash.sh", body), {"startretries": "0", "on-fatal": "hold"})
    wait_for(lambda: (tb.work / "state" / "app.json").exists() and tb.state().get("held_since"))
    match = held_message(tb)
    since = datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()
    assert start - 1 <= since <= time.time() and since == tb.state()["held_since"]
    assert match.group(2) == last
    assert proc.poll() is None  # still holding


def test_not_ready_without_a_hold_prints_nothing(tb):
    proc = tb.supervise(tb.program("srv.sh", "sleep 1.5; exit 1"),
                        {"startsecs": "1", "restart-backoff-max": "3", "restart-limit": "5"})
    wait_for(lambda: tb.pmctl("ready").returncode == 0)
    wait_for(lambda: tb.state()["state"] == "EXITED")   # the back-off: not ready, not held
    done = tb.pmctl("ready")
    assert done.returncode == 1 and done.stdout == ""
    assert proc.poll() is None


def test_fatal_without_hold_is_no_hold(tb):
    proc = tb.supervise(tb.program("crash.sh", "exit 3"), {"startretries": "0", "on-fatal": "exit"})
    proc.communicate(timeout=20)
    assert tb.state()["state"] == "FATAL"
    done = tb.pmctl("ready")
    assert done.returncode == 1 and done.stdout == ""

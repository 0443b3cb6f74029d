"""The preStop collector with real processes: bundle layout, redaction, budget, termination message."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from tests.runtime.conftest import NOBODY, wait_for
from webhook.engine.features import forensics
from webhook.toolbox import argv as toolbox

SECRET = "hunter2-" + os.urandom(4).hex()
PEM = f"-----BEGIN PRIVATE KEY-----\n{SECRET}-line2\n-----END PRIVATE KEY-----"  # a multi-line secret


def collect(tb, out: str | None, budget: int = 10, user: int | None = None, **env: str):
    argv = toolbox.forensics_argv(str(tb.root), name="app", out_dir=out, budget_seconds=budget)
    ids = {"user": user, "group": user, "extra_groups": []} if user is not None else {}
    started = time.monotonic()
    done = subprocess.run(argv, env=tb.env(DB_PASSWORD=SECRET, API_TOKEN=SECRET, TLS_KEY=PEM, GREETING="hello", **env),
                          capture_output=True, text=True, timeout=budget + 10, **ids)
    return done, time.monotonic() - started


def test_bundle_in_the_log_directory(tb):
    logs = tb.work / "logs"
    logs.mkdir()
    logs.chmod(0o1777)  # what podmedic logdir makes of the container's log directory
    (logs / "app.log").write_text("".join(f"line {i}\n" for i in range(500)))
    proc = tb.supervise(tb.program("srv.sh", "while :; do sleep 0.1; done"), {"startsecs": "1"})
    wait_for(lambda: tb.pmctl("ready").returncode == 0)
    try:
        done, took = collect(tb, str(logs), user=NOBODY)
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.communicate(timeout=20)
    assert done.returncode == 0 and took < 10
    bundles = list((logs / "forensics").iterdir())
    assert len(bundles) == 1 and bundles[0].name.endswith("-app")
    bundle = bundles[0]
    summary = json.loads((bundle / "summary.json").read_text())
    assert summary["container"] == "app" and summary["supervisor"]["state"] == "RUNNING"
    assert set(summary["ran"]) >= {"supervisor", "processes", "threads", "sockets", "memory", "disk",
                                   "redacted_env", "recent_logs"}, summary
    assert summary["failed"] == []
    processes = (bundle / "processes.txt").read_text()
    assert "open fds:" in processes and "State:" in processes and "srv.sh" in processes
    assert "MemTotal" in (bundle / "memory.txt").read_text()
    assert "state=" in (bundle / "sockets.txt").read_text() or (bundle / "sockets.txt").read_text() == ""
    env = (bundle / "redacted_env.txt").read_text()
    assert "GREETING=hello" in env and "DB_PASSWORD=<redacted>" in env and "API_TOKEN=<redacted>" in env
    assert "TLS_KEY=<redacted>" in env and "line2" not in env
    assert "line 499" in (bundle / "recent_logs.txt").read_text()
    for f in bundle.iterdir():
        assert SECRET not in f.read_text(errors="replace"), f.name


def test_without_log_directory_writes_the_termination_message(tb):
    term = tb.work / "termination-log"
    done, _ = collect(tb, None, PODMEDIC_TERMINATION_LOG=str(term))
    assert done.returncode == 0
    text = term.read_text()
    assert "podmedic forensics" in text and "container app" in text and len(text) <= 4096
    assert SECRET not in text


def test_budget_bounds_the_run_and_it_always_exits_zero(tb):
    logs = tb.work / "logs"
    logs.mkdir()
    logs.chmod(0o1777)  # what podmedic logdir makes of the container's log directory
    done, took = collect(tb, str(logs), budget=1)
    assert done.returncode == 0 and took < 1 + 4  # at most one collector's slice past the budget
    summary = json.loads(next((logs / "forensics").iterdir()).joinpath("summary.json").read_text())
    assert summary["ran"] or summary["failed"]
    unwritable = collect(tb, "/proc/nowhere", budget=2)[0]
    assert unwritable.returncode == 0


@pytest.mark.parametrize("user_command", [["sh", "-c", "echo draining"], ["sleep", "3"]])
def test_chained_user_prestop_runs_the_images_program_after_the_collector(tb, user_command):
    # the image's own `sh` and `sleep` on its PATH (names busybox also has as applets)
    image_bin = tb.work / "image-bin"
    image_bin.mkdir()
    term, ran = tb.work / "termination-log", tb.work / "ran"
    for name in ("sh", "sleep"):
        tb.program(f"image-bin/{name}", f'echo "image {name} $*" >> {ran}\n'
                   f'[ -s {term} ] && echo "after the collector" >> {ran}\n'
                   # a child's: sh itself ignores QUIT, and gives its children what it was given
                   f'{tb.busybox} grep SigIgn /proc/self/status >> {ran}\nexit 0')
    collector = toolbox.forensics_argv(str(tb.root), name="app", out_dir=None, budget_seconds=5)
    argv = forensics.chained(collector, user_command, mount=str(tb.root))
    # even started with INT and QUIT ignored, the user's command gets default signal dispositions
    done = subprocess.run(argv, env=tb.env(PATH=str(image_bin), PODMEDIC_TERMINATION_LOG=str(term)),
                          capture_output=True, text=True, timeout=20, preexec_fn=_ignore_int_quit)
    assert done.returncode == 0, done.stderr
    program, order, ignored = ran.read_text().splitlines()
    assert (program, order) == (f"image {' '.join(user_command)}", "after the collector")
    assert int(ignored.removeprefix("SigIgn:"), 16) & ~GLIBC_RESERVED == 0, ignored


# Signals 32 and 33 belong to glibc's threads: no program uses them, glibc's signal() refuses to
# touch them (so sigreset cannot reset them), and some CI harnesses start everything with them
# ignored.
GLIBC_RESERVED = (1 << 31) | (1 << 32)


def _ignore_int_quit() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGQUIT, signal.SIG_IGN)

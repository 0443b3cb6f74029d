"""The supervise wrapper with real processes and real signals."""

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

from tests import pods
from tests.engine.test_mutations import ALL_ON, c0, run
from tests.runtime.conftest import NOBODY, wait_for
from webhook.engine import keys
from webhook.toolbox import argv as toolbox_argv

FAST = {"startsecs": "1", "startretries": "2"}


def states(tb) -> list[str]:
    return [h["state"] for h in tb.state()["history"]]


def finish(proc: subprocess.Popen[str], timeout: float = 20) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGTERM)  # tini forwards it; the wrapper stops its app
        proc.communicate(timeout=30)
        raise
    return proc.returncode, err


def test_crash_loop_until_fatal_then_exit_with_the_apps_code(tb):
    app = tb.program("crash.sh", "exit 3")
    started = time.monotonic()
    code, err = finish(tb.supervise(app, {**FAST, "on-fatal": "exit"}, user=NOBODY))
    took = time.monotonic() - started
    assert code == 3
    assert states(tb) == ["STARTING", "BACKOFF", "STARTING", "BACKOFF", "STARTING", "BACKOFF", "FATAL"]
    assert tb.state()["start_count"] == 3 and tb.state()["last_exit_code"] == 3
    assert "restart 1/2 in 1s" in err and "restart 2/2 in 2s" in err and "FATAL" in err
    assert 3 <= took < 3 + 3  # growing back-off: 1 s + 2 s


def test_hold_keeps_the_container_alive_for_inspection_until_max_hold(tb):
    app = tb.program("crash.sh", "exit 4")
    proc = tb.supervise(app, {"startsecs": "1", "startretries": "0", "on-fatal": "hold", "max-hold": "3"})
    wait_for(lambda: (tb.work / "state" / "app.json").exists() and tb.state()["state"] == "FATAL")
    assert proc.poll() is None  # held
    assert tb.pmctl("alive").returncode == 0
    assert tb.pmctl("ready").returncode == 1
    status = tb.pmctl("status")
    assert status.returncode == 0 and "FATAL" in status.stdout and "last exit 4" in status.stdout
    code, err = finish(proc)
    assert code == 4 and "hold ended" in err
    assert tb.pmctl("alive").returncode == 1  # wrapper gone


def test_sigterm_while_holding_exits_at_once(tb):
    proc = tb.supervise(tb.program("crash.sh", "exit 5"), {"startretries": "0", "max-hold": "600"})
    wait_for(lambda: (tb.work / "state" / "app.json").exists() and tb.state()["state"] == "FATAL")
    os.killpg(proc.pid, signal.SIGTERM)
    code, _ = finish(proc, 5)
    assert code == 5


@pytest.mark.parametrize("sent", [signal.SIGTERM, signal.SIGWINCH], ids=["TERM", "stopsignal-WINCH"])
def test_a_stop_during_a_hold_is_stopped_with_the_apps_last_code(tb, sent):
    """supervisord's last word after a stop is STOPPED: a hold that a stop ended stayed FATAL in
    the state file, the summary and `pmctl status`, as if the hold had run out. The exit code is
    still the app's last one."""
    proc = tb.supervise(tb.program("crash.sh", "exit 5"), {"startretries": "0", "max-hold": "600", "stopsignal": "WINCH"})
    with cleanup(proc):
        wait_for(lambda: (tb.work / "state" / "app.json").exists() and tb.state()["held_since"])
        os.kill(proc.pid, sent)
        code, err = finish(proc, 5)
        assert code == 5, err
        state = tb.state()
        assert states(tb)[-2:] == ["FATAL", "STOPPED"], err
        assert (state["state"], state["last_exit_code"], state["held_since"], state["start_count"]) == ("STOPPED", 5, None, 1)
        summary = json.loads((tb.work / "state" / "app.summary").read_text())
        assert (summary["state"], summary["clean"], summary["last_exit_code"]) == ("STOPPED", True, 5)
        status = tb.pmctl("status")
        assert status.stdout.split()[:2] == ["app", "STOPPED"], status.stdout


def test_running_app_is_ready_and_sigterm_is_forwarded_never_restarted(tb):
    marker = tb.work / "got-term"
    app = tb.program("server.sh", f"trap 'echo term > {marker}; exit 7' TERM\nwhile :; do sleep 0.1; done")
    proc = tb.supervise(app, FAST, user=NOBODY)
    wait_for(lambda: tb.pmctl("ready").returncode == 0)
    assert tb.state()["state"] == "RUNNING" and tb.pmctl("alive").returncode == 0
    os.kill(proc.pid, signal.SIGTERM)  # what the kubelet sends PID 1
    code, err = finish(proc)
    assert code == 7 and marker.read_text().strip() == "term"
    assert states(tb)[-2:] == ["STOPPING", "STOPPED"] and tb.state()["start_count"] == 1


def test_app_ignoring_sigterm_is_killed_after_stopwaitsecs(tb):
    app = tb.program("stubborn.sh", "trap '' TERM\nwhile :; do sleep 0.1; done")
    proc = tb.supervise(app, {**FAST, "stopwaitsecs": "2"})
    wait_for(lambda: tb.pmctl("ready").returncode == 0)
    os.kill(proc.pid, signal.SIGTERM)
    started = time.monotonic()
    code, err = finish(proc)
    assert 2 <= time.monotonic() - started < 4
    assert code == 128 + signal.SIGKILL and "SIGKILL" in err


def test_other_signals_are_forwarded(tb):
    got = tb.work / "got"
    app = tb.program("sig.sh", "\n".join(f"trap 'echo {s} >> {got}' {s}" for s in ("HUP", "USR1", "USR2", "QUIT"))
                     + "\nwhile :; do sleep 0.1; done")
    proc = tb.supervise(app, FAST)
    wait_for(lambda: tb.pmctl("ready").returncode == 0)
    for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGQUIT):
        os.kill(proc.pid, sig)
        wait_for(lambda: got.exists() and sig.name[3:] in got.read_text())
    assert proc.poll() is None
    os.kill(proc.pid, signal.SIGTERM)
    finish(proc)


def test_stopsignal(tb):
    got = tb.work / "got"
    app = tb.program("int.sh", f"trap 'echo INT > {got}; exit 0' INT\nwhile :; do sleep 0.1; done")
    proc = tb.supervise(app, {**FAST, "stopsignal": "INT"})
    wait_for(lambda: tb.pmctl("ready").returncode == 0)
    os.kill(proc.pid, signal.SIGTERM)
    assert finish(proc)[0] == 0 and got.read_text().strip() == "INT"


def test_zombies_are_reaped(tb):
    # the app leaves orphans that exit: tini (PID 1 in the pod) must reap them
    app = tb.program("forker.sh", "for i in 1 2 3 4 5; do (sleep 0.1 &) ; done\nwhile :; do sleep 0.1; done")
    proc = tb.supervise(app, FAST)
    wait_for(lambda: tb.pmctl("ready").returncode == 0)
    time.sleep(1)
    zombies = [p for p in os.listdir("/proc") if p.isdigit() and _is_zombie_child_of(int(p), proc.pid)]
    assert zombies == []
    os.kill(proc.pid, signal.SIGTERM)
    finish(proc)


def _is_zombie_child_of(pid: int, parent: int) -> bool:
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return False
    fields = stat.rsplit(")", 1)[1].split()
    return fields[0] == "Z" and int(fields[1]) == parent


def test_runs_without_any_shell_or_path_in_the_image(tb):
    # env has PATH=/nonexistent: nothing from the host image is found; only the toolbox runs
    code, err = finish(tb.supervise(tb.program("ok.sh", "exit 0"), {"startsecs": "0"}))
    assert code == 0 and "EXITED" in err


@pytest.mark.parametrize("code", [0, 3])
def test_run_to_completion_options_run_the_app_once_and_exit_with_its_code_never_held(tb, code):
    """What the engine gives a Job's container (restartPolicy Never/OnFailure): an app that ends
    at once is neither a failed start retried nor held (on-fatal hold, max-hold as shipped), so
    the kubelet and the Job controller see its exit code after one run."""
    runs = tb.work / "runs"
    app = tb.program("job.sh", f"echo ran >> {runs}; exit {code}")
    started = time.monotonic()
    code_seen, err = finish(tb.supervise(app, {"autorestart": "false", "startsecs": "0", "on-fatal": "hold",
                                               "max-hold": "3600"}))
    assert (code_seen, runs.read_text()) == (code, "ran\n"), err
    assert states(tb) == ["STARTING", "RUNNING", "EXITED"] and "FATAL" not in err and "BACKOFF" not in err
    assert time.monotonic() - started < 5


def test_the_app_reads_the_containers_stdin_on_every_start(tb):
    """`stdin: true` (or a pipe into the container): a shell starts a background command with
    /dev/null for stdin, so the app read EOF and its input was lost."""
    body = 'read -r line || exit 4; echo "app read: $line"; exit 3'
    proc = tb.supervise(tb.program("reader.sh", body), {"startsecs": "0", "restart-backoff-max": "0",
                                                        "restart-limit": "1", "on-fatal": "exit"},
                        stdin=subprocess.PIPE)
    out, err = proc.communicate("first\nsecond\n", timeout=20)
    assert proc.returncode == 3, err
    assert out.splitlines() == ["app read: first", "app read: second"], err


@contextlib.contextmanager
def cleanup(proc: subprocess.Popen[str]):
    """Kill the whole tree if the test fails half-way: its apps loop or hold for long, and may
    outlive a wrapper that died. tini gives its child a process group of its own, so the
    session (tini's, from start_new_session) is what reaches them all."""
    try:
        yield
    finally:
        for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
            try:
                if os.getsid(pid) == proc.pid:
                    os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if proc.poll() is None:
            proc.communicate(timeout=10)


# Images' own STOPSIGNALs (httpd: WINCH, systemd: SIGRTMIN+3, ...): the runtime sends them to
# tini, and the app must get them as it would without podmedic.
@pytest.mark.parametrize("sig", [pytest.param(signal.SIGWINCH, id="WINCH"), pytest.param(signal.SIGPWR, id="PWR"),
                                 pytest.param(signal.SIGALRM, id="ALRM"),
                                 pytest.param(signal.SIGRTMIN + 3, id="RTMIN+3")])
def test_an_images_stop_signal_sent_to_tini_reaches_the_app(tb, sig):
    app = tb.program("httpd.sh", f"trap 'exit 0' {int(sig)}\nwhile :; do sleep 0.1; done")
    proc = tb.supervise(app, FAST)
    with cleanup(proc):
        wait_for(lambda: tb.pmctl("ready").returncode == 0)
        os.kill(proc.pid, sig)
        started = time.monotonic()
        code, _ = finish(proc, 5)
        assert code == 0 and time.monotonic() - started < 2
        assert states(tb)[-1] == "EXITED" and tb.state()["start_count"] == 1


@pytest.mark.parametrize("sent", [signal.SIGTERM, signal.SIGWINCH], ids=["TERM", "WINCH"])
def test_stopsignal_winch_and_term_both_stop_the_container(tb, sent):
    got = tb.work / "got"
    app = tb.program("httpd.sh", f"trap 'echo WINCH >> {got}; exit 3' WINCH\nwhile :; do sleep 0.1; done")
    stopsignal = keys.KEYS["stopsignal"].parse("WINCH")  # the annotation podmedic.io/stopsignal: WINCH
    proc = tb.supervise(app, {**FAST, "autorestart": "true", "stopsignal": stopsignal})
    with cleanup(proc):
        wait_for(lambda: tb.pmctl("ready").returncode == 0)
        os.kill(proc.pid, sent)
        code, _ = finish(proc, 5)
        assert code == 3 and got.read_text() == "WINCH\n"
        assert states(tb)[-2:] == ["STOPPING", "STOPPED"] and tb.state()["start_count"] == 1  # never restarted


def _stop_flags(stop_signal: str, configured: str = "TERM", authored: str | None = None) -> tuple[str, ...]:
    """The stop flags the engine gives the wrapper of a container with this lifecycle.stopSignal,
    in a namespace whose stopsignal is `configured`, in a pod whose author annotated `authored`."""
    annotations = {"podmedic.io/stopsignal": authored} if authored else {}
    mutated, _ = run(pods.pod(pods.container(command=["/app"], lifecycle={"stopSignal": stop_signal}),
                              os={"name": "linux"}, annotations=annotations),
                     {**ALL_ON, "podmedic.io/stopsignal": configured})
    command = c0(mutated)["command"]
    return tuple(f for f in command[:command.index("--", 3)]
                 if f.startswith(("--stop", "--term-stopsignal=", "--kubelet-stopsignal=")))


@pytest.mark.parametrize("own, configured, sent, got", [
    ("SIGUSR1", "TERM", signal.SIGTERM, "TERM"), ("SIGUSR1", "TERM", signal.SIGUSR1, "USR1"),
    ("SIGKILL", "TERM", signal.SIGTERM, "TERM"),
    # the runtime sends the image's STOPSIGNAL, which the namespace's stopsignal matches (httpd: WINCH)
    ("SIGUSR1", "WINCH", signal.SIGWINCH, "WINCH"), ("SIGUSR1", "WINCH", signal.SIGTERM, "WINCH"),
], ids=["USR1-TERM", "USR1-USR1", "KILL-TERM", "USR1-WINCH-WINCH", "USR1-WINCH-TERM"])
def test_a_containers_own_stop_signal_or_sigterm_reaches_the_app_as_the_kubelet_sent_it(tb, own, configured, sent, got):
    """lifecycle.stopSignal is what the kubelet sends only where the API server keeps it: a 1.36
    one drops it (ContainerStopSignals is alpha) after the webhook saw it, and the runtime sends
    the image's STOPSIGNAL (SIGTERM, or the one the configured stopsignal matches). Either way the
    app gets that signal, as without podmedic, once: the wrapper turned SIGTERM into the dropped
    USR1 (an app that reopens its logs on USR1 never stopped, and was killed at the end of the
    grace period), and a WINCH it only forwarded restarted the app during its shutdown."""
    received = tb.work / "got"
    app = tb.program("app.sh", "".join(f"trap 'echo {sig} >> {received}; exit 3' {sig}\n" for sig in ("TERM", "USR1", "WINCH"))
                     + "while :; do sleep 0.1; done")
    proc = tb.supervise(app, {**FAST, "autorestart": "true"}, flags=_stop_flags(own, configured))
    with cleanup(proc):
        wait_for(lambda: tb.pmctl("ready").returncode == 0)
        os.kill(proc.pid, sent)
        code, err = finish(proc, 5)
        assert (code, received.read_text()) == (3, got + "\n"), err
        assert states(tb)[-2:] == ["STOPPING", "STOPPED"] and tb.state()["start_count"] == 1  # never restarted


@pytest.mark.parametrize("sent", [signal.SIGUSR1, signal.SIGTERM], ids=["USR1", "TERM"])
def test_the_containers_own_stop_signal_stops_with_the_pod_authors_stopsignal(tb, sent):
    """The pod's author annotated stopsignal QUIT and the container has lifecycle.stopSignal
    SIGUSR1, which the kubelet sends where the API server kept it: the wrapper forwarded it, the
    app exited on it and was started again in the middle of its pod's shutdown. Now it is a stop,
    and the app gets the author's QUIT, as for a SIGTERM."""
    flags = _stop_flags("SIGUSR1", authored="QUIT")
    assert flags[0] == "--stopsignal=QUIT" and "--kubelet-stopsignal=USR1" in flags, flags
    received = tb.work / "got"
    app = tb.program("app.sh", "".join(f"trap 'echo {sig} >> {received}; exit 3' {sig}\n" for sig in ("TERM", "USR1", "QUIT"))
                     + "while :; do sleep 0.1; done")
    proc = tb.supervise(app, {**FAST, "autorestart": "true"}, flags=flags)
    with cleanup(proc):
        wait_for(lambda: tb.pmctl("ready").returncode == 0)
        os.kill(proc.pid, sent)
        code, err = finish(proc, 5)
        assert (code, received.read_text()) == (3, "QUIT\n"), err
        assert states(tb)[-2:] == ["STOPPING", "STOPPED"] and tb.state()["start_count"] == 1  # never restarted


def test_the_stops_waker_does_not_outlive_the_wrapper(tb):
    """A stop starts a short-lived process that sends the wrapper a few SIGURGs (a stop whose
    trap ran just before the loop's `wait` must still end it), by pid: the wrapper ends it when
    it exits, so no SIGURG goes to a pid used again. Its `sleep` may run out on its own."""
    app = tb.program("app.sh", "trap 'sleep 0.3; exit 3' TERM\nwhile :; do sleep 0.1; done")
    proc = tb.supervise(app, FAST)
    with cleanup(proc):
        wait_for(lambda: tb.pmctl("ready").returncode == 0)
        os.kill(proc.pid, signal.SIGTERM)  # the waker's SIGURGs at 0.1 and 0.5 s: the wrapper ends between
        code, err = finish(proc, 5)
        assert code == 3, err
        left = [words for words in map(runs_on, tb.processes()) if words is not None]
        assert all(b"sleep" in words for words in left), left


def runs_on(pid: int) -> list[bytes] | None:
    """The first words of the command line of a process that will run code of its own again; None
    for one that will not: gone, exiting (its memory already released: an empty command line), or
    with a SIGKILL or an uncaught SIGTERM pending (the waker that the wrapper's `kill` reached and
    the scheduler has not run since). The wrapper does not wait for what it kills: a list taken just
    after it exited found the waker still on its way out."""
    try:
        words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:3]
        status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    except OSError:
        return None
    pending = int(status["SigPnd"], 16) | int(status["ShdPnd"], 16)
    handled = int(status["SigCgt"], 16) | int(status["SigIgn"], 16) | int(status["SigBlk"], 16)
    fatal = (1 << (signal.SIGKILL - 1)) | ((1 << (signal.SIGTERM - 1)) & ~handled)
    return None if words == [b""] or pending & fatal else words


def test_sigterm_during_backoff_stops_at_once(tb):
    proc = tb.supervise(tb.program("crash.sh", "exit 6"), {"startsecs": "1", "startretries": "5"})
    with cleanup(proc):
        # the second back-off sleeps 2 s
        wait_for(lambda: (tb.work / "state" / "app.json").exists() and tb.state()["state"] == "BACKOFF"
                 and tb.state()["retries"] == 2)
        os.kill(proc.pid, signal.SIGTERM)
        started = time.monotonic()
        code, _ = finish(proc, 10)
        assert time.monotonic() - started < 1
        assert code == 6 and states(tb)[-2:] == ["BACKOFF", "STOPPED"] and tb.state()["start_count"] == 2


def test_forwarded_signals_do_not_end_a_hold(tb):
    proc = tb.supervise(tb.program("crash.sh", "exit 5"), {"startretries": "0", "max-hold": "600"})
    with cleanup(proc):
        wait_for(lambda: (tb.work / "state" / "app.json").exists() and tb.state()["state"] == "FATAL")
        time.sleep(0.3)  # into the hold's wait
        for sig in (signal.SIGHUP, signal.SIGWINCH, signal.SIGUSR1):
            os.kill(proc.pid, sig)
        time.sleep(1)
        assert proc.poll() is None and tb.pmctl("alive").returncode == 0  # still holding
        os.kill(proc.pid, signal.SIGTERM)
        code, err = finish(proc, 5)
        assert code == 5 and err.count("hold ended") == 1


def test_sigkill_after_stopwaitsecs_is_logged_once(tb):
    app = tb.program("stubborn.sh", "trap '' TERM\nwhile :; do sleep 0.1; done")
    proc = tb.supervise(app, {**FAST, "stopwaitsecs": "1"})
    with cleanup(proc):
        wait_for(lambda: tb.pmctl("ready").returncode == 0)
        os.kill(proc.pid, signal.SIGTERM)
        code, err = finish(proc)
        assert code == 128 + signal.SIGKILL
        assert err.count("still running after 1s: SIGKILL") == 1, err


def sig_ignored(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("SigIgn:"):
            return int(line.split()[1], 16)
    raise AssertionError("no SigIgn")


def test_signals_ignored_by_the_parent_are_still_forwarded_and_int_stops(tb):
    # started as from nohup or a background job without job control: HUP, INT and QUIT ignored.
    # A shell cannot trap a signal ignored on entry: the wrapper must start with default actions.
    got = tb.work / "got"
    app = tb.program("sig.sh", f"trap 'echo HUP >> {got}' HUP\ntrap 'echo QUIT >> {got}' QUIT\n"
                               f"trap 'echo TERM >> {got}; exit 7' TERM\nwhile :; do sleep 0.1; done")
    proc = tb.supervise(app, FAST, ignored=(signal.SIGHUP, signal.SIGINT, signal.SIGQUIT))
    wait_for(lambda: tb.pmctl("ready").returncode == 0)
    wrapper = tb.state()["wrapper_pid"]
    assert sig_ignored(proc.pid) & 0b111 == 0b111  # tini got them ignored, as the parent left them
    assert sig_ignored(wrapper) & 0b111 == 0  # HUP, INT, QUIT: bits 0-2
    os.kill(proc.pid, signal.SIGHUP)
    wait_for(lambda: got.exists() and "HUP" in got.read_text(), timeout=5)
    os.kill(proc.pid, signal.SIGQUIT)
    wait_for(lambda: "QUIT" in got.read_text(), timeout=5)
    os.kill(proc.pid, signal.SIGINT)  # stops the container: the app gets the stopsignal, TERM
    code, _ = finish(proc, 5)
    assert code == 7 and got.read_text().splitlines() == ["HUP", "QUIT", "TERM"]
    assert states(tb)[-2:] == ["STOPPING", "STOPPED"] and tb.state()["start_count"] == 1


def test_teardown_kills_every_process_a_failed_test_left(tb):
    # what a test that fails half-way leaves: a wrapper holding, and one whose app ignores
    # SIGTERM and has a child of its own in a session of its own
    held = tb.supervise(tb.program("crash.sh", "exit 5"), {"startretries": "0", "max-hold": "600"})
    app = tb.program("stubborn.sh", "trap '' TERM\nsetsid sleep 600 &\nwhile :; do sleep 0.1; done")
    running = tb.supervise(app, FAST)
    wait_for(lambda: tb.pmctl("ready").returncode == 0)
    started = tb.processes()
    assert {held.pid, running.pid} <= started and len(started) >= 6  # 2 tini, 2 wrappers, app, its child
    tb.kill_all()
    assert tb.processes() == set()
    for pid in started:
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
    assert held.returncode is not None and running.returncode is not None


@pytest.mark.parametrize("option,value", [("startsecs", "08"), ("stopwaitsecs", "010"), ("restart-window", "9s"),
                                          ("exitcodes", "0, 2"), ("exitcodes", "0,02")])
def test_a_number_that_is_not_plain_decimal_is_refused_before_the_app_starts(tb, option, value):
    # busybox arithmetic reads a leading 0 as octal: "08" would kill the wrapper after the start
    marker = tb.work / "started"
    code, err = finish(tb.supervise(tb.program("app.sh", f"echo > {marker}"), {option: value}), 10)
    assert code == 2 and f"--{option}={value}: expected" in err
    assert not marker.exists() and not (tb.work / "state" / "app.json").exists()


def test_the_first_second_of_uptime_is_not_bad_octal(tb):
    # a time namespace or lxcfs can show the container an uptime below 1 s: "0.85" once became 085
    uptime = tb.work / "uptime"
    uptime.write_text("0.85 1.70\n")
    argv = toolbox_argv.supervise_command(str(tb.root), name="app", app=(),
                                          flags=toolbox_argv.supervise_flags({"startsecs": "0", "autorestart": "false"}))
    unshare, mount = shutil.which("unshare"), shutil.which("mount")
    probe = subprocess.run([unshare, "-m", mount, "--bind", str(uptime), "/proc/uptime"] if unshare and mount
                           else ["false"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot bind-mount over /proc/uptime here: {probe.stderr.strip()!r}")
    done = subprocess.run([unshare, "-m", tb.busybox, "sh", "-c", f'{mount} --bind "$0" /proc/uptime && exec "$@"',
                           str(uptime), *argv, tb.program("app.sh", "exit 3")],
                          env=tb.env(), capture_output=True, text=True, timeout=20)
    assert done.returncode == 3, done.stderr
    assert states(tb)[-2:] == ["RUNNING", "EXITED"]


def slow_date(tb, *argv: str) -> subprocess.Popen[str]:
    """The wrapper started with `argv` under a busybox whose `date` takes 0.4 s: every state
    write (its history entry, its summary) then holds the wrapper long enough for a test to send
    a signal deterministically in the middle of a start."""
    slow = tb.work / "slow"
    (slow / "bin").mkdir(parents=True)
    shutil.copy(tb.root / "supervise", slow / "supervise")
    shutil.copy(tb.root / "bin" / "sigreset", slow / "bin" / "sigreset")
    shim = slow / "bin" / "busybox"
    shim.write_text(f'#!{tb.busybox} sh\n[ "$1" = date ] && {tb.busybox} sleep 0.4\nexec {tb.busybox} "$@"\n')
    shim.chmod(0o755)
    proc = subprocess.Popen([tb.busybox, "sh", str(slow / "supervise"), "--name", "app", *argv], env=tb.env(),
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    tb.sessions.append(proc)
    return proc


def test_sigterm_during_the_start_sequence_means_no_start(tb):
    # A SIGTERM after the loop's stop check, while the wrapper writes STARTING, found nothing to
    # signal; the app then started anyway and got SIGKILL after stopwaitsecs.
    marker = tb.work / "started"
    app = tb.program("app.sh", f"echo > {marker}\nwhile :; do sleep 0.1; done")
    proc = slow_date(tb, "--stopwaitsecs=5", "--", app)
    assert proc.stderr is not None
    for line in proc.stderr:
        if "STARTING" in line:  # logged before the slow date of the history entry
            proc.send_signal(signal.SIGTERM)
            break
    started = time.monotonic()
    code, err = finish(proc, 15)
    assert code == 0 and time.monotonic() - started < 3, err
    assert not marker.exists() and "SIGKILL" not in err
    assert states(tb)[-2:] == ["STARTING", "STOPPED"] and tb.state()["start_count"] == 0


def test_sigterm_just_after_a_start_with_startsecs_0_is_never_followed_by_running(tb):
    # startsecs 0 (every run-to-completion container) went RUNNING whatever came first: a stop
    # while the wrapper recorded the start logged STOPPING, then RUNNING, and `pmctl ready`
    # passed during the stop
    marker = tb.work / "started"
    app = tb.program("app.sh", f"trap 'exit 5' TERM\necho > {marker}\nwhile :; do sleep 0.1; done")
    proc = slow_date(tb, "--startsecs=0", "--stopwaitsecs=5", "--", app)
    wait_for(marker.exists)  # the wrapper is still writing the state of its start (slow date)
    proc.send_signal(signal.SIGTERM)
    code, err = finish(proc, 15)
    assert code == 5 and "SIGKILL" not in err, err
    assert states(tb)[-3:] == ["STARTING", "STOPPING", "STOPPED"], err


def test_a_state_dir_it_cannot_write_costs_no_error_lines(tb):
    # `> file 2>/dev/null`: the shell opens file first, and its failure went to stderr
    readonly = tb.work / "readonly"
    readonly.mkdir(mode=0o755)
    code, err = finish(tb.supervise(tb.program("ok.sh", "exit 0"), {"startsecs": "0"}, user=NOBODY,
                                    PODMEDIC_STATE_DIR=str(readonly)), 10)
    assert code == 0 and "EXITED" in err
    assert "can't create" not in err and "Permission denied" not in err, err


def test_an_option_of_a_newer_podmedic_is_ignored_and_the_app_runs(tb):
    # the webhook rolled ahead of toolbox.image: its new flag made every wrapped container exit 2
    marker = tb.work / "started"
    code, err = finish(tb.supervise(tb.program("app.sh", f"echo > {marker}; exit 3"),
                                    {"startsecs": "0", "autorestart": "false"}, redact=("--from-the-future=1",)), 10)
    assert code == 3 and marker.exists(), err
    assert "app: ignoring unknown option --from-the-future (toolbox.image older than the webhook?)" in err


def test_a_stray_argument_before_the_double_dash_is_refused(tb):
    marker = tb.work / "started"
    code, err = finish(tb.supervise(tb.program("app.sh", f"echo > {marker}"), redact=("stray",)), 10)
    assert code == 2 and "unknown argument stray" in err and not marker.exists()


@pytest.mark.parametrize("stopsignal", ["INT", "QUIT"])
def test_a_stop_before_sigreset_resets_the_signals_still_reaches_the_app(tb, stopsignal):
    """Between the fork of the app's start and sigreset's reset of the signal actions the child
    ignores INT and QUIT (a shell's background command) and catches the wrapper's traps with the
    shell's handlers: a stop signal sent then was lost, and the app ran on until SIGKILL after
    stopwaitsecs (nginx's QUIT, an INT stopsignal). Here the window is widened: the toolbox's
    sigreset is reached through a script that waits until the wrapper has sent its stop."""
    slow, ready, go = tb.work / "slow", tb.work / "ready", tb.work / "go"
    (slow / "bin").mkdir(parents=True)
    shutil.copy(tb.root / "supervise", slow / "supervise")
    (slow / "bin" / "busybox").symlink_to(tb.root / "bin" / "busybox")
    shim = slow / "bin" / "sigreset"
    shim.write_text(f"#!{tb.busybox} sh\necho > {ready}\nwhile [ ! -e {go} ]; do {tb.busybox} sleep 0.05; done\n"
                    f'exec {tb.root / "bin" / "sigreset"} "$@"\n')
    shim.chmod(0o755)
    got = tb.work / "got"
    app = tb.program("app.sh", f"trap 'echo {stopsignal} > {got}; exit 3' {stopsignal}\nwhile :; do sleep 0.1; done")
    proc = subprocess.Popen([tb.busybox, "sh", str(slow / "supervise"), "--name", "app", f"--stopsignal={stopsignal}",
                             "--stopwaitsecs=20", "--", app], env=tb.env(), stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    tb.sessions.append(proc)
    wait_for(ready.exists)   # the child of the start, before sigreset
    proc.send_signal(signal.SIGTERM)
    summary = tb.work / "state" / "app.summary"
    # the summary says STOPPING just before the wrapper sends the signal, if it sends it now
    wait_for(lambda: '"state":"STOPPING"' in summary.read_text())
    go.write_text("")
    code, err = finish(proc, 10)
    # the app got the stop signal, or sigreset died of it before it started the app
    assert code in (3, 128 + getattr(signal, f"SIG{stopsignal}")) and "SIGKILL" not in err, err
    assert states(tb)[-2:] == ["STOPPING", "STOPPED"] and tb.state()["start_count"] == 1


def test_an_exit_127_as_a_forwarded_signal_interrupts_the_wait_is_the_apps_code(tb):
    """A trapped signal that ends the wrapper's `wait` as the app exits makes it return 128+N; the
    app's status is then still pending, and the second wait that collects it said 127 for an app
    whose code was 127 ("command not found", sigreset's own): the wrapper took that for "already
    collected" and recorded 129. Made deterministic: the wrapper is stopped (SIGSTOP) while it
    blocks in that wait, and gets the HUP to forward and the app's SIGCHLD at once when it resumes."""
    go = tb.work / "go"
    proc = tb.supervise(tb.program("app.sh", f"while [ ! -e {go} ]; do sleep 0.05; done\nexit 127"),
                        {"startsecs": "0", "autorestart": "false", "memwatch-threshold": "0"})
    with cleanup(proc):
        wait_for(lambda: (tb.work / "state" / "app.json").exists() and tb.state()["state"] == "RUNNING")
        wrapper, app = tb.state()["wrapper_pid"], tb.state()["pid"]
        # blocked in the wait of its RUNNING loop (ash's wait sleeps in sigsuspend)
        wait_for(lambda: Path(f"/proc/{wrapper}/wchan").read_text().startswith("sigsuspend"))
        os.kill(wrapper, signal.SIGSTOP)
        try:
            go.write_text("")
            wait_for(lambda: Path(f"/proc/{app}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z")
            os.kill(wrapper, signal.SIGHUP)   # forwarded to the app (a zombie by now)
        finally:
            os.kill(wrapper, signal.SIGCONT)
        code, err = finish(proc, 10)
        assert code == 127, err
        assert tb.state()["last_exit_code"] == 127 and states(tb)[-1] == "EXITED", err
        assert "app exited with code 127" in err, err


@pytest.mark.parametrize("case", ["crash", "sigkill-after-stopwaitsecs"])
def test_an_app_killed_by_a_signal_leaves_only_the_wrappers_lines(tb, case):
    """busybox sh reports a job that a signal killed ("Segmentation fault", "Killed", "Terminated")
    when its `wait` builtin is what collects it, not when the wait of a command run meanwhile did:
    a crash while the wrapper waited for the app and the SIGKILL after stopwaitsecs put such a
    line, not the wrapper's, into the container's log; a stop's poll (a sleep) mostly collected
    the app first, so whether a stop's log had it was a race."""
    if case == "sigkill-after-stopwaitsecs":
        proc = tb.supervise(tb.program("stubborn.sh", "trap '' TERM\nwhile :; do sleep 0.1; done"),
                            {"startsecs": "0", "stopwaitsecs": "1"})
        with cleanup(proc):
            wait_for(lambda: tb.pmctl("ready").returncode == 0)
            os.kill(proc.pid, signal.SIGTERM)
            code, err = finish(proc)
        assert code == 128 + signal.SIGKILL and "STOPPING: sending SIGTERM" in err, err
    else:
        code, err = finish(tb.supervise(tb.program("segv.sh", "sleep 1.2; kill -s SEGV $$"),
                                        {"startsecs": "0", "autorestart": "false"}))
        assert code == 128 + signal.SIGSEGV and "app exited with code 139 (unexpected)" in err, err
    assert all(line.startswith("podmedic-supervise: app: ") for line in err.splitlines()), err

"""The preStop collector with real processes: bundle layout, redaction, budget, termination message,
whose environment it records and which processes it takes for JVMs."""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.runtime.conftest import NOBODY, wait_for
from webhook.engine.features import forensics
from webhook.toolbox import argv as toolbox

SECRET = "hunter2-" + os.urandom(4).hex()
PEM = f"-----BEGIN PRIVATE KEY-----\n{SECRET}-line2\n-----END PRIVATE KEY-----"  # a multi-line secret
APP_ENV = {"DB_PASSWORD": SECRET, "API_TOKEN": SECRET, "TLS_KEY": PEM, "GREETING": "hello", "ONLY_THE_APP": "has-this"}


def collect(tb, out: str | None, budget: int = 10, user: int | None = None, prefix: tuple[str, ...] = (),
            termination_log: bool = True, **env: str):
    """Run the preStop collector as the kubelet's exec does: its environment is its own, not the app's."""
    argv = [*prefix, *toolbox.forensics_argv(str(tb.root), name="app", out_dir=out, budget_seconds=budget,
                                             termination_log=termination_log)]
    ids = {"user": user, "group": user, "extra_groups": []} if user is not None else {}
    started = time.monotonic()
    done = subprocess.run(argv, env=tb.env(ONLY_THE_COLLECTOR="has-this", **env),
                          capture_output=True, text=True, timeout=budget + 10, **ids)
    return done, time.monotonic() - started


def assert_the_apps_environment(env: str) -> None:
    assert "ONLY_THE_APP=has-this" in env and "ONLY_THE_COLLECTOR" not in env, env
    assert "GREETING=hello" in env and "DB_PASSWORD=<redacted>" in env and "API_TOKEN=<redacted>" in env
    assert "TLS_KEY=<redacted>" in env and "line2" not in env and SECRET not in env


def test_bundle_in_the_log_directory(tb):
    logs = tb.work / "logs"
    logs.mkdir()
    logs.chmod(0o1777)  # what podmedic logdir makes of the container's log directory
    (logs / "app.log").write_text("".join(f"line {i}\n" for i in range(500)))
    proc = tb.supervise(tb.program("srv.sh", "while :; do sleep 0.1; done"), {"startsecs": "1"}, user=NOBODY,
                        **APP_ENV)
    wait_for(lambda: tb.pmctl("ready").returncode == 0)
    # secrets on a command line: NAME=value, and an option's next argument
    java = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "java-like",
                             f"-Djavax.net.ssl.keyStorePassword={SECRET}", "--db-password", SECRET, "-Xmx1g"],
                            start_new_session=True)
    try:
        done, took = collect(tb, str(logs), user=NOBODY, DB_PASSWORD=SECRET)
    finally:
        java.kill()
        java.wait()
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
    assert "java-like -Djavax.net.ssl.keyStorePassword=<redacted> --db-password <redacted> -Xmx1g " in processes
    # readable by the app's UID and root only; the forensics/ directory stays listable
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o700 and bundle.stat().st_uid == NOBODY
    assert {stat.S_IMODE(f.stat().st_mode) for f in bundle.iterdir()} == {0o600}
    assert stat.S_IMODE((logs / "forensics").stat().st_mode) == 0o755
    assert "open fds:" in processes and "State:" in processes and "srv.sh" in processes
    assert "MemTotal" in (bundle / "memory.txt").read_text()
    assert "state=" in (bundle / "sockets.txt").read_text() or (bundle / "sockets.txt").read_text() == ""
    env = (bundle / "redacted_env.txt").read_text()
    assert_the_apps_environment(env)  # the supervised app's (its pid from the state file)
    assert env.startswith(f"# environment of pid {summary['supervisor']['pid']}, the app"), env
    assert "line 499" in (bundle / "recent_logs.txt").read_text()
    for f in bundle.iterdir():
        assert SECRET not in f.read_text(errors="replace"), f.name


def test_recent_logs_are_the_most_recently_written(tb):
    """recent_logs.txt holds the tails of up to 20 files written in the last hour: the 20 written
    last. An app that rotates its log by size writes more than 20 files an hour; taken in the
    directory's order (ext4 hashes names), the 20 were any of them, and the file the app was
    writing when it stopped was missing from its bundle."""
    logs = tb.work / "logs"
    logs.mkdir()
    # created in an order unrelated to the times written (tmpfs lists the newest entry first,
    # ext4 by a hash of the name): app.log first, the rotated ones shuffled, times set after
    (logs / "app.log").write_text("the line before the stop\n")
    an_hour_ago = time.time() - 1800
    for i in random.Random(18).sample(range(400), 400):
        rotated = logs / f"app.log.{i}"
        rotated.write_text(f"rotated {i}\n")
        os.utime(rotated, (an_hour_ago + i, an_hour_ago + i))
    done, _ = collect(tb, str(logs))
    assert done.returncode == 0
    tails = next((logs / "forensics").iterdir()).joinpath("recent_logs.txt").read_text()
    heads = re.findall(r"^=== .*/(app\.log(?:\.\d+)?)$", tails, re.M)
    assert heads == ["app.log", *(f"app.log.{i}" for i in range(399, 380, -1))], heads
    assert "the line before the stop" in tails


def test_recent_logs_leave_out_the_bundles_whatever_the_log_path(tb):
    """A log path is any printable absolute path (keys.parse_mount_path): `[` and `]` included.
    find's -path reads its argument as a pattern, so `.../logs[1]/forensics` matched no path and
    the bundles (earlier ones, and this bundle's own first files) were tailed as recent logs,
    taking the slots of the app's."""
    logs = tb.work / "logs[1]"
    logs.mkdir()
    (logs / "app.log").write_text("the app's line\n")
    for _ in range(2):
        assert collect(tb, str(logs))[0].returncode == 0
    bundles = sorted((logs / "forensics").iterdir())
    tails = bundles[-1].joinpath("recent_logs.txt").read_text()
    assert re.findall(r"^=== (.*)$", tails, re.M) == [str(logs / "app.log")], tails

def test_without_log_directory_writes_the_termination_message(tb):
    term = tb.work / "termination-log"
    done, _ = collect(tb, None, PODMEDIC_TERMINATION_LOG=str(term), DB_PASSWORD=SECRET)
    assert done.returncode == 0
    text = term.read_text()
    assert "podmedic forensics" in text and "container app" in text and len(text) <= 4096
    assert SECRET not in text


@pytest.mark.parametrize("before, kept", [("FATAL: config missing\n", True), ("\nFATAL: config missing\n", True),
                                           ('{"podmedic":"summary","name":"app","state":"FATAL"}\n', False)])
def test_without_log_directory_the_apps_own_termination_message_stays(tb, before, kept):
    """A message the app wrote (it exited, and the wrapper holds it; a probe kill then runs the
    preStop) is the app's reason, which the wrapper never overwrites either; the wrapper's own
    summary gives way to the collector's, as it would to the app's."""
    term = tb.work / "termination-log"
    term.write_text(before)
    done, _ = collect(tb, None, PODMEDIC_TERMINATION_LOG=str(term))
    assert done.returncode == 0
    assert (term.read_text() == before) is kept and ("podmedic forensics" in term.read_text()) is not kept


def test_without_log_directory_and_with_termination_log_off_leaves_the_message_empty(tb):
    """terminationMessagePolicy FallbackToLogsOnError: the kubelet makes the log's tail the
    message only while the termination log is empty."""
    term = tb.work / "termination-log"
    term.write_text("")  # the kubelet creates it for every container start
    done, _ = collect(tb, None, termination_log=False, PODMEDIC_TERMINATION_LOG=str(term))
    assert done.returncode == 0 and term.read_text() == ""


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


# ---- which processes are JVMs, and whose environment is recorded

@pytest.fixture(scope="session")
def jvms(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """tests/runtime/jvm.c built three ways: `java` (a JVM by its executable), `jsvc` (a launcher
    that loaded a libjvm.so) and `server` (a copy of java under another name)."""
    if shutil.which("gcc") is None:
        pytest.skip("no gcc to build the stand-in JVM: apt-get install gcc libc6-dev")
    d = tmp_path_factory.mktemp("jvm")
    os.chmod(d, 0o755)
    source = str(Path(__file__).with_name("jvm.c"))
    (d / "jdk" / "bin").mkdir(parents=True)
    (d / "jdk" / "lib").mkdir()

    def gcc(*args: str) -> None:
        subprocess.run(["gcc", "-Os", *args], check=True, capture_output=True, timeout=120)

    gcc("-static", "-o", str(d / "jdk" / "bin" / "java"), source)
    gcc("-shared", "-fPIC", "-o", str(d / "jdk" / "lib" / "libjvm.so"), "-x", "c", "/dev/null")
    gcc("-o", str(d / "jsvc"), source, f"-L{d / 'jdk' / 'lib'}", "-Wl,--no-as-needed", "-ljvm",
        f"-Wl,-rpath,{d / 'jdk' / 'lib'}")
    shutil.copy2(d / "jdk" / "bin" / "java", d / "server")
    return {"java": str(d / "jdk" / "bin" / "java"), "jsvc": str(d / "jsvc"), "server": str(d / "server")}


@contextlib.contextmanager
def started(*procs: subprocess.Popen) -> Iterator[None]:
    """Kill these processes (each in a session of its own) however the test ends."""
    try:
        yield
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def spawn(argv: list[str], executable: str | None = None, **env: str) -> subprocess.Popen:
    return subprocess.Popen(argv, executable=executable, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def quits(record: Path) -> int:
    return record.read_text().count("SIGQUIT") if record.exists() else 0


def test_thread_dumps_only_for_jvms_by_their_executable(tb, jvms):
    logs = tb.work / "logs"
    logs.mkdir()
    rec = {k: tb.work / f"rec-{k}" for k in ("app", "renamed", "jsvc", "decoy")}
    # The supervised app execs the JVM: tini's and the wrapper's command lines name the script,
    # "java-app", and must not get SIGQUIT (tini and the wrapper would forward it: several dumps).
    tb.supervise(tb.program("java-app", f"exec {jvms['java']} {rec['app']} -jar app.jar"), {"startsecs": "0"})
    others = [
        spawn(["server", str(rec["renamed"])], executable=jvms["java"]),  # exe java, no "java" in its argv
        spawn([jvms["jsvc"], str(rec["jsvc"])]),                            # exe jsvc, with libjvm.so loaded
        spawn([jvms["server"], str(rec["decoy"]), "-cp", "java"]),         # "java" in its argv only
    ]
    with started(*others):
        wait_for(lambda: all(r.exists() for r in rec.values()))
        app = wait_for(lambda: tb.state()["pid"])
        wrapper = tb.state()["wrapper_pid"]
        done, _ = collect(tb, str(logs))
        assert done.returncode == 0
        threads = next((logs / "forensics").iterdir()).joinpath("threads.txt").read_text()
        signalled = {int(p) for p in re.findall(r"^pid (\d+): sent SIGQUIT", threads, re.M)}
        assert signalled == {app, others[0].pid, others[1].pid}, threads
        assert f"pid {wrapper} tid" in threads  # listed as any other process, not signalled
        wait_for(lambda: quits(rec["app"]) and quits(rec["renamed"]) and quits(rec["jsvc"]))
        time.sleep(0.5)  # a forwarded copy would arrive by now
        assert [quits(rec[k]) for k in ("app", "renamed", "jsvc", "decoy")] == [1, 1, 1, 0]


def test_a_jvm_that_does_not_handle_sigquit_is_not_killed(tb):
    """A JVM started with -Xrs has no SIGQUIT handler: the signal would kill it with a core dump."""
    logs = tb.work / "logs"
    logs.mkdir()
    java = tb.work / "java"
    shutil.copy2(tb.busybox, java)  # a JVM by its executable, without a SIGQUIT handler
    proc = spawn(["busybox", "sleep", "100"], executable=str(java))
    with started(proc):
        done, _ = collect(tb, str(logs))
        assert done.returncode == 0
        threads = next((logs / "forensics").iterdir()).joinpath("threads.txt").read_text()
        assert f"pid {proc.pid}: a JVM that does not handle SIGQUIT" in threads, threads
        time.sleep(0.3)
        assert proc.poll() is None


def test_thread_states_of_a_process_whose_name_has_spaces(tb):
    """threads.txt gives each thread's state, the field after the name in /proc/PID/task/TID/stat:
    a name may hold spaces and parentheses (a script `my app (v2)`, a thread named by the app).
    Cut at the third space-separated field, the state of the app below read `app`; and a process
    gone while the collector ran (its own helpers) gave a line `pid N tid *:`."""
    logs = tb.work / "logs"
    logs.mkdir()
    tb.supervise(tb.program("my app) (v2", "while :; do sleep 0.1; done"), {"startsecs": "1"})
    wait_for(lambda: tb.pmctl("ready").returncode == 0)
    app = tb.state()["pid"]
    done, _ = collect(tb, str(logs))
    assert done.returncode == 0
    threads = next((logs / "forensics").iterdir()).joinpath("threads.txt").read_text()
    assert re.search(rf"^pid {app} tid {app}: my app\) \(v2 [RS]$", threads, re.M), threads
    assert all(re.fullmatch(r"pid \d+ tid \d+: .* [RSDZTtXIPWK]", line) for line in threads.splitlines()), threads


def test_environment_without_supervisor_is_the_containers_main_process(tb, jvms):
    """No state file: the app is the container's main process, the oldest one that is not the
    toolbox's. A PID namespace of its own stands for the container."""
    unshare, nsenter = shutil.which("unshare"), shutil.which("nsenter")
    if unshare is None or nsenter is None:
        pytest.skip("no unshare/nsenter (util-linux) to make a PID namespace")
    if subprocess.run([unshare, "--pid", "--fork", "--mount-proc", "true"], capture_output=True).returncode:
        pytest.skip("cannot create a PID namespace here (unshare --pid needs CAP_SYS_ADMIN)")
    logs = tb.work / "logs"
    logs.mkdir()
    container = spawn([unshare, "--pid", "--fork", "--mount-proc", jvms["server"], str(tb.work / "rec-main")],
                      PATH="/usr/bin:/bin", **APP_ENV)
    with started(container):
        children = Path(f"/proc/{container.pid}/task/{container.pid}/children")
        main = int(wait_for(lambda: children.read_text().split())[0])  # PID 1 in the namespace
        wait_for(lambda: (tb.work / "rec-main").exists())
        # a later process in the same container, and the collector's own environment, must not count
        enter = (nsenter, "-t", str(main), "-p", "-m", "--")
        later = spawn([*enter, jvms["server"], str(tb.work / "rec-later")], ONLY_THE_LATER_ONE="x")
        with started(later):
            wait_for(lambda: (tb.work / "rec-later").exists())
            done, _ = collect(tb, str(logs), prefix=enter)
    assert done.returncode == 0, done.stderr
    env = next((logs / "forensics").iterdir()).joinpath("redacted_env.txt").read_text()
    assert env.startswith("# environment of pid 1, the container's main process"), env
    assert_the_apps_environment(env)
    assert "ONLY_THE_LATER_ONE" not in env


# ---- a shared process namespace: the other containers' processes are not this container's

def _hierarchy(layout: str) -> Path:
    """The root of a cgroup hierarchy to make two sibling cgroups in: v2 (/sys/fs/cgroup, or
    /sys/fs/cgroup/unified beside v1 controllers) or v1 (the pids controller's)."""
    if os.geteuid() != 0:
        pytest.skip("moving processes between cgroups needs root")
    candidates = {"v1": [Path("/sys/fs/cgroup/pids")],
                  "v2": [Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")]}[layout]
    for root in candidates:
        if (root / "cgroup.procs").exists() and (root / "cgroup.controllers").exists() == (layout == "v2"):
            return root
    pytest.skip(f"no cgroup {layout} hierarchy under /sys/fs/cgroup")


def _unshare() -> str:
    """util-linux unshare (busybox's has no --cgroup)."""
    found = shutil.which("unshare")
    if found is None:
        pytest.skip("no unshare (util-linux) to make a cgroup namespace")
    return found


@pytest.fixture(params=["v1", "v2", "v2-cgroupns"])
def pod_cgroups(request: pytest.FixtureRequest) -> Iterator[tuple[Path, Path, str]]:
    """Two containers of one pod: sibling cgroups `this` (the app and the collector) and `other`,
    and the layout. v2-cgroupns: the collector sees its cgroup as `0::/`, the other's as
    `0::/../other-...`, as in a container on cgroup v2. Request it before `tb`."""
    layout = request.param
    root = _hierarchy(layout.removesuffix("-cgroupns"))
    tag = f"{os.getpid()}-{os.urandom(3).hex()}"
    made = []
    try:
        for role in ("this", "other"):
            made.append(root / f"podmedic-pidns-{role}-{tag}")
            made[-1].mkdir()
    except OSError as exc:
        for cg in made[:-1]:
            cg.rmdir()
        pytest.skip(f"cannot create a cgroup in {root}: {exc}")
    try:
        yield made[0], made[1], layout
    finally:
        for cg in made:
            _remove_cgroup(cg)


def _remove_cgroup(cg: Path) -> None:
    """Kill its processes and remove it, its child cgroups (a test's `this/worker`) first."""
    for child in [d for d in cg.iterdir() if d.is_dir()]:
        _remove_cgroup(child)
    deadline = time.monotonic() + 10
    while cg.exists() and time.monotonic() < deadline:
        for pid in (cg / "cgroup.procs").read_text().split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        with contextlib.suppress(OSError):
            cg.rmdir()
        time.sleep(0.05)
    assert not cg.exists(), f"could not remove the test cgroup {cg}"


def _entered(tb, cg: Path, *argv: str) -> list[str]:
    """argv, run in cgroup cg (as a process of that container)."""
    return [tb.busybox, "sh", "-c", f'echo $$ > {cg}/cgroup.procs && exec "$@"', "enter", *argv]


def _collector_in(tb, cg: Path, layout: str) -> list[str]:
    """The prefix that runs the collector in cg, as that container's preStop (in a cgroup
    namespace of its own for v2-cgroupns)."""
    return _entered(tb, cg, *([_unshare(), "--cgroup"] if layout == "v2-cgroupns" else []))


def test_only_this_containers_processes_with_a_shared_process_namespace(pod_cgroups, tb, jvms):
    """shareProcessNamespace (or hostPID): the collector sees the other containers' processes.
    It lists, dumps and calls "left behind" only those of its own cgroup: the other container's
    JVM gets no SIGQUIT (a thread dump on its stdout) and its processes are not in the bundle."""
    this, other, layout = pod_cgroups
    logs = tb.work / "logs"
    logs.mkdir()
    logs.chmod(0o1777)
    rec = {k: tb.work / f"rec-{k}" for k in ("app", "other")}
    tb.supervise(tb.program("java-app", f"exec {jvms['java']} {rec['app']}"), {"startsecs": "0"}, cgroup=this)
    theirs, left = ("other-container-" + os.urandom(4).hex(), "left-behind-" + os.urandom(4).hex())

    # the other container's JVM and one more of its processes; a process the app left behind
    neighbours = [spawn(_entered(tb, other, jvms["java"], str(rec["other"]))),
                  spawn(_entered(tb, other, jvms["server"], str(tb.work / theirs)))]
    leftover = spawn(_entered(tb, this, jvms["server"], str(tb.work / left)))
    into_this = _collector_in(tb, this, layout)
    with started(*neighbours, leftover):
        wait_for(lambda: all(r.exists() for r in [*rec.values(), tb.work / theirs, tb.work / left]))
        app = wait_for(lambda: tb.state()["pid"])
        done, _ = collect(tb, str(logs), prefix=tuple(into_this))
        assert done.returncode == 0, done.stderr
        [bundle] = (logs / "forensics").iterdir()
        threads = (bundle / "threads.txt").read_text()
        signalled = {int(p) for p in re.findall(r"^pid (\d+): sent SIGQUIT", threads, re.M)}
        assert signalled == {app}, threads
        processes = (bundle / "processes.txt").read_text()
        assert f"=== pid {app}:" in processes and left in processes
        assert f"=== pid {neighbours[0].pid}:" not in processes and theirs not in processes, processes
        exit_mode = [*into_this, tb.busybox, "sh", str(tb.root / "forensics"), "--name", "app", "--out", str(logs),
                     "--exit", "3"]
        done = subprocess.run(exit_mode, env=tb.env(), capture_output=True, text=True, timeout=20)
        assert done.returncode == 0, done.stderr
        [exit_bundle] = (logs / "forensics").glob("*-exit-3")
        behind = (exit_bundle / "left_behind.txt").read_text()
        assert f"pid {leftover.pid} " in behind and left in behind and f"pid {app} " in behind
        assert f"pid {neighbours[0].pid} " not in behind and theirs not in behind, behind
        wait_for(lambda: quits(rec["app"]))
        time.sleep(0.5)  # a SIGQUIT to the other container's JVM would have arrived by now
        assert (quits(rec["app"]), quits(rec["other"])) == (1, 0)
    # a container without supervisor whose processes are all gone: no other's environment instead
    alone = tb.work / "alone"
    alone.mkdir()
    alone.chmod(0o1777)
    into_other = _collector_in(tb, other, layout)
    done, _ = collect(tb, str(alone), prefix=tuple(into_other), PODMEDIC_STATE_DIR=str(tb.work / "no-state"))
    assert done.returncode == 0, done.stderr
    [bundle] = (alone / "forensics").iterdir()
    assert (bundle / "redacted_env.txt").read_text() == "no app process found\n"


# A process that forks one child that exits at once and is never reaped (a zombie), and one whose
# main thread exits while another thread runs on (pthread_exit in main): on cgroup v1 the kernel
# prints "/" on every v1 line of /proc/PID/cgroup for both. Their pids go to argv[1].
EXITED_TASKS = """
import ctypes, os, sys, threading, time
zombie = os.fork()
if zombie == 0:
    os._exit(0)
leaderless = os.fork()
if leaderless == 0:
    threading.Thread(target=time.sleep, args=(60,)).start()
    ctypes.CDLL(None).pthread_exit(None)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(f"{zombie} {leaderless}")
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(60)
"""


def _exited_tasks(tb, cg: Path, tag: str) -> tuple[subprocess.Popen, int, int]:
    """EXITED_TASKS run in cg: the process, its zombie child and its child without a main thread."""
    pids = tb.work / f"pids-{tag}"
    proc = spawn(_entered(tb, cg, sys.executable, "-c", EXITED_TASKS, str(pids), tag))
    zombie, leaderless = (int(p) for p in wait_for(lambda: pids.exists() and pids.read_text()).split())
    wait_for(lambda: Path(f"/proc/{zombie}/stat").read_text().rsplit(") ", 1)[1].startswith("Z")
             and Path(f"/proc/{leaderless}/cmdline").read_bytes() == b"")  # its main thread is gone
    return proc, zombie, leaderless


def test_zombies_exited_main_threads_and_child_cgroups_are_this_containers(pod_cgroups, tb, jvms):
    """A zombie of the app, a process of the app whose main thread exited, and a JVM the app moved
    into a child cgroup (this/worker) are listed and (the JVM) dumped; the other container's
    zombie and the JVM in its child cgroup are not. Run in every layout: on v1 the exited tasks'
    cgroup reads "/", under a cgroup namespace the other's child reads "0::/../other-.../worker"."""
    this, other, layout = pod_cgroups
    logs = tb.work / "logs"
    logs.mkdir()
    logs.chmod(0o1777)
    rec = {k: tb.work / f"rec-{k}" for k in ("worker", "other-worker")}
    for cg in (this, other):
        (cg / "worker").mkdir()
    workers = [spawn(_entered(tb, this / "worker", jvms["java"], str(rec["worker"]))),
               spawn(_entered(tb, other / "worker", jvms["java"], str(rec["other-worker"])))]
    parent, zombie, leaderless = _exited_tasks(tb, this, "this-" + os.urandom(4).hex())
    theirs, their_zombie, their_leaderless = _exited_tasks(tb, other, "other-" + os.urandom(4).hex())
    with started(*workers, parent, theirs):
        wait_for(lambda: all(r.exists() for r in rec.values()))
        done, _ = collect(tb, str(logs), prefix=tuple(_collector_in(tb, this, layout)))
        assert done.returncode == 0, done.stderr
        [bundle] = (logs / "forensics").iterdir()
        processes = (bundle / "processes.txt").read_text()
        listed = {int(p) for p in re.findall(r"^=== pid (\d+):", processes, re.M)}
        assert {parent.pid, zombie, leaderless, workers[0].pid} <= listed, processes
        assert not {theirs.pid, their_zombie, their_leaderless, workers[1].pid} & listed, processes
        assert re.search(rf"^=== pid {zombie}:.*\n(.*\n)*?State:\tZ", processes, re.M), processes
        threads = (bundle / "threads.txt").read_text()
        signalled = {int(p) for p in re.findall(r"^pid (\d+): sent SIGQUIT", threads, re.M)}
        assert signalled == {workers[0].pid}, threads
        dumped = {int(p) for p in re.findall(r"^pid (\d+) tid ", threads, re.M)}
        assert {zombie, leaderless} <= dumped and not {their_zombie, their_leaderless} & dumped, threads
        wait_for(lambda: quits(rec["worker"]))
        time.sleep(0.5)  # a SIGQUIT to the other container's JVM would have arrived by now
        assert (quits(rec["worker"]), quits(rec["other-worker"])) == (1, 0)


def test_bundles_in_the_same_second_never_share_a_directory(tb):
    """Two preStops of one container (the kubelet's kill after a liveness failure and the pod's
    deletion), an exit bundle, and a container named like that exit bundle (`app-exit-1`), all in
    one second: each writes a directory of its own, never into another's (mkdir -p shared them).
    All four must take one time stamp, or nothing was checked: up to 3 attempts, then a failure."""
    missed = []
    for attempt in range(3):
        logs = tb.work / f"logs-{attempt}"
        found = _four_collectors_at_once(tb, logs)
        if len({s["time"] for s, _ in found}) == 1:
            break
        missed.append([name for _, name in found])
    else:
        pytest.fail(f"the four collectors never started within one second, so nothing was checked: {missed}")
    kinds = sorted((s["container"], s.get("kind", "preStop")) for s, _ in found)
    assert kinds == [("app", "exit"), ("app", "preStop"), ("app", "preStop"), ("app-exit-1", "preStop")], found
    for summary, name in found:  # each directory holds its own collectors' files, all of them (one
        # may have run out of its 3 s slice on a loaded machine: it is in failed, its file is there)
        expected = COLLECTORS[summary.get("kind", "preStop")]
        assert {*summary["ran"], *(f["collector"] for f in summary["failed"])} == expected, (name, summary)
        assert {f.stem for f in (logs / "forensics" / name).glob("*.txt")} >= expected, name


COLLECTORS = {"preStop": {"supervisor", "processes", "threads", "sockets", "memory", "disk", "redacted_env",
                           "recent_logs"},
              "exit": {"supervisor", "memory", "cgroup", "left_behind", "processes", "recent_logs", "disk"}}
# Says it is ready, then holds a collector until its stdin gets a line and runs it (its stdin,
# stdout and stderr on /dev/null).
GATE = 'echo ready && read -r _ && exec "$@" < /dev/null > /dev/null 2>&1'


def _four_collectors_at_once(tb, logs: Path) -> list[tuple[dict, str]]:
    """Two preStops of app, app's exit 1 and app-exit-1's preStop, released together just after a
    whole second, into logs: each bundle's summary and directory name. Started first and held at
    a gate: starting four processes one by one takes longer than a second on a loaded machine."""
    logs.mkdir()
    logs.chmod(0o1777)  # what podmedic logdir makes of the container's log directory
    # a budget for all 8 collectors at 3 s each: four collectors at once on a loaded machine had
    # the last ones "budget exhausted" within 5 s
    prestop = [toolbox.forensics_argv(str(tb.root), name=n, out_dir=str(logs), budget_seconds=30)
               for n in ("app", "app", "app-exit-1")]
    exit_one = [tb.busybox, "sh", str(tb.root / "forensics"), "--name", "app", "--budget", "30", "--out", str(logs),
                "--exit", "1"]
    procs = [subprocess.Popen([tb.busybox, "sh", "-c", GATE, "gate", *argv], env=tb.env(), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, start_new_session=True)
             for argv in (*prestop, exit_one)]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
            proc.stdout.close()
        time.sleep(1 - time.time() % 1 + 0.01)  # just after the next whole second: a second for all four
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            proc.stdin.close()
        assert [p.wait(timeout=60) for p in procs] == [0] * 4
    finally:  # a gate that never said ready, or a collector that hangs: none, nor its children,
        for proc in procs:  # outlives the test (each gate leads a session of its own)
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return [(json.loads((d / "summary.json").read_text()), d.name) for d in (logs / "forensics").iterdir()
            if d.is_dir()]

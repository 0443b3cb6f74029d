"""A real OOM kill: the test creates a memory cgroup with a 64 MiB limit (cgroup v1, or v2 with
memory.oom.group 0 as the kubelet's singleProcessOOMKill leaves it), starts the wrapper in it, and
the app (tests/runtime/hog.c) allocates slowly past the limit until the kernel's OOM killer kills
it. The wrapper survives, writes the pre-mortem snapshot before the kill (memory watch) and the
`-exit-oomkilled` bundle after it, and says OOMKilled. Needs root and a writable memory cgroup;
skips with the reason otherwise."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

LIMIT = 64 << 20
V1_ROOT = Path("/sys/fs/cgroup/memory")
V2_ROOT = Path("/sys/fs/cgroup")


def _create(name: str) -> tuple[Path, str]:
    """A memory cgroup limited to LIMIT without swap, and its version; pytest.skip when impossible."""
    if os.geteuid() != 0:
        pytest.skip("creating a memory cgroup needs root")
    if (V1_ROOT / "memory.limit_in_bytes").exists():
        root, version = V1_ROOT, "v1"
    elif (V2_ROOT / "cgroup.controllers").exists():
        root, version = V2_ROOT, "v2"
        if "memory" not in (V2_ROOT / "cgroup.subtree_control").read_text().split():
            pytest.skip("cgroup v2 without the memory controller enabled for child cgroups of /sys/fs/cgroup")
    else:
        pytest.skip("no memory cgroup hierarchy under /sys/fs/cgroup")
    cg = root / name
    try:
        cg.mkdir()
    except OSError as exc:
        pytest.skip(f"cannot create a memory cgroup in {root}: {exc}")
    try:
        if version == "v1":
            (cg / "memory.limit_in_bytes").write_text(str(LIMIT))
            if (cg / "memory.memsw.limit_in_bytes").exists():  # no escape into swap
                (cg / "memory.memsw.limit_in_bytes").write_text(str(LIMIT))
            with contextlib.suppress(OSError):
                (cg / "memory.swappiness").write_text("0")
        else:
            (cg / "memory.max").write_text(str(LIMIT))
            if (cg / "memory.swap.max").exists():
                (cg / "memory.swap.max").write_text("0")
            (cg / "memory.oom.group").write_text("0")  # singleProcessOOMKill: only the app is killed
    except OSError as exc:
        cg.rmdir()
        pytest.skip(f"cannot set a memory limit on {cg}: {exc}")
    return cg, version


@pytest.fixture
def memcg() -> Iterator[tuple[Path, str]]:
    """Request it before `tb`: torn down after tb has killed its processes; kills what is left."""
    cg, version = _create(f"podmedic-oom-test-{os.getpid()}-{os.urandom(3).hex()}")
    try:
        yield cg, version
    finally:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            pids = [int(p) for p in (cg / "cgroup.procs").read_text().split()]
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                cg.rmdir()
                break
            time.sleep(0.1)
        assert not cg.exists(), f"could not remove the test cgroup {cg}"


@pytest.fixture
def hog(tmp_path_factory: pytest.TempPathFactory) -> str:
    if shutil.which("gcc") is None:
        pytest.skip("no gcc to build the test app: apt-get install gcc libc6-dev")
    out = tmp_path_factory.mktemp("hog") / "hog"
    subprocess.run(["gcc", "-static", "-Os", "-o", str(out), str(Path(__file__).with_name("hog.c"))],
                   check=True, capture_output=True, timeout=120)
    out.chmod(0o755)
    out.parent.chmod(0o755)
    return str(out)


def oom_kills(cg: Path, version: str) -> int:
    text = (cg / ("memory.oom_control" if version == "v1" else "memory.events")).read_text()
    return int(next(line.split()[1] for line in text.splitlines() if line.startswith("oom_kill ")))


def test_the_kernel_oom_kills_the_app_and_the_wrapper_survives_to_tell(memcg, tb, hog):
    cg, version = memcg
    logs = tb.work / "logs"
    logs.mkdir()
    logs.chmod(0o1777)
    # 40 MiB at once, then 256 KiB every 50 ms: about 4 s between the threshold (70 %) and the
    # limit, three ticks of the watch at least
    app = tb.program("app.sh", f"exec {hog} 40 256 50")
    proc = tb.supervise(app, {"startsecs": "0", "autorestart": "false", "memwatch-interval": "1",
                              "memwatch-threshold": "70"},
                        exit_bundles=(str(logs), 10), cgroup=cg, PODMEDIC_MEMORY_CGROUP=str(cg))
    _, err = proc.communicate(timeout=150)
    assert oom_kills(cg, version) >= 1, f"the kernel did not OOM-kill in {cg}: {err}"
    # the wrapper survived the kill of its child and exited on its own with the app's status
    assert proc.returncode == 137, err
    state = tb.state()
    assert state["state"] == "EXITED" and state["last_exit_reason"] == "OOMKilled"
    assert "app exited with code 137 (unexpected, OOMKilled)" in err
    summary = json.loads((tb.work / "state" / "app.summary").read_text())
    assert summary["last_exit_reason"] == "OOMKilled" and summary["clean"] is True
    assert "last exit 137 OOMKilled" in tb.pmctl("status").stdout
    # the snapshot came before the kill, the bundle after it, and the bundle holds the snapshot
    assert err.index("pre-mortem snapshot in") < err.index("the kernel's OOM killer killed the app")
    [bundle] = [p for p in (logs / "forensics").iterdir() if "-exit-" in p.name]
    assert bundle.name.endswith("-app-exit-oomkilled"), bundle.name
    info = json.loads((bundle / "summary.json").read_text())
    assert info["exit"]["oom_killed"] is True and info["premortem"] is True
    snapshot = bundle / "premortem"
    rows = (snapshot / "processes.txt").read_text().splitlines()[1:]
    app = next(r for r in rows if r.split()[2] == "hog:")   # the largest process was the app
    assert rows[0] == app and int(app.split()[0]) * 1024 >= LIMIT // 2, rows
    assert "Rss:" in (snapshot / "smaps_rollup.txt").read_text()
    memory = (snapshot / "memory.txt").read_text()
    assert f"=== cgroup {version} memory.stat" in memory
    assert f"limit {LIMIT} bytes, threshold 70%" in (snapshot / "summary.txt").read_text()

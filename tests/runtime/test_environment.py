"""The app, and a user's chained preStop, get the container's environment block exactly as the
runtime would hand it to them unwrapped. busybox sh keeps only names that are shell identifiers
and adds SHLVL and PWD (and a default PATH) for what it starts, while Kubernetes accepts any
printable ASCII but '=' in a name since 1.30 (RelaxedEnvironmentVariableValidation): a Spring
app's `spring.datasource.url` would silently vanish. sigreset --environ-of=PID re-reads the
block the shell was exec'd with from /proc/PID/environ."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.runtime.conftest import wait_for
from webhook.engine.features import forensics
from webhook.toolbox import argv as toolbox

# Names busybox sh drops, one it keeps, and values larger than a page (the block is read whole).
EXOTIC = {"spring.datasource.url": "jdbc:postgresql://db/app", "db-url": "postgres://db", "DB URL": "a b",
          "OK_NAME": "kept", "BIG": "x" * 100_000, "big.too": "y" * 100_000}


def dumper(record: Path, code: int = 0) -> list[str]:
    """A program that appends its own environment block (NUL-separated, as the kernel keeps it)
    to `record`, one line per run, then exits with `code`: a real program, not a shell, which
    would filter the block again."""
    script = (f"import sys; b = open('/proc/self/environ', 'rb').read()\n"
              f"open({str(record)!r}, 'a').write(repr(b) + '\\n'); sys.exit({code})")
    return [sys.executable, "-c", script]


def blocks(record: Path) -> list[list[str]]:
    """The entries of each block dumper() recorded, one list per run (the repr of bytes it wrote)."""
    return [ast.literal_eval(line).decode().split("\0")[:-1] for line in record.read_text().splitlines()]


def expected(env: dict[str, str]) -> list[str]:
    """The block a runtime gives the program for `env`: these entries, in this order, no more."""
    return [f"{k}={v}" for k, v in env.items()]


def test_the_app_gets_the_containers_environment_across_restarts(tb):
    record = tb.work / "environ"
    program, *args = dumper(record)
    proc = tb.supervise(program, {"startsecs": "0", "autorestart": "true", "restart-limit": "0",
                                  "restart-backoff-max": "0"}, args=tuple(args), **EXOTIC)
    wait_for(lambda: record.exists() and len(record.read_text().splitlines()) >= 2)
    proc.terminate()
    proc.communicate(timeout=20)
    first, restarted = blocks(record)[:2]
    assert first == expected(tb.env(**EXOTIC)), [e[:60] for e in first]
    assert restarted == first


def chained_prestop(tb, record: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """Run the collector chained before a user's preStop, dumper(record) exiting 3, as the kubelet
    execs it with the container's environment (EXOTIC); its result and that environment."""
    collector = toolbox.forensics_argv(str(tb.root), name="app", out_dir=None, budget_seconds=2)
    env = tb.env(PODMEDIC_TERMINATION_LOG=str(tb.work / "termination-log"), **EXOTIC)
    done = subprocess.run(forensics.chained(collector, dumper(record, code=3), mount=str(tb.root)), env=env,
                          capture_output=True, text=True, timeout=30)
    return done, env


def test_the_chained_prestop_gets_the_containers_environment_and_its_exit_code(tb):
    record = tb.work / "environ"
    done, env = chained_prestop(tb, record)
    assert done.returncode == 3, done.stderr
    assert blocks(record) == [expected(env)]


def test_the_chained_prestop_still_runs_under_an_older_sigreset(tb):
    """toolbox.image behind the webhook (an upgrade half done): a sigreset without --environ-of
    execs its first argument. The user's hook still runs, as that older release ran it."""
    (tb.root / "bin" / "sigreset").unlink()
    tb.program("old-sigreset", 'exec "$@"')
    (tb.work / "old-sigreset").rename(tb.root / "bin" / "sigreset")
    record = tb.work / "environ"
    done, _ = chained_prestop(tb, record)
    assert done.returncode == 3, done.stderr
    assert "OK_NAME=kept" in blocks(record)[0]


def test_sigreset_finds_the_program_on_the_paths_of_the_environment_it_hands_on(tb):
    image_bin = tb.work / "image-bin"
    image_bin.mkdir()
    record = tb.work / "environ"
    tb.program("image-bin/app", f"{tb.busybox} cat /proc/$$/environ > {record}")  # the block sigreset gave it
    holder = subprocess.Popen([tb.busybox, "sleep", "30"], env={"PATH": str(image_bin), "db-url": "y"})
    try:
        done = subprocess.run([str(tb.root / "bin" / "sigreset"), f"--environ-of={holder.pid}", "app"],
                              env={"PATH": "/nonexistent"}, capture_output=True, text=True, timeout=10)
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 0, done.stderr
    assert record.read_bytes().split(b"\0")[:-1] == [f"PATH={image_bin}".encode(), b"db-url=y"]


def test_sigreset_falls_back_to_its_own_environment_when_the_block_is_unreadable(tb):
    done = subprocess.run([str(tb.root / "bin" / "sigreset"), "--environ-of=0", tb.busybox, "env"],
                          env={"PATH": "/nonexistent", "db-url": "y"}, capture_output=True, text=True, timeout=10)
    assert done.returncode == 0, done.stderr
    assert "db-url=y" in done.stdout.splitlines()
    assert "/proc/0/environ" in done.stderr

"""What the console script does when its standard output cannot take the result: one line on
stderr and exit 1, never a traceback and never exit 0 with the output gone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

EXE = Path(sys.executable).parent / "podmedic"
PROVISION = ["logs", "provision", "team-a", "--root", "/mnt/cephfs/team-a", "--cluster-id", "c", "--fs-name", "f"]
POD = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: c, image: x}]\n"


def run(argv: list[str], redirect: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """Through sh, for the redirections; buffered (no PYTHONUNBUFFERED), as in a pipeline."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    return subprocess.run(["sh", "-c", f'exec "$0" "$@" {redirect}', str(EXE), *argv], input=stdin, text=True,
                          capture_output=True, timeout=60, cwd=ROOT, env=env)


@pytest.mark.parametrize("argv", [["explain", "-f", "-"], ["explain", "-f", "-", "-o", "json"],
                                  ["inject", "-f", "-"], PROVISION], ids=" ".join)
@pytest.mark.parametrize("redirect", [">/dev/full", ">&-"])
def test_output_that_cannot_be_written_is_an_error(argv, redirect):
    done = run(argv, redirect, stdin=POD)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr
    message = "No space left on device" if redirect == ">/dev/full" else "standard output is closed"
    assert done.stderr.startswith(f"podmedic {argv[0]}") and message in done.stderr, done.stderr


def test_reader_gone_is_a_quiet_exit_0():
    """`podmedic logs provision ... | head -0`: the reader closing the pipe is not an error (main's
    BrokenPipeError branch); the buffered rest of stdout must not fail again at interpreter exit."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    proc = subprocess.Popen([str(EXE), *PROVISION], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before the command has written anything: it starts in hundreds of ms
    assert proc.wait(timeout=60) == 0
    assert proc.stderr.read() == ""


@pytest.mark.parametrize("command", ["inject", "explain", "uninject"])
def test_reader_gone_mid_manifests_is_a_quiet_exit_0(tmp_path, command):
    """`podmedic inject -f x | head -c1`: inject caught the BrokenPipeError of a write larger than
    stdout's buffer as an output error (exit 1, '[Errno 32] Broken pipe'), unlike every other command."""
    pods = "".join(f"---\napiVersion: v1\nkind: Pod\nmetadata: {{name: p{i}}}\nspec:\n  containers: [{{name: c, image: x}}]\n"
                   for i in range(200))
    (tmp_path / "pods.yaml").write_text(pods)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    proc = subprocess.Popen([str(EXE), command, "-f", str(tmp_path / "pods.yaml")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    assert proc.wait(timeout=60) == 0
    assert proc.stderr.read() == ""

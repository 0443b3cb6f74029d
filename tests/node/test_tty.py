"""Interactive containers (`stdin: true` and `tty: true`: what `kubectl run -it ... -- sh` makes),
driven on a real node through `kubectl attach -it` on a pseudo-terminal, as a developer's
terminal drives them: with podmedic and the supervisor on they must behave as without podmedic.

Under the wrapper they did not: tini makes its child's process group the terminal's foreground
group, so Ctrl-C sent SIGINT to the wrapper too, which stops the container on SIGINT. An
interactive shell escaped this (its job control takes a process group of its own), but an app
that handles Ctrl-C itself (a REPL, psql, redis-cli) lost its whole session to one Ctrl-C.
(Since b685f90 the app's own group has the terminal, so Ctrl-C would reach only the app; such a
container stays unwrapped for the reasons `interactive-tty` gives, and this test shows it behaves
as without podmedic.)"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import time

import pytest

from tests.node.conftest import BUSYBOX, Cluster, wait_for

pytestmark = pytest.mark.node

# A stand-in for a REPL: Ctrl-C interrupts what it does (its read), the session goes on; `quit` ends it.
REPL = 'trap "echo interrupted" INT; while :; do read -r line; [ "$line" = quit ] && exit; echo "got: $line"; done'


class Terminal:
    """`kubectl attach -it` with a pty as its terminal (raw mode: Ctrl-C goes to the container's
    terminal as the byte 0x03); what it printed is kept in `seen`."""

    def __init__(self, cluster: Cluster, namespace: str, pod: str) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(["kubectl", "-n", namespace, "attach", "-it", pod, "-c", "app"],
                                     stdin=slave, stdout=slave, stderr=slave, env=cluster.env,
                                     start_new_session=True)
        os.close(slave)
        self.seen = b""

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def expect(self, text: bytes, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.seen and self.proc.poll() is None:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if select.select([self.master], [], [], left)[0]:
                try:
                    self.seen += os.read(self.master, 4096)
                except OSError:  # EIO: kubectl ended
                    break
        assert text in self.seen, f"the terminal did not show {text!r}; it showed {self.seen!r}"

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        os.close(self.master)


@pytest.mark.parametrize("supervisor", ["disabled", "enabled"])
@pytest.mark.parametrize("command, interrupted", [(["sh"], b"^C"), (["sh", "-c", REPL], b"interrupted")],
                         ids=["shell", "repl"])
def test_ctrl_c_interrupts_only_the_command_and_the_session_ends_as_without_podmedic(
        deployed: Cluster, supervisor: str, command: list[str], interrupted: bytes) -> None:
    ns = deployed.namespace(inject="enabled", supervisor=supervisor)
    deployed.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "debug", "namespace": ns},
                    "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 5, "containers": [
                        {"name": "app", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent", "command": command,
                         "stdin": True, "tty": True}]}})
    deployed.kubectl("-n", ns, "wait", "--for=condition=Ready", "pod/debug", "--timeout=90s")
    ran = deployed.get("pod", "debug", ns)["spec"]["containers"][0]["command"]
    term = Terminal(deployed, ns, "debug")
    try:
        term.expect(b"If you don't see a command prompt")
        if command == ["sh"]:
            # a prompt of its own first: the shell redraws its line when the attach sets the
            # terminal's size, and a command typed before that was echoed in two pieces
            # ("slee\r/ # slee\x1b[Jp 30": a CI run, without podmedic)
            term.type(b"\n")
            term.expect(b"/ # ")
            time.sleep(1)
        term.type(b"sleep 30\n" if command == ["sh"] else b"first\n")
        term.expect(b"sleep 30" if command == ["sh"] else b"got: first")
        time.sleep(1)
        term.type(b"\x03")
        term.expect(interrupted)
        time.sleep(3)  # the wrapper would have stopped the app by now (SIGTERM at once)
        term.type(b'echo "ali"ve\n')
        term.expect(b"\nalive" if command == ["sh"] else b'got: echo "ali"ve')
        status = deployed.get("pod", "debug", ns)["status"]["containerStatuses"][0]
        assert "running" in status["state"] and status["restartCount"] == 0, status
        term.type(b"exit\n" if command == ["sh"] else b"quit\n")
        phase = wait_for("the pod to finish", lambda: (
            p := deployed.get("pod", "debug", ns)["status"].get("phase")) in ("Succeeded", "Failed") and p,
            timeout=30)
    finally:
        term.close()
    assert phase == "Succeeded"
    assert ran == command  # an interactive session is not a service: not wrapped

"""A container whose command is an init that runs only as PID 1 (busybox init, systemd, s6-overlay
v3's /init, runit) is not wrapped by the supervisor: under the wrapper it is not PID 1 and exits,
so a pod that runs without podmedic would not run with it (shown on a real node in
tests/node/test_pid1_init.py). The skip warns and names the init; the other features still apply."""

from __future__ import annotations

import pytest

from tests import pods
from tests.engine.test_mutations import PREFIX, c0, run
from tests.pods import container
from webhook.engine.decisions import Reason


def supervisor(outcome, name: str = "app"):
    return next(d for d in outcome.report.decisions if d.container == name and d.feature == "supervisor")


@pytest.mark.parametrize("command, args, init", [
    (["/sbin/init"], None, "/sbin/init"),
    (["/usr/sbin/init"], None, "/usr/sbin/init"),
    (["/usr/local/sbin/init"], None, "/usr/local/sbin/init"),  # freeipa-container's entrypoint
    (["/bin/init"], None, "/bin/init"),
    (["init"], None, "init"),                          # a PATH search finds the system's init
    (["/init"], None, "/init"),                        # s6-overlay v3
    (["/lib/systemd/systemd"], ["--log-level=info"], "/lib/systemd/systemd"),
    (["/usr/lib/systemd/systemd"], None, "/usr/lib/systemd/systemd"),
    (["/sbin/runit"], None, "/sbin/runit"),
    (["busybox", "init"], None, "busybox init"),
    (["/bin/busybox"], ["init"], "/bin/busybox init"),  # the applet as the first of args
], ids=lambda value: str(value))
def test_an_init_that_must_be_pid_1_runs_unwrapped_with_a_warning_naming_it(command, args, init):
    mutated, outcome = run(pods.pod(container(command=command, args=args)))
    assert c0(mutated)["command"] == command
    decision = supervisor(outcome)
    assert decision.reason is Reason.PID1_REQUIRED and decision.detail == init
    assert [w for w in outcome.report.warnings(PREFIX) if "supervisor" in w and "PID 1" in w and init in w]
    applied = {d.feature for d in outcome.report.decisions if d.container == "app" and d.reason is Reason.INJECTED}
    assert {"logs", "forensics"} <= applied  # its logs and preStop bundle are still worth having


def test_the_entrypoint_setting_names_the_init_of_a_container_without_command():
    annotations = {PREFIX + "entrypoint": '["/init"]'}
    mutated, outcome = run(pods.pod(container(args=["nginx"]), annotations=annotations))
    assert "command" not in c0(mutated)
    assert supervisor(outcome).reason is Reason.PID1_REQUIRED


@pytest.mark.parametrize("command, args", [
    (["/app/init"], None),             # an app's own script named init: runs fine wrapped
    (["./init"], None),
    (["/opt/init"], None),
    (["/bin/busybox", "httpd", "-f"], None),
    (["busybox"], ["sh"]),
    (["/usr/bin/systemd-tmpfiles"], None),
    (["sh", "-c", "exec /sbin/init"], None),  # what a script runs is not seen
    (["/usr/lib/systemd/systemd", "--user"], None),  # the per-user manager runs fine as any pid
    (["systemd"], ["--log-level=info", "--user"]),    # --user among the args the runtime appends
], ids=lambda value: str(value))
def test_other_commands_are_wrapped(command, args):
    mutated, outcome = run(pods.pod(container(command=command, args=args, ports=[{"containerPort": 1}])))
    assert c0(mutated)["command"][0] == "/podmedic/bin/tini"
    assert supervisor(outcome).reason is Reason.INJECTED

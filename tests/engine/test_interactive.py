"""Interactive containers (`stdin: true` and `tty: true`, what `kubectl run -it` makes) are not
wrapped by the supervisor: a session is not a service. The wrapper would restart a shell whose
`exit` carries a failed command's status (code 1: unexpected) instead of ending the session, and
its log lines would land in the user's terminal. (Ctrl-C no longer stopped the container once the
app got a foreground process group of its own, b685f90; tests/node/test_tty.py shows the session
unwrapped on a real node.) The other features still apply."""

from __future__ import annotations

from tests import pods
from tests.engine.test_mutations import PREFIX, c0, run
from tests.pods import container
from webhook.engine.decisions import Reason


def supervisor(outcome, name: str = "app"):
    return next(d for d in outcome.report.decisions if d.container == name and d.feature == "supervisor")


def test_an_interactive_container_runs_its_command_unwrapped_without_a_warning():
    mutated, outcome = run(pods.pod(container(command=["sh"], stdin=True, tty=True), restartPolicy="Never"))
    assert c0(mutated)["command"] == ["sh"]
    assert supervisor(outcome).reason is Reason.INTERACTIVE_TTY
    assert not [w for w in outcome.report.warnings(PREFIX) if "supervisor" in w or "interactive" in w]
    applied = {d.feature for d in outcome.report.decisions if d.container == "app" and d.reason is Reason.INJECTED}
    assert {"logs", "forensics"} <= applied  # a session's logs and preStop bundle are still worth having


def test_a_terminal_without_stdin_or_stdin_without_a_terminal_is_still_wrapped():
    """`tty: true` alone (a service that wants a terminal for its output) gets no keyboard, so no
    Ctrl-C; `stdin: true` alone is a pipe (the wrapper hands it to the app)."""
    for extra in ({"tty": True}, {"stdin": True}, {"stdin": True, "tty": False}):
        mutated, outcome = run(pods.pod(container(command=["/svc"], ports=[{"containerPort": 1}], **extra)))
        assert c0(mutated)["command"][0] == "/podmedic/bin/tini", extra
        assert supervisor(outcome).reason is Reason.INJECTED


def test_only_the_interactive_container_of_a_pod_is_left_unwrapped():
    mutated, outcome = run(pods.pod(container("svc", command=["/svc"], ports=[{"containerPort": 1}]),
                                    container("debug", command=["sh"], stdin=True, tty=True)))
    svc, debug = mutated["spec"]["containers"]
    assert svc["command"][0] == "/podmedic/bin/tini" and debug["command"] == ["sh"]
    assert supervisor(outcome, "debug").reason is Reason.INTERACTIVE_TTY

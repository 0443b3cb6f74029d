"""The crash-loop and memory-watch settings of the supervisor (restart-limit, restart-window,
restart-backoff-max, memwatch-interval, memwatch-threshold):
annotations like every other supervisor option -- global defaults, namespace, pod and container
precedence, flags on the wrapper's argv -- and an invalid value skips the supervisor with a
warning naming the key and the value."""

from __future__ import annotations

import pytest

from tests import pods
from tests.engine.test_mutations import PREFIX, c0, reasons, run
from tests.pods import container
from webhook.toolbox import argv as toolbox

CRASH_LOOP_KEYS = ("restart-limit", "restart-window", "restart-backoff-max")
MEMWATCH_KEYS = ("memwatch-interval", "memwatch-threshold")


def flags(command: list[str]) -> dict[str, str]:
    wrapper = command[:command.index("--", 3)]  # tini -s -- sigreset busybox sh supervise ... --
    return dict(f[2:].split("=", 1) for f in wrapper if f.startswith("--") and "=" in f)


def test_defaults_are_on_the_wrappers_argv():
    mutated, _ = run(pods.pod(container(command=["/app"], ports=[{"containerPort": 80}])))
    got = flags(c0(mutated)["command"])
    assert {k: got[k] for k in CRASH_LOOP_KEYS} == {"restart-limit": "5", "restart-window": "300",
                                                     "restart-backoff-max": "30"}
    assert {k: got[k] for k in MEMWATCH_KEYS} == {"memwatch-interval": "2", "memwatch-threshold": "90"}
    assert set(CRASH_LOOP_KEYS + MEMWATCH_KEYS) <= set(toolbox.SUPERVISOR_OPTIONS)


def test_memwatch_values_follow_precedence():
    original = pods.pod(container("a", command=["/a"], ports=[{"containerPort": 1}]),
                        container("b", command=["/b"], ports=[{"containerPort": 2}]),
                        annotations={PREFIX + "memwatch-threshold": "80", PREFIX + "memwatch-threshold.b": "0",
                                     PREFIX + "memwatch-interval.a": "5"})
    mutated, _ = run(original, {PREFIX + "inject": "enabled", PREFIX + "supervisor": "enabled",
                                PREFIX + "memwatch-interval": "3"})
    a, b = (flags(c["command"]) for c in mutated["spec"]["containers"])
    assert (a["memwatch-interval"], a["memwatch-threshold"]) == ("5", "80")
    assert (b["memwatch-interval"], b["memwatch-threshold"]) == ("3", "0")


def test_namespace_pod_and_container_values():
    annotations = {PREFIX + "inject": "enabled", PREFIX + "supervisor": "enabled", PREFIX + "restart-limit": "7",
                   PREFIX + "restart-window": "120"}
    original = pods.pod(container("a", command=["/a"], ports=[{"containerPort": 1}]),
                        container("b", command=["/b"], ports=[{"containerPort": 2}]),
                        annotations={PREFIX + "restart-window": "600", PREFIX + "restart-backoff-max.b": "0"})
    mutated, _ = run(original, annotations)
    a, b = (flags(c["command"]) for c in mutated["spec"]["containers"])
    assert (a["restart-limit"], a["restart-window"], a["restart-backoff-max"]) == ("7", "600", "30")
    assert (b["restart-limit"], b["restart-window"], b["restart-backoff-max"]) == ("7", "600", "0")


@pytest.mark.parametrize("key,value,expected", [
    ("restart-limit", "-1", "expected a whole number from 0 to 1000"),
    ("restart-limit", "1001", "expected a whole number from 0 to 1000"),
    ("restart-limit", "five", "expected a whole number from 0 to 1000"),
    ("restart-window", "0", "expected a whole number from 1 to 86400"),
    ("restart-window", "5m", "expected a whole number from 1 to 86400"),
    ("restart-backoff-max", "3601", "expected a whole number from 0 to 3600"),
    ("restart-backoff-max", "1.5", "expected a whole number from 0 to 3600"),
    ("memwatch-interval", "0", "expected a whole number from 1 to 3600"),
    ("memwatch-interval", "2s", "expected a whole number from 1 to 3600"),
    ("memwatch-threshold", "101", "expected a whole number from 0 to 100"),
    ("memwatch-threshold", "90%", "expected a whole number from 0 to 100"),
])
def test_an_invalid_value_skips_the_supervisor_with_a_warning_naming_key_and_value(key, value, expected):
    original = pods.pod(container(command=["/app"], ports=[{"containerPort": 80}]),
                        annotations={PREFIX + key: value})
    mutated, outcome = run(original)
    assert reasons(outcome, "app")["supervisor"] == "invalid-value"
    assert reasons(outcome, "app")["probes"] == "injected"  # only the feature that reads it is skipped
    assert c0(mutated)["command"] == ["/app"]
    warning = f"{PREFIX}{key}={value!r} is invalid: {expected}"
    assert any(warning in w and w.startswith("podmedic: container app: supervisor:")
               for w in outcome.report.warnings(PREFIX)), outcome.report.warnings(PREFIX)


def test_exit_bundles_go_to_the_log_directory_when_logs_and_forensics_are_on():
    original = pods.pod(container("a", command=["/a"], ports=[{"containerPort": 1}]),
                        container("b", command=["/b"], ports=[{"containerPort": 2}]),
                        container("c", command=["/c"], ports=[{"containerPort": 3}]),
                        annotations={PREFIX + "logs.b": "disabled", PREFIX + "forensics.c": "disabled",
                                     PREFIX + "log-path.a": "/var/log/a", PREFIX + "forensics-budget-seconds": "7"})
    mutated, _ = run(original)
    a, b, c = (flags(x["command"]) for x in mutated["spec"]["containers"])
    assert (a["forensics-out"], a["forensics-budget"]) == ("/var/log/a", "7")
    assert "forensics-out" not in b and "forensics-out" not in c  # no log directory; forensics off


def test_the_decision_says_what_the_wrapper_keeps_of_a_memory_kill():
    original = pods.pod(container("a", command=["/a"], ports=[{"containerPort": 1}]),
                        container("b", command=["/b"], ports=[{"containerPort": 2}]),
                        container("c", command=["/c"], ports=[{"containerPort": 3}]),
                        annotations={PREFIX + "memwatch-threshold.b": "0", PREFIX + "logs.c": "disabled"})
    _, outcome = run(original)
    detail = {d.container: d.detail for d in outcome.report.decisions if d.feature == "supervisor"}
    assert detail["a"] == "wrapping command; memwatch 90%; exit bundles"
    assert detail["b"] == "wrapping command; no memwatch; exit bundles"
    assert detail["c"] == "wrapping command; memwatch 90%; no exit bundles"


@pytest.mark.parametrize("key,value,rendered", [
    ("startsecs", "08", "8"),          # busybox arithmetic: "08" is bad octal and kills the wrapper
    ("startsecs", "010", "10"),        # ... and "010" would be 8
    ("stopwaitsecs", "08", "8"),
    ("restart-window", "09", "9"),
    ("restart-backoff-max", "08", "8"),
    ("exitcodes", "0, 2", "0,2"),      # the wrapper matches exit codes as text
    ("exitcodes", "00,002", "0,2"),
    ("exitcodes", "0,2", "0,2"),       # canonical values go out as written
    ("startsecs", "10", "10"),
])
def test_the_wrapper_gets_each_value_in_its_canonical_form(key, value, rendered):
    original = pods.pod(container(command=["/app"], ports=[{"containerPort": 80}]),
                        annotations={PREFIX + key: value})
    mutated, outcome = run(original)
    assert reasons(outcome, "app")["supervisor"] == "injected"
    assert flags(c0(mutated)["command"])[key] == rendered


@pytest.mark.parametrize("grace,waits", [(40, "40"), (None, "30"), (0, "2"), (1, "2"), (86400, "86400"),
                                         (86401, "86400"), (2**63 - 1, "86400")])
def test_unset_stopwaitsecs_waits_the_pods_grace_period(grace, waits):
    """The kubelet gives the app terminationGracePeriodSeconds after the stop signal (at least 2 s);
    a wrapper that killed it sooner cut its shutdown short."""
    spec = {} if grace is None else {"terminationGracePeriodSeconds": grace}
    a, b = (container(name, command=["/" + name], ports=[{"containerPort": port}]) for name, port in (("a", 1), ("b", 2)))
    mutated, _ = run(pods.pod(a, b, **spec))
    assert [flags(c["command"])["stopwaitsecs"] for c in mutated["spec"]["containers"]] == [waits, waits]


def test_stopwaitsecs_set_anywhere_is_the_wait_whatever_the_grace_period():
    original = pods.pod(container("a", command=["/a"], ports=[{"containerPort": 1}]),
                        container("b", command=["/b"], ports=[{"containerPort": 2}]),
                        container("c", command=["/c"], ports=[{"containerPort": 3}]),
                        annotations={PREFIX + "stopwaitsecs.b": "5"}, terminationGracePeriodSeconds=60)
    mutated, _ = run(original)
    assert [flags(c["command"])["stopwaitsecs"] for c in mutated["spec"]["containers"]] == ["60", "5", "60"]
    mutated, _ = run(original, {PREFIX + "inject": "enabled", PREFIX + "supervisor": "enabled",
                                PREFIX + "stopwaitsecs": "20"})
    assert [flags(c["command"])["stopwaitsecs"] for c in mutated["spec"]["containers"]] == ["20", "5", "20"]


def test_each_pod_waits_its_own_grace_period_though_its_namespace_shares_the_wrappers_flags():
    """The flags are kept across reviews by settings (per_pod); the grace period is the pod's."""
    waits = []
    for grace in (45, 90, 45):
        mutated, _ = run(pods.pod(container(command=["/app"], ports=[{"containerPort": 80}]),
                                  terminationGracePeriodSeconds=grace))
        waits.append(flags(c0(mutated)["command"])["stopwaitsecs"])
    assert waits == ["45", "90", "45"]


def _stopping(name: str, port: int, signal: str | None = None) -> dict:
    lifecycle = {"lifecycle": {"stopSignal": signal}} if signal else {}
    return container(name, command=["/" + name], ports=[{"containerPort": port}], **lifecycle)


def test_a_containers_own_stop_signal_is_the_wrappers_stopsignal_and_sigterm_keeps_the_settings_one():
    """The kubelet sends lifecycle.stopSignal to PID 1 instead of SIGTERM: forwarded as a plain
    signal, an app that exits on it was started again in the middle of its pod's shutdown. Where
    the API server dropped the field after the webhook saw it (its gate off: 1.36's default), the
    runtime sends SIGTERM (or the image's STOPSIGNAL), and the app must get the configured signal
    for it: --term-stopsignal keeps the settings'.
    Each container its own: the flags the namespace shares (per_pod) keep TERM for the others."""
    original = pods.pod(_stopping("a", 1, "SIGQUIT"), _stopping("b", 2), _stopping("c", 3, "SIGUSR1"),
                        _stopping("d", 4, "SIGTERM"), os={"name": "linux"})
    mutated, outcome = run(original)
    got = [flags(c["command"]) for c in mutated["spec"]["containers"]]
    assert [(f["stopsignal"], f.get("term-stopsignal")) for f in got] == [
        ("QUIT", "TERM"), ("TERM", None), ("USR1", "TERM"), ("TERM", None)]
    assert [sum(f.startswith("--stopsignal=") for f in c["command"]) for c in mutated["spec"]["containers"]] == [1] * 4
    assert {reasons(outcome, name)["supervisor"] for name in "abcd"} == {"injected"}


def test_a_stopsignal_annotation_of_the_pod_author_is_kept_and_a_namespace_one_gives_way():
    original = pods.pod(_stopping("a", 1, "SIGQUIT"), _stopping("b", 2, "SIGQUIT"), os={"name": "linux"},
                        annotations={PREFIX + "stopsignal.b": "INT"})
    mutated, _ = run(original, {PREFIX + "inject": "enabled", PREFIX + "supervisor": "enabled",
                                PREFIX + "stopsignal": "WINCH"})
    got = [flags(c["command"]) for c in mutated["spec"]["containers"]]
    assert [(f["stopsignal"], f.get("term-stopsignal"), f.get("kubelet-stopsignal")) for f in got] == [
        ("QUIT", "WINCH", None), ("INT", None, "QUIT")]


@pytest.mark.parametrize("own, authored, kubelet", [
    ("SIGUSR1", "QUIT", "USR1"), ("SIGQUIT", "QUIT", None), ("SIGTERM", "QUIT", None), ("SIGINT", "QUIT", None),
    ("SIGKILL", "QUIT", None), ("SIGWINCH", "KILL", "WINCH")])
def test_the_containers_own_stop_signal_beside_the_authors_stopsignal_is_a_stop(own, authored, kubelet):
    """The author's stopsignal is what the app gets; the container's own signal, which the kubelet
    sends instead of SIGTERM, must stop the container too (--kubelet-stopsignal) unless the
    wrapper stops on it already (the same signal, TERM, INT) or never sees it (KILL)."""
    mutated, outcome = run(pods.pod(_stopping("app", 80, own), os={"name": "linux"},
                                    annotations={PREFIX + "stopsignal": authored}))
    got = flags(c0(mutated)["command"])
    assert (got["stopsignal"], got.get("term-stopsignal"), got.get("kubelet-stopsignal")) == (authored, None, kubelet)
    assert reasons(outcome, "app")["supervisor"] == "injected"


@pytest.mark.parametrize("authored", [None, "QUIT"])
@pytest.mark.parametrize("signal", ["SIGPWR", "SIGRTMIN+3", "SIGABRT"])
def test_a_stop_signal_the_wrapper_cannot_stop_on_skips_the_supervisor_with_a_warning(signal, authored):
    """Also beside the author's stopsignal: the wrapper forwarded it, and an app that exits on it
    was started again in the middle of its pod's shutdown."""
    annotations = {PREFIX + "stopsignal": authored} if authored else {}
    mutated, outcome = run(pods.pod(_stopping("app", 80, signal), os={"name": "linux"}, annotations=annotations))
    assert reasons(outcome, "app")["supervisor"] == "stop-signal-unsupported"
    assert c0(mutated)["command"] == ["/app"]
    assert any(signal in w and w.startswith("podmedic: container app: supervisor:")
               for w in outcome.report.warnings(PREFIX)), outcome.report.warnings(PREFIX)

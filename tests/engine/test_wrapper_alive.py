"""The wrapper's `pmctl alive` liveness is probed at most once a minute, with a 10 s timeout: it
tells the kubelet nothing a container exit does not (the wrapper is tini's child), yet each exec
probe costs the node ~30 ms of CPU, and a 1 s timeout under CPU pressure can kill a healthy held
container. `pmctl ready` and the app's checks keep `probe-period-seconds`: they carry the signal.
`pmctl ready` gets at least a 10 s timeout too (it reads a state file; under a 50m limit with a
busy app it took 1.3-3.1 s), the app's checks keep `probe-timeout-seconds`."""

from __future__ import annotations

from typing import Any

from tests import pods
from tests.engine.test_mutations import ALL_ON, PREFIX, c0, run
from tests.pods import container
from webhook.engine import context
from webhook.engine.keys import FeatureName

EXIT = {**ALL_ON, PREFIX + "on-fatal": "exit"}


def app(namespace: dict[str, str], ports: list[dict[str, Any]] | None = None,
        annotations: dict[str, str] | None = None) -> dict[str, Any]:
    original = pods.pod(container(command=["/app"], **({"ports": ports} if ports else {})), annotations=annotations)
    return c0(run(original, namespace)[0])


def probes(container_: dict[str, Any]) -> dict[str, Any]:
    """The injected probes: {kind: (handler, periodSeconds, timeoutSeconds)}."""
    return {kind: (next(iter(probe)), probe["periodSeconds"], probe["timeoutSeconds"])
            for kind in ("readiness", "liveness") if (probe := container_.get(f"{kind}Probe"))}


def alive(container_: dict[str, Any]) -> bool:
    return "alive" in container_["livenessProbe"].get("exec", {}).get("command", [])


def test_on_fatal_hold_liveness_is_probed_once_a_minute_readiness_as_configured():
    held = app(ALL_ON, [{"containerPort": 8080}])
    assert alive(held)
    assert probes(held) == {"readiness": ("tcpSocket", 10, 1), "liveness": ("exec", 60, 10)}


def test_on_fatal_exit_without_a_port_alive_liveness_and_ready_readiness():
    portless = app(EXIT)
    assert alive(portless) and "ready" in portless["readinessProbe"]["exec"]["command"]
    assert probes(portless) == {"readiness": ("exec", 10, 10), "liveness": ("exec", 60, 10)}


def test_a_larger_configured_period_and_timeout_win():
    slow = app({**ALL_ON, PREFIX + "probe-period-seconds": "120", PREFIX + "probe-timeout-seconds": "15"})
    assert probes(slow) == {"readiness": ("exec", 120, 15), "liveness": ("exec", 120, 15)}


def test_a_per_container_period_above_a_minute_wins():
    own = app(ALL_ON, annotations={PREFIX + "probe-period-seconds.app": "90"})
    assert probes(own) == {"readiness": ("exec", 90, 10), "liveness": ("exec", 90, 10)}


def test_a_liveness_that_checks_the_app_keeps_the_configured_timings():
    checks_app = app(EXIT, [{"containerPort": 8080}])
    assert not alive(checks_app)
    assert probes(checks_app) == {"readiness": ("tcpSocket", 10, 1), "liveness": ("tcpSocket", 10, 1)}


def test_a_wrapper_rolled_back_leaves_no_alive_liveness(monkeypatch):
    """A supervisor mutate that raises is rolled back: the container is not wrapped, so its
    liveness must ask the app. `pmctl alive` without a wrapper fails for ever, and the kubelet
    would restart the container every few minutes."""
    record = context.PodContext.record

    def failing(self: context.PodContext, target: Any, feature: FeatureName, what: Any) -> None:
        if feature == FeatureName.SUPERVISOR:
            raise RuntimeError("bug")
        record(self, target, feature, what)

    monkeypatch.setattr(context.PodContext, "record", failing)
    unwrapped = app(ALL_ON, [{"containerPort": 8080}])
    assert unwrapped["command"] == ["/app"] and not alive(unwrapped)
    assert probes(unwrapped) == {"readiness": ("tcpSocket", 10, 1), "liveness": ("tcpSocket", 10, 1)}


def test_a_configured_readiness_command_keeps_the_configured_timeout():
    """Only the wrapper's `pmctl ready` gets the 10 s floor: a readiness-command checks the app."""
    own = app({**ALL_ON, PREFIX + "readiness-command": "/check"})
    assert probes(own)["readiness"] == ("exec", 10, 1)


def test_a_startup_probe_asking_the_wrapper_gets_its_timeout_too():
    """startup-timeout puts a startupProbe, liveness's handler, in front of `pmctl alive`: as an
    exec probe under the container's CPU quota it takes seconds too, and 60 timeouts in a row
    (5m / 5 s) would have the kubelet kill a healthy container."""
    bounded = app({**ALL_ON, PREFIX + "startup-timeout": "5m"})
    startup = bounded["startupProbe"]
    assert "alive" in startup["exec"]["command"]
    assert (startup["periodSeconds"], startup["timeoutSeconds"], startup["failureThreshold"]) == (5, 10, 60)
    asks_app = app({**ALL_ON, PREFIX + "on-fatal": "exit", PREFIX + "startup-timeout": "5m"}, [{"containerPort": 8080}])
    assert (asks_app["startupProbe"]["tcpSocket"], asks_app["startupProbe"]["timeoutSeconds"]) == ({"port": 8080}, 1)

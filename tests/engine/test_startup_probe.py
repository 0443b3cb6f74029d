"""A liveness probe podmedic adds that checks the app comes with a startupProbe (same handler), so
liveness only begins once the app has answered once. Without it, an app that opens its port
after more than failureThreshold x period (~30 s: a JVM, a database replaying its log) ran fine
without podmedic and was killed by podmedic's liveness, again and again (CrashLoopBackOff)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests import pods
from tests.engine.test_mutations import ALL_ON, PREFIX, c0, run
from tests.pods import container

PROBES_ONLY = {PREFIX + "inject": "enabled"}  # default probes, supervisor off (the defaults)
UNBOUNDED = 2147483647  # the API's largest failureThreshold (int32): no bound on start-up


def injected(annotations: dict[str, str] | None = None, namespace: dict[str, str] | None = None,
             **extra: Any) -> dict[str, Any]:
    """The container `app` (port 8080) after injection."""
    original = pods.pod(container(command=["/app"], ports=[{"containerPort": 8080}], **extra),
                        annotations=annotations)
    mutated, _ = run(original, dict(namespace if namespace is not None else PROBES_ONLY))
    app = c0(mutated)
    app["marker"] = json.loads(mutated["metadata"]["annotations"][PREFIX + "status"])["containers"]["app"]
    return app


@pytest.mark.parametrize("annotations, check", [
    ({}, {"tcpSocket": {"port": 8080}}),
    ({PREFIX + "liveness-path": "/livez"}, {"httpGet": {"path": "/livez", "port": 8080}}),
    ({PREFIX + "liveness-command": '["/bin/check", "--live"]'}, {"exec": {"command": ["/bin/check", "--live"]}}),
])
def test_a_liveness_that_checks_the_app_comes_with_an_unbounded_startup_probe(annotations, check):
    app = injected(annotations)
    assert {k: v for k, v in app["livenessProbe"].items() if k in check} == check
    assert app["startupProbe"] == {**check, "periodSeconds": 5, "timeoutSeconds": 1,
                                   "failureThreshold": UNBOUNDED, "successThreshold": 1}
    assert "startupProbe" in app["marker"]["probes"]  # `podmedic uninject` removes it too


def test_startup_timeout_still_bounds_the_start_up():
    app = injected({PREFIX + "startup-timeout": "3m"})
    assert app["startupProbe"]["failureThreshold"] == 36  # ceil(180 s / 5 s)


def test_the_wrappers_liveness_gets_no_startup_probe():
    app = injected(namespace=ALL_ON)  # supervisor on, on-fatal: hold
    assert "pmctl" in " ".join(app["livenessProbe"]["exec"]["command"])
    assert "startupProbe" not in app


def test_a_container_with_its_own_startup_probe_keeps_it():
    own = {"httpGet": {"path": "/started", "port": 8080}, "failureThreshold": 60, "periodSeconds": 10}
    app = injected(startupProbe=own)
    assert app["startupProbe"] == own and "livenessProbe" in app
    assert "startupProbe" not in app["marker"]["probes"]


def test_a_native_sidecar_gets_no_unbounded_startup_probe():
    """The containers after a native sidecar start only once its startupProbe succeeds: an
    unbounded one could hold the app back forever (a sidecar whose check waits for the app)."""
    sidecar = container("proxy", command=["/proxy"], ports=[{"containerPort": 9090}], restartPolicy="Always")
    original = pods.pod(container(command=["/app"], ports=[{"containerPort": 8080}]), initContainers=[sidecar])
    for annotations, startup in (({}, None), ({PREFIX + "startup-timeout": "3m"}, 36)):
        mutated, _ = run(original, {**PROBES_ONLY, **annotations})
        proxy = mutated["spec"]["initContainers"][-1]
        assert proxy["name"] == "proxy" and proxy["livenessProbe"]["tcpSocket"] == {"port": 9090}
        assert proxy.get("startupProbe", {}).get("failureThreshold") == startup  # a budget the admin set: as before
        assert "startupProbe" in c0(mutated)


def test_a_users_liveness_gets_no_startup_probe_from_this_rule():
    own = {"httpGet": {"path": "/ok", "port": 8080}, "periodSeconds": 2}
    app = injected(livenessProbe=own)
    assert app["livenessProbe"] == own and "readinessProbe" in app
    assert "startupProbe" not in app


def test_a_users_liveness_with_startup_timeout_gets_the_budgeted_startup_probe_as_before():
    own = {"httpGet": {"path": "/ok", "port": 8080}, "periodSeconds": 2}
    app = injected({PREFIX + "startup-timeout": "3m"}, livenessProbe=own)
    assert app["livenessProbe"] == own
    assert app["startupProbe"]["tcpSocket"] == {"port": 8080} and app["startupProbe"]["failureThreshold"] == 36

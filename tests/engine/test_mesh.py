"""A pod a service mesh injected before podmedic (its webhook configuration's name sorts first, as
`istio-sidecar-injector` and `linkerd-proxy-injector-webhook-config` do before `podmedic`).

Istio rewrites the httpGet, tcpSocket and grpc probes it sees at injection to its agent (port
15020, `/app-health/<container>/...`): under mutual TLS the kubelet's httpGet/grpc probe fails
(it has no mesh certificate) and a tcpSocket probe always passes (the sidecar accepts every
connection). Network probes podmedic adds after that are never rewritten, so they are skipped
(`mesh-probes`, with a warning saying how to get them); exec probes and the other features go in.
Linkerd's proxy lets plaintext httpGet probes through but accepts every connection too, so only
tcpSocket probes are skipped there. The mesh's own proxy is never touched, in either mesh."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests import pods
from tests.engine.test_mutations import ALL_ON, PREFIX, run
from tests.pods import container
from webhook.engine.decisions import Reason

PROBES_ONLY = {PREFIX + "inject": "enabled"}
ISTIO_STATUS = json.dumps({"initContainers": ["istio-init"], "containers": ["istio-proxy"],
                           "volumes": ["istio-envoy", "istio-data"], "imagePullSecrets": None, "revision": "default"})


def istio_proxy(**extra: Any) -> dict[str, Any]:
    """istio-proxy as Istio's injection template leaves it: no `command` (the image's entrypoint),
    its own readiness and startup probes on 15021, and the app's rewritten probes in its env."""
    return container("istio-proxy", args=["proxy", "sidecar", "--domain", "$(POD_NAMESPACE).svc.cluster.local"],
                     ports=[{"containerPort": 15090, "name": "http-envoy-prom", "protocol": "TCP"}],
                     readinessProbe={"httpGet": {"path": "/healthz/ready", "port": 15021}, "periodSeconds": 15},
                     startupProbe={"httpGet": {"path": "/healthz/ready", "port": 15021}, "failureThreshold": 600},
                     env=[{"name": "ISTIO_KUBE_APP_PROBERS", "value": "{}"}], **extra)


ISTIO_INIT = container("istio-init", args=["istio-iptables", "-p", "15001"])
APP = container(command=["/app"], ports=[{"containerPort": 8080}])


def istio_pod(*, native: bool = False, annotated: bool = True, annotations: dict[str, str] | None = None,
              app: dict[str, Any] = APP) -> dict[str, Any]:
    """A pod as Istio's injector leaves it: classic (istio-proxy beside the app) or native
    sidecar (istio-proxy an init container with restartPolicy Always)."""
    notes = {**({"sidecar.istio.io/status": ISTIO_STATUS} if annotated else {}), **(annotations or {})}
    if native:
        return pods.pod(copy.deepcopy(app), annotations=notes,
                        initContainers=[ISTIO_INIT, istio_proxy(restartPolicy="Always")])
    return pods.pod(copy.deepcopy(app), istio_proxy(), annotations=notes, initContainers=[ISTIO_INIT])


def linkerd_pod() -> dict[str, Any]:
    proxy = container("linkerd-proxy", ports=[{"containerPort": 4143, "name": "linkerd-proxy"},
                                              {"containerPort": 4191, "name": "linkerd-admin"}],
                      readinessProbe={"httpGet": {"path": "/ready", "port": 4191}},
                      livenessProbe={"httpGet": {"path": "/live", "port": 4191}})
    return pods.pod(proxy, copy.deepcopy(APP), annotations={"linkerd.io/proxy-version": "edge-25.1.1"},
                    initContainers=[container("linkerd-init", args=["--incoming-proxy-port", "4143"])])


def decisions(outcome: Any, container_name: str, feature: str) -> list[tuple[str, str]]:
    return [(d.reason.code, d.detail) for d in outcome.report.decisions
            if d.container == container_name and d.feature == feature]


def by_name(pod: dict[str, Any], kind: str, name: str) -> dict[str, Any]:
    return next(c for c in pod["spec"].get(kind, []) if c["name"] == name)


@pytest.mark.parametrize("native", [False, True], ids=["classic", "native-sidecar"])
def test_istio_injected_first_no_network_probes_for_the_app_and_the_proxy_untouched(native):
    original = istio_pod(native=native)
    mutated, outcome = run(original, PROBES_ONLY)
    app = by_name(mutated, "containers", "app")
    assert not {"readinessProbe", "livenessProbe", "startupProbe"} & set(app)
    assert decisions(outcome, "app", "probes") == [
        ("mesh-probes", "istio: readiness:tcpSocket, liveness:tcpSocket, startup:tcpSocket")]
    assert decisions(outcome, "app", "logs")[0][0] == "injected"  # the other features still go in
    kind = "initContainers" if native else "containers"
    assert by_name(mutated, kind, "istio-proxy") == by_name(original, kind, "istio-proxy")
    assert by_name(mutated, "initContainers", "istio-init") == ISTIO_INIT
    assert [(d.feature, d.reason) for d in outcome.report.decisions if d.container == "istio-proxy"] == [
        ("pod", Reason.MESH_PROXY)]
    warning = next(w for w in outcome.report.warnings(PREFIX) if "mesh" in w)
    assert warning.startswith("podmedic: container app: probes: ")
    assert "before Istio's injector" in warning and PREFIX + "readiness-command" in warning


@pytest.mark.parametrize("annotated, proxied", [(True, False), (False, True)], ids=["annotation", "container"])
def test_either_sign_of_istio_tells(annotated, proxied):
    pod = istio_pod(annotated=annotated)
    if not proxied:
        pod["spec"]["containers"] = pod["spec"]["containers"][:1]
    _, outcome = run(pod, PROBES_ONLY)
    assert decisions(outcome, "app", "probes")[0][0] == "mesh-probes"


def test_exec_probes_still_go_in_and_only_the_network_ones_are_skipped():
    mutated, outcome = run(istio_pod(), ALL_ON)  # supervisor on, on-fatal hold: liveness is `pmctl alive`
    app = by_name(mutated, "containers", "app")
    assert "pmctl" in " ".join(app["livenessProbe"]["exec"]["command"])
    assert "readinessProbe" not in app and "startupProbe" not in app
    assert decisions(outcome, "app", "probes") == [("mesh-probes", "istio: readiness:tcpSocket"),
                                                   ("injected", "liveness:exec")]
    marker = json.loads(mutated["metadata"]["annotations"][PREFIX + "status"])
    assert marker["containers"]["app"]["probes"] == ["livenessProbe"]  # uninject removes only what went in
    assert "istio-proxy" not in marker["containers"]  # not wrapped, no log mount, no preStop


def test_configured_exec_probes_are_all_added():
    notes = {PREFIX + "readiness-command": '["/bin/ready"]', PREFIX + "liveness-command": '["/bin/live"]'}
    mutated, outcome = run(istio_pod(annotations=notes), PROBES_ONLY)
    app = by_name(mutated, "containers", "app")
    assert app["readinessProbe"]["exec"]["command"] == ["/bin/ready"]
    assert app["startupProbe"]["exec"]["command"] == ["/bin/live"]
    assert [code for code, _ in decisions(outcome, "app", "probes")] == ["injected"]


def test_linkerd_accepts_every_connection_so_no_tcp_probe_and_its_proxy_nothing():
    """Linkerd's proxy accepts every inbound connection (linkerd/linkerd2#7777): a tcpSocket probe
    would always pass, so it is skipped; its proxy gets nothing."""
    original = linkerd_pod()
    mutated, outcome = run(original, ALL_ON)
    app = by_name(mutated, "containers", "app")
    assert "readinessProbe" not in app and "pmctl" in " ".join(app["livenessProbe"]["exec"]["command"])
    assert decisions(outcome, "app", "probes") == [("mesh-probes", "linkerd: readiness:tcpSocket"),
                                                   ("injected", "liveness:exec")]
    assert by_name(mutated, "containers", "linkerd-proxy") == by_name(original, "containers", "linkerd-proxy")
    assert [(d.feature, d.reason) for d in outcome.report.decisions if d.container == "linkerd-proxy"] == [
        ("pod", Reason.MESH_PROXY)]


def test_linkerd_lets_plaintext_http_probes_through_so_the_app_gets_them():
    notes = {PREFIX + "readiness-path": "/ready", PREFIX + "liveness-path": "/live"}
    pod = linkerd_pod()
    pod["metadata"]["annotations"].update(notes)
    mutated, outcome = run(pod, PROBES_ONLY)
    app = by_name(mutated, "containers", "app")
    assert app["readinessProbe"]["httpGet"] == {"path": "/ready", "port": 8080}
    assert app["livenessProbe"]["httpGet"]["path"] == "/live"
    assert [code for code, _ in decisions(outcome, "app", "probes")] == ["injected"]


def test_a_pod_podmedic_sees_before_the_mesh_is_injected_as_ever():
    mutated, outcome = run(pods.pod(copy.deepcopy(APP)), PROBES_ONLY)
    assert by_name(mutated, "containers", "app")["readinessProbe"]["tcpSocket"] == {"port": 8080}
    assert not any(d.reason in (Reason.MESH_PROBES, Reason.MESH_PROXY) for d in outcome.report.decisions)

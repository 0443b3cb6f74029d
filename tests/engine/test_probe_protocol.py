"""With `readiness-path` / `liveness-path` set, podmedic's httpGet probe was always plain HTTP: on a
port that serves TLS (named `https`) the kubelet got a 400 ("client sent an HTTP request to an
HTTPS server") and the container never became Ready (a liveness probe restarted it forever); on
a gRPC port the GET failed too. The port's declared name says its protocol (Istio's convention:
`<protocol>` or `<protocol>-<suffix>`): https gets `scheme: HTTPS`, the other known non-HTTP
protocols a tcpSocket probe, and every other name the plain httpGet as before."""

from __future__ import annotations

from typing import Any

import pytest

from tests import pods
from tests.engine.test_mutations import PREFIX, c0, run
from tests.pods import container

PROBES_ONLY = {PREFIX + "inject": "enabled"}
READY = {**PROBES_ONLY, PREFIX + "readiness-path": "/ready"}  # namespace-wide, as in the report


def injected(ports: list[dict[str, Any]], namespace: dict[str, str] | None = None,
             annotations: dict[str, str] | None = None) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The container `app` after injection, and its probes decisions (code, detail)."""
    original = pods.pod(container(command=["/app"], ports=ports), annotations=annotations)
    mutated, outcome = run(original, dict(namespace or READY))
    found = [(d.reason.code, d.detail) for d in outcome.report.decisions
             if d.container == "app" and d.feature == "probes"]
    return c0(mutated), found


@pytest.mark.parametrize("name", ["https", "https-admin"])
def test_an_https_port_gets_an_https_get(name):
    app, found = injected([{"name": name, "containerPort": 8443}])
    assert app["readinessProbe"]["httpGet"] == {"path": "/ready", "port": 8443, "scheme": "HTTPS"}
    assert app["livenessProbe"]["tcpSocket"] == {"port": 8443}  # no liveness-path: unchanged
    assert found == [("injected", "readiness:httpGet, liveness:tcpSocket, startup:tcpSocket")]


def test_liveness_and_startup_on_an_https_port_both_use_https():
    app, _ = injected([{"name": "https", "containerPort": 8443}], {**PROBES_ONLY, PREFIX + "liveness-path": "/livez"})
    check = {"path": "/livez", "port": 8443, "scheme": "HTTPS"}
    assert app["livenessProbe"]["httpGet"] == check and app["startupProbe"]["httpGet"] == check


@pytest.mark.parametrize("name, protocol", [
    ("grpc", "gRPC"), ("grpc-api", "gRPC"), ("grpc-web", "gRPC"), ("mongo", "MongoDB"), ("mysql", "MySQL"),
    ("redis-main", "Redis"), ("tcp", "TCP"), ("tls-peer", "TLS"),
])
def test_a_port_of_another_known_protocol_gets_a_tcp_socket_check_and_says_why(name, protocol):
    app, found = injected([{"name": name, "containerPort": 9000}],
                          {**READY, PREFIX + "liveness-path": "/livez"})
    for field in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert app[field]["tcpSocket"] == {"port": 9000} and "httpGet" not in app[field]
    assert found == [("injected", "readiness:tcpSocket, liveness:tcpSocket, startup:tcpSocket; "
                                  f"port {name} is {protocol}: tcpSocket, not httpGet")]


@pytest.mark.parametrize("port", [
    {"name": "http", "containerPort": 8080}, {"name": "http2", "containerPort": 8080},
    {"name": "http-metrics", "containerPort": 8080}, {"name": "web", "containerPort": 8080},
    {"name": "httpsx", "containerPort": 8080}, {"containerPort": 8080},
])
def test_an_http_or_unknown_port_keeps_the_plain_http_get(port):
    app, found = injected([port])
    assert app["readinessProbe"]["httpGet"] == {"path": "/ready", "port": 8080}
    assert found == [("injected", "readiness:httpGet, liveness:tcpSocket, startup:tcpSocket")]


@pytest.mark.parametrize("probe_port, expected_port", [("https", "https"), ("8443", 8443)])
def test_a_probe_port_by_name_or_number_is_known_by_its_declared_name(probe_port, expected_port):
    """A number stands for the declared port with that number: it says the same as its name."""
    ports = [{"name": "http", "containerPort": 8080}, {"name": "https", "containerPort": 8443}]
    app, _ = injected(ports, annotations={PREFIX + "probe-port": probe_port})
    assert app["readinessProbe"]["httpGet"] == {"path": "/ready", "port": expected_port, "scheme": "HTTPS"}


def test_a_probe_port_number_the_container_does_not_declare_keeps_the_plain_http_get():
    app, _ = injected([{"name": "grpc", "containerPort": 9000}], annotations={PREFIX + "probe-port": "8080"})
    assert app["readinessProbe"]["httpGet"] == {"path": "/ready", "port": 8080}


def test_the_probe_port_decides_not_the_first_port():
    ports = [{"name": "grpc", "containerPort": 9000}, {"name": "http", "containerPort": 8080}]
    app, _ = injected(ports, annotations={PREFIX + "probe-port": "http"})
    assert app["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    app, _ = injected(ports)  # the first TCP port, grpc
    assert app["readinessProbe"]["tcpSocket"] == {"port": 9000}


def test_a_udp_port_of_the_same_number_does_not_name_the_tcp_port():
    ports = [{"name": "dns-udp", "containerPort": 53, "protocol": "UDP"},
             {"name": "https", "containerPort": 53}]
    app, _ = injected(ports, annotations={PREFIX + "probe-port": "53"})
    assert app["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"


def warned(namespace: dict[str, str], annotations: dict[str, str]) -> tuple[list[tuple[str, str]], list[str]]:
    """The probes decisions (code, detail) of container `app` on a `tcp-web` port, and the
    review's warnings."""
    original = pods.pod(container(command=["/app"], ports=[{"name": "tcp-web", "containerPort": 8080}]),
                        annotations=annotations)
    mutated, outcome = run(original, namespace)
    assert c0(mutated)["readinessProbe"]["tcpSocket"] == {"port": 8080}
    found = [(d.reason.code, d.detail) for d in outcome.report.decisions
             if d.container == "app" and d.feature == "probes"]
    return found, outcome.report.warnings(PREFIX)


@pytest.mark.parametrize("annotation", ["readiness-path", "readiness-path.app"])
def test_an_explicit_path_on_a_non_http_port_warns_and_says_how_to_get_the_http_get(annotation):
    """The user asked this pod (or container) for an httpGet and gets a tcpSocket: say so."""
    found, warnings = warned(PROBES_ONLY, {PREFIX + annotation: "/ready"})
    assert sorted(found) == [("injected", "readiness:tcpSocket, liveness:tcpSocket, startup:tcpSocket; port tcp-web "
                                          "is TCP: tcpSocket, not httpGet"),
                             ("probe-path-not-http", f"{PREFIX}{annotation}: port tcp-web is TCP")]
    (warning,) = warnings
    assert "container app: probes:" in warning and "rename the port" in warning
    assert f"{PREFIX}probe-port" in warning


def test_a_namespace_path_on_a_non_http_port_stays_quiet():
    """Every pod of the namespace would warn, for ports its owners named on purpose."""
    found, warnings = warned(READY, {})
    assert [code for code, _ in found] == ["injected"] and warnings == []


def test_an_explicit_path_on_a_non_http_port_warns_under_linkerd_too():
    """Linkerd injected the pod first: the tcpSocket the tcp-web port got would always pass through
    its proxy and is taken out (mesh-probes, whose text says to use readiness-path, which the user
    did); the warning says why the path gave no httpGet (the reviewer's linkerd.yaml)."""
    original = pods.pod(container(command=["/app"], ports=[{"name": "tcp-web", "containerPort": 8080}]),
                        container("linkerd-proxy"),
                        annotations={"linkerd.io/proxy-version": "stable-2.14", PREFIX + "readiness-path.app": "/ready"})
    mutated, outcome = run(original, PROBES_ONLY)
    assert "readinessProbe" not in c0(mutated)
    found = sorted((d.reason.code, d.detail) for d in outcome.report.decisions
                   if d.container == "app" and d.feature == "probes")
    assert found == [("mesh-probes", "linkerd: readiness:tcpSocket, liveness:tcpSocket, startup:tcpSocket"),
                     ("probe-path-not-http", f"{PREFIX}readiness-path.app: port tcp-web is TCP")]
    assert any("container app: probes:" in w and "rename the port" in w for w in outcome.report.warnings(PREFIX))

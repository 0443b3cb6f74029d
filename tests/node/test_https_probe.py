"""A namespace-wide readiness-path on a real node, for an app that serves HTTPS on a port named
https. podmedic's probe was plain HTTP: the kubelet's GET failed against the TLS server and the
container never became Ready, where without podmedic the same pod ran. Now it says HTTPS."""

from __future__ import annotations

from typing import Any

import pytest

from tests.node.conftest import Cluster, image_archive, wait_for

pytestmark = pytest.mark.node

PYTHON = "localhost/e2e/python-ssl:1"
PORT = 8443
# A self-signed certificate, then Python's http.server over TLS serving /srv (where healthz is).
SERVE = ("openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=app -days 1 -keyout /tmp/key.pem -out /tmp/cert.pem"
         " 2>/dev/null && mkdir -p /srv && touch /srv/healthz && cd /srv && exec python3 -c '"
         "import http.server, ssl\n"
         f"server = http.server.HTTPServer((\"\", {PORT}), http.server.SimpleHTTPRequestHandler)\n"
         "tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n"
         "tls.load_cert_chain(\"/tmp/cert.pem\", \"/tmp/key.pem\")\n"
         "server.socket = tls.wrap_socket(server.socket, server_side=True)\n"
         "server.serve_forever()'")


def _pod(name: str, namespace: str, **container: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
            "spec": {"terminationGracePeriodSeconds": 0, "containers": [
                {"name": "app", "image": PYTHON, "imagePullPolicy": "IfNotPresent", "command": ["sh", "-c", SERVE],
                 "ports": [{"name": "https", "containerPort": PORT}], **container}]}}


def test_an_https_app_becomes_ready_with_a_namespace_readiness_path(deployed: Cluster) -> None:
    deployed.load(image_archive("debian", PYTHON, "--include", "python3,openssl"))
    ns = deployed.namespace(inject="enabled", **{"readiness-path": "/healthz", "liveness-path": "/healthz"})
    # The control: the plain-HTTP GET podmedic used to add, written by hand, never passes.
    plain = {"httpGet": {"path": "/healthz", "port": PORT}, "periodSeconds": 2}
    deployed.apply(_pod("https", ns), _pod("plain", ns, readinessProbe=plain))

    def ready(name: str) -> dict[str, Any] | None:
        statuses = deployed.get("pod", name, ns).get("status", {}).get("containerStatuses") or [{}]
        status: dict[str, Any] = statuses[0]
        return status if status.get("ready") else None

    status = wait_for("the HTTPS app to be Ready", lambda: ready("https"), timeout=120, interval=1)
    app = deployed.get("pod", "https", ns)["spec"]["containers"][0]
    assert app["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": PORT, "scheme": "HTTPS"}
    assert app["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert status["restartCount"] == 0

    def plain_failed() -> bool:
        return "Readiness probe failed" in deployed.kubectl(
            "-n", ns, "get", "events", "--field-selector", "involvedObject.name=plain",
            "-o", "jsonpath={.items[*].message}").stdout

    wait_for("the plain GET to fail", plain_failed, timeout=60, interval=1)
    plain_app = deployed.get("pod", "plain", ns)["status"]["containerStatuses"][0]
    assert plain_app["started"] and not plain_app["ready"]  # it runs (HTTPS startup probe): only the GET fails

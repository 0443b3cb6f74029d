"""Which service mesh injected a pod before podmedic saw it, and its proxy containers.

The API server calls mutating webhook configurations sorted by name (kube-apiserver's
mutatingWebhookConfigurationManager), so `istio-sidecar-injector` and
`linkerd-proxy-injector-webhook-config` run before `podmedic`, and Istio's injector is registered
with reinvocationPolicy Never (its chart's default): it never sees what podmedic adds. So:
- the mesh's proxy (and its init containers) are the mesh's: podmedic changes none of them;
- Istio rewrites the httpGet, tcpSocket and grpc probes it sees to its agent (port 15020): under
  mutual TLS the kubelet's own httpGet/grpc probe fails (no mesh certificate) and a tcpSocket
  probe always passes (the sidecar accepts every connection). A network probe podmedic adds now
  is never rewritten, so probes.py skips it (exec probes run inside the container: unaffected).
- Linkerd's proxy lets the kubelet's plaintext httpGet and grpc probes through to the app, but it
  too accepts every inbound connection, so a tcpSocket probe always passes (linkerd/linkerd2#7777,
  open; Linkerd rewrites no probe): skipped as well.
"""

from __future__ import annotations

from typing import Any

ISTIO = "istio"
LINKERD = "linkerd"
# What each mesh's injector (and istioctl kube-inject) writes on a pod it injected.
_STATUS_ANNOTATIONS = (("sidecar.istio.io/status", ISTIO), ("linkerd.io/proxy-version", LINKERD))
# Each mesh's proxy: a regular container, or a native sidecar (an init container, restartPolicy Always).
PROXIES = {"istio-proxy": ISTIO, "linkerd-proxy": LINKERD}
# The probe handlers the kubelet cannot use through each mesh's proxy, in a pod it injected first.
UNUSABLE_PROBES = {ISTIO: frozenset({"httpGet", "tcpSocket", "grpc"}), LINKERD: frozenset({"tcpSocket"})}


def injected(annotations: dict[str, Any], spec: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """The mesh that injected the pod ("" for none) and its proxies present, {name: mesh}.
    Either sign tells, the status annotation or a proxy container (a pod re-created from an
    injected one's spec may keep only one of them). Run for every review: two look-ups and one pass over the container names."""
    mesh = ""
    for key, which in _STATUS_ANNOTATIONS:
        if key in annotations:
            mesh = which
            break
    proxies: dict[str, str] = {}
    for kind in ("containers", "initContainers"):
        for c in spec.get(kind) or ():
            name = c.get("name") if isinstance(c, dict) else None
            if name in PROXIES:
                proxies[name] = PROXIES[name]
    if not mesh and proxies:
        mesh = next(iter(proxies.values()))
    return mesh, proxies

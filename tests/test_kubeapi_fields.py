"""Pod API features of Kubernetes 1.33-1.36 that this API server (1.36.2) enables by default,
through the real admission chain with podmedic registered: each pod is stored without podmedic
(a namespace not opted in) and with it, its own fields as sent, podmedic's features applied or
skipped with their reason. A field the decoder did not know would only be dropped from what the
engine reads (the patch is operations on the API server's object), but a type it refused would
be a 400, which `failurePolicy: Fail` turns into the pod's refusal.

Not here, because this API server drops it before the webhooks see it (its gate is off by
default): a projected `podCertificate` source (stored as an empty source).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests.test_integration import PREFIX, Cluster, _created, _pod, cluster, webhook  # noqa: F401  (session fixtures)
from webhook.engine.decisions import Reason

pytestmark = pytest.mark.integration

ENABLED = {PREFIX + "inject": "enabled", PREFIX + "supervisor": "enabled"}
TOOLS = {"name": "tools", "image": {"reference": "registry.example/tools:1", "pullPolicy": "IfNotPresent"}}
RESOURCES = {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "128Mi"}}

# case -> (pod spec as _pod() takes it, wrapped by the supervisor, the warning podmedic gives)
CASES: dict[str, tuple[dict[str, Any], bool, str | None]] = {
    "image volume": (dict(volumes=[TOOLS], container={"volumeMounts": [
        {"name": "tools", "mountPath": "/tools", "subPath": "bin"}]}), True, None),
    "image volume at the toolbox's path": (dict(volumes=[TOOLS], container={"volumeMounts": [
        {"name": "tools", "mountPath": "/podmedic"}]}), False, "mount-conflict"),
    "env from a file": (dict(volumes=[{"name": "cfg", "emptyDir": {}}], container={"env": [
        {"name": "DB_URL", "valueFrom": {"fileKeyRef": {"volumeName": "cfg", "path": "app.env", "key": "DB_URL",
                                                       "optional": False}}},
        {"name": "spring.datasource.url", "value": "jdbc:x"}]}), True, None),
    "sleep hooks": (dict(container={"lifecycle": {"postStart": {"sleep": {"seconds": 1}},
                                                  "preStop": {"sleep": {"seconds": 0}}}}), True, "prestop-not-exec"),
    "resize policy, user namespace, DRA claim, hostname override, localhost profiles": (dict(
        hostUsers=False, hostnameOverride="app-0", resourceClaims=[{"name": "gpu", "resourceClaimTemplateName": "gpu"}],
        schedulingGates=[{"name": "example.com/quota"}],
        securityContext={"supplementalGroupsPolicy": "Strict", "supplementalGroups": [1000],
                         "seccompProfile": {"type": "Localhost", "localhostProfile": "profiles/app.json"},
                         "appArmorProfile": {"type": "Localhost", "localhostProfile": "k8s-app"}},
        container={"resources": {**RESOURCES, "claims": [{"name": "gpu"}]}, "securityContext": {"procMount": "Unmasked"},
                   "resizePolicy": [{"resourceName": "cpu", "restartPolicy": "NotRequired"}]}), True, None),
}


def _without_podmedic_and_with(cluster: Cluster, pod: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], str]:
    """The pod as the API server stores it (dry run) outside and inside an opted-in namespace,
    and the warnings of the second."""
    plain = _created(cluster.create_pod(cluster.namespace({}), copy.deepcopy(pod), dry_run=True))
    done = cluster.create_pod(cluster.namespace(ENABLED), copy.deepcopy(pod), dry_run=True)
    return plain, _created(done), done.stderr


@pytest.mark.parametrize("case", CASES)
def test_a_pod_using_a_recent_api_feature_is_stored_with_podmedic_as_without(cluster, webhook, case):
    spec, wrapped, warning = CASES[case]
    # no ServiceAccount token: its volume's name is random, and the two pods are compared
    pod = _pod("recent", automountServiceAccountToken=False, **copy.deepcopy(spec))
    plain, injected, warnings = _without_podmedic_and_with(cluster, pod)
    app, plain_app = injected["spec"]["containers"][0], plain["spec"]["containers"][0]
    assert PREFIX + "status" in injected["metadata"]["annotations"] and "readinessProbe" in app
    assert app["command"][0].startswith("/podmedic/") is wrapped, warnings
    assert (Reason(warning).text in warnings) if warning else "Warning: podmedic" not in warnings
    for field in ("env", "volumeMounts"):  # the user's entries first, as sent; podmedic's after them
        assert app.get(field, [])[:len(plain_app.get(field, []))] == plain_app.get(field, [])
    assert [v for v in injected["spec"]["volumes"] if not v["name"].startswith("podmedic-")] == plain["spec"].get("volumes", [])
    for field in ("resources", "resizePolicy", "securityContext"):
        assert app.get(field) == plain_app.get(field)
    if case == "env from a file":  # stored as sent, and its value, unseen at admission, counts as a Secret's
        assert plain_app["env"][0]["valueFrom"]["fileKeyRef"]["key"] == "DB_URL"
        assert "--redact-env=DB_URL" in app["command"]
    if plain_app.get("lifecycle", {}).get("preStop", {}).get("sleep"):
        assert app["lifecycle"] == plain_app["lifecycle"]
    kept = {k: v for k, v in plain["spec"].items() if k not in ("containers", "initContainers", "volumes")}
    assert {k: injected["spec"].get(k) for k in kept} == kept


def test_an_injected_pod_is_resized_in_place_without_a_review(cluster, webhook):
    """The resize subresource is an UPDATE of pods/resize: podmedic's webhook registers CREATE of
    pods only, so it is not called, and its init containers' resources do not stand in the way."""
    ns = cluster.namespace(ENABLED)
    container = {"resources": copy.deepcopy(RESOURCES),
                 "resizePolicy": [{"resourceName": "cpu", "restartPolicy": "NotRequired"}]}
    pod = _created(cluster.create_pod(ns, _pod("resized", container=container)))
    reviews = len(webhook.audit_lines())
    cpu = {"requests": {"cpu": "150m"}, "limits": {"cpu": "150m"}}
    patch = {"spec": {"containers": [{"name": "app", "resources": cpu}]}}
    resized = json.loads(cluster.kubectl("-n", ns, "patch", "pod", "resized", "--subresource", "resize",
                                         "-p", json.dumps(patch), "-o", "json").stdout)
    app = resized["spec"]["containers"][0]
    assert app["resources"]["limits"] == {"cpu": "150m", "memory": "128Mi"}
    assert app["command"] == pod["spec"]["containers"][0]["command"] and len(webhook.audit_lines()) == reviews


def test_a_stop_signal_this_api_server_drops_leaves_sigterm_the_apps_stop(cluster, webhook):
    """Mutating webhooks see lifecycle.stopSignal before the API server drops it (its gate,
    ContainerStopSignals, is off by default in 1.36): the kubelet then sends SIGTERM, and the
    wrapper must hand the app SIGTERM, as without podmedic, not the signal the pod no longer has."""
    pod = _pod("stopsignal", os={"name": "linux"}, container={"lifecycle": {"stopSignal": "SIGUSR1"}})
    app = _created(cluster.create_pod(cluster.namespace(ENABLED), pod, dry_run=True))["spec"]["containers"][0]
    if "stopSignal" in app.get("lifecycle", {}):
        pytest.skip("this API server keeps lifecycle.stopSignal: its ContainerStopSignals gate is on")
    stops = [flag for flag in app["command"][:app["command"].index("--", 3)] if "stopsignal=" in flag]
    assert stops == ["--stopsignal=USR1", "--term-stopsignal=TERM"], app["command"]  # SIGTERM sends TERM

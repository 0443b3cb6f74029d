"""Integration with a real kube-apiserver v1.36 + etcd (tests/kubeapi.py): the webhook
is registered, pods are created through the API server, and what it stored is asserted. This is
the only proof that a patch is accepted by the real validation and Pod Security admission."""

from __future__ import annotations

import base64
import json
import os
import platform
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests import kubeapi
from tests.conftest import start_server, stop_server
from webhook.toolbox.arch import goarch

pytestmark = pytest.mark.integration

PREFIX = "podmedic.io/"
TOOLBOX_ARCH = goarch(platform.machine())  # what `podmedic toolbox build` records here


class Cluster:
    """kubectl against a real API server (tests/kubeapi.py). `api` is replaced when a test
    restarts the API server; the fixture that started it stops whichever one runs then."""

    def __init__(self, api: kubeapi.KubeAPI):
        self.api = api

    @property
    def state(self) -> Path:
        return self.api.state

    @property
    def kubeconfig(self) -> Path:
        return self.api.kubeconfig

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, **self.api.env}

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([self.api.kubectl, *args], input=input, text=True, capture_output=True, env=self.env,
                              timeout=60)
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {done.stderr}")
        return done

    def apply(self, obj: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", input=json.dumps(obj))

    def namespace(self, annotations: dict[str, str], labels: dict[str, str] | None = None) -> str:
        name = "it-" + uuid.uuid4().hex[:8]
        self.apply({"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": name, "annotations": annotations, "labels": labels or {}}})
        self.kubectl("-n", name, "create", "serviceaccount", "default")
        return name

    def create_pod(self, namespace: str, pod: dict[str, Any], *, dry_run: bool = False) -> subprocess.CompletedProcess[str]:
        args = ["-n", namespace, "create", "-f", "-", "-o", "json"]
        if dry_run:
            args.append("--dry-run=server")
        return self.kubectl(*args, input=json.dumps(pod), check=False)


@contextmanager
def running_cluster(state: Path) -> Iterator[Cluster]:
    """A real API server keeping its data in `state`, for as long as the block runs; skipped,
    with the reason, where none can run (tests/kubeapi.py: KUBEBUILDER_ASSETS or ../shared)."""
    reason = kubeapi.missing()
    if reason:
        pytest.skip(reason)
    cluster = Cluster(kubeapi.start(state))
    try:
        yield cluster
    finally:
        kubeapi.stop(cluster.api)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("kube")) as running:
        yield running


@pytest.fixture(scope="session")
def webhook(cluster: Cluster, certs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The real server, watching namespaces through the real API, registered as a webhook; its
    toolbox directory records the toolbox's architecture, as the image's does."""
    tmp = tmp_path_factory.mktemp("it-server")
    (tmp / "toolbox").mkdir()
    (tmp / "toolbox" / "arch").write_text(TOOLBOX_ARCH + "\n")
    server = start_server(tmp, certs_dir, "--kubeconfig", str(cluster.kubeconfig),
                          env={"PODMEDIC_TOOLBOX_DIR": str(tmp / "toolbox")})
    register(cluster, server, certs_dir)
    yield server
    stop_server(server)


def register(cluster: Cluster, server: Any, certs_dir: Path, name: str = "podmedic", prefix: str = PREFIX) -> None:
    """Register `server` as a podmedic webhook (`name`: its configuration's; `prefix`: the
    server's annotationPrefix); returns once it takes effect."""
    ca = base64.b64encode((certs_dir / "ca.crt").read_bytes()).decode()
    cluster.apply({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [{
            "name": "inject.podmedic.io", "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "failurePolicy": "Fail", "reinvocationPolicy": "Never", "timeoutSeconds": 5,
            "clientConfig": {"url": server.url + "/mutate", "caBundle": ca},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}],
            "matchConditions": [{"name": "not-opted-out", "expression":
                                 f"!has(object.metadata.annotations) || !('{prefix}inject' in object.metadata.annotations)"
                                 f" || object.metadata.annotations['{prefix}inject'] != 'disabled'"}],
        }],
    })
    # New webhook configurations take effect after ~0.1-1 s: poll a dry-run until mutated.
    probe_ns = cluster.namespace({prefix + "inject": "enabled"})
    deadline = time.monotonic() + 30
    while True:
        done = cluster.create_pod(probe_ns, _pod("probe"), dry_run=True)
        if done.returncode == 0 and "readinessProbe" in done.stdout:
            break
        if time.monotonic() > deadline:
            pytest.fail("webhook never took effect: " + done.stderr + server.log.read_text()[-2000:])
        time.sleep(0.3)


def _pod(name: str | None, **spec: Any) -> dict[str, Any]:
    container = {"name": "app", "image": "registry.example/app:1", "command": ["/app", "--serve"],
                 "ports": [{"containerPort": 8080}]}
    container.update(spec.pop("container", {}))
    metadata: dict[str, Any] = {"name": name} if name else {"generateName": "web-5d8c9-"}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": {"containers": [container], **spec}}


def _created(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_all_features_accepted_by_the_api_server(cluster, webhook):
    ns = cluster.namespace({PREFIX + "inject": "enabled", PREFIX + "supervisor": "enabled"})
    pod = _created(cluster.create_pod(ns, _pod(None)))
    assert pod["metadata"]["name"].startswith("web-5d8c9-")  # generateName: no name at admission
    app = pod["spec"]["containers"][0]
    assert app["command"][0].startswith("/podmedic/") and app["command"][-2:] == ["/app", "--serve"]
    assert {"readinessProbe", "livenessProbe"} <= set(app)
    assert app["lifecycle"]["preStop"]["exec"]["command"]
    mounts = {m["name"]: m for m in app["volumeMounts"]}
    assert mounts["podmedic-logs"]["subPathExpr"] == f"{ns}_$(PODMEDIC_POD_NAME)_$(PODMEDIC_POD_UID)/app"
    assert mounts["podmedic-toolbox"]["readOnly"] is True
    assert [c["name"] for c in pod["spec"]["initContainers"]][:2] == ["podmedic-logdir", "podmedic-toolbox"]
    assert PREFIX + "status" in pod["metadata"]["annotations"]
    line = webhook.audit_for(_uid_of(webhook, pod["metadata"]["name"][:10]))
    assert line["outcome"] == "patched"


def _uid_of(server, generate_prefix: str) -> str:
    for line in reversed(server.audit_lines()):
        if (line.get("generateName") or "").startswith(generate_prefix) and line.get("outcome") == "patched":
            return line["uid"]
    raise AssertionError("no audit line")


@pytest.mark.parametrize("level", ["baseline", "restricted"])
def test_pod_security_namespaces_get_no_hostpath_and_pod_is_admitted(cluster, webhook, level):
    ns = cluster.namespace({PREFIX + "inject": "enabled", PREFIX + "supervisor": "enabled"},
                           {"pod-security.kubernetes.io/enforce": level})
    restricted_ok = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True,
                     "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}}
    done = cluster.create_pod(ns, _pod("secure", container={"securityContext": restricted_ok}))
    pod = _created(done)
    assert not any("hostPath" in v for v in pod["spec"].get("volumes", []))
    assert "readinessProbe" in pod["spec"]["containers"][0]
    assert "pod-security" not in done.stderr  # no PSA warnings caused by podmedic's additions


def test_reinvocation_and_reapply_add_nothing(cluster, webhook):
    ns = cluster.namespace({PREFIX + "inject": "enabled"})
    pod = _created(cluster.create_pod(ns, _pod("once")))
    for key in ("uid", "resourceVersion", "creationTimestamp", "managedFields"):
        pod["metadata"].pop(key, None)
    pod.pop("status", None)
    pod["metadata"]["name"] = "twice"
    again = _created(cluster.create_pod(ns, pod))
    assert [c["name"] for c in again["spec"]["initContainers"]] == [c["name"] for c in pod["spec"]["initContainers"]]
    assert again["spec"]["containers"][0]["env"] == pod["spec"]["containers"][0]["env"]
    assert len(again["spec"]["volumes"]) == len(pod["spec"]["volumes"])


def test_not_opted_in_and_opted_out(cluster, webhook):
    plain = cluster.namespace({})
    pod = _created(cluster.create_pod(plain, _pod("plain")))
    assert "readinessProbe" not in pod["spec"]["containers"][0]
    enabled = cluster.namespace({PREFIX + "inject": "enabled"})
    opted_out = _pod("out")
    opted_out["metadata"]["annotations"] = {PREFIX + "inject": "disabled"}
    pod = _created(cluster.create_pod(enabled, opted_out))
    assert "readinessProbe" not in pod["spec"]["containers"][0]


def test_dry_run_is_mutated_too(cluster, webhook):
    ns = cluster.namespace({PREFIX + "inject": "enabled"})
    pod = _created(cluster.create_pod(ns, _pod("dry"), dry_run=True))
    assert "readinessProbe" in pod["spec"]["containers"][0]
    assert cluster.kubectl("-n", ns, "get", "pod", "dry", check=False).returncode != 0


def test_a_controllers_burst_is_planned_twice_per_worker(cluster, webhook):
    """Six pods from one template, as a ReplicaSet sends them, more than a second apart (the API
    server stamps managedFields with the second) and each with its own randomly named token
    volume: at most two plans per worker (the memo keeps a template from its second sighting
    on), so with two workers at least two reviews are answered from the memo, and every stored
    pod got the same injection."""
    ns = cluster.namespace({PREFIX + "inject": "enabled"})
    stored = []
    for i in range(6):
        if i:
            time.sleep(1.1)
        stored.append(_created(cluster.create_pod(ns, _pod(None))))
    uids = {line["uid"] for line in webhook.audit_lines() if line.get("namespace") == ns}
    lines = [line for line in webhook.audit_lines() if line.get("uid") in uids and line.get("outcome") == "patched"]
    assert len(lines) == 6
    assert sum(line["cached"] for line in lines) >= 2
    tokens = [next(v["name"] for v in p["spec"]["volumes"] if v["name"].startswith("kube-api-access-")) for p in stored]
    assert len(set(tokens)) == 6  # one random name per pod: what the memo's key masks
    specs = {json.dumps(p["spec"], sort_keys=True).replace(token, "kube-api-access-*") for p, token in zip(stored, tokens)}
    assert len(specs) == 1
    assert len({p["metadata"]["annotations"][PREFIX + "status"] for p in stored}) == 1


def test_a_stop_signal_pod_is_injected_and_accepted(cluster, webhook):
    """lifecycle.stopSignal (1.33+; the API server wants spec.os.name with it) sits beside the
    hooks: podmedic injects the pod, forensics wraps the preStop, the API server stores it. (This
    API server runs without the ContainerStopSignals gate, so it drops the field after the
    webhooks have seen it.)"""
    ns = cluster.namespace({PREFIX + "inject": "enabled", PREFIX + "supervisor": "enabled"})
    lifecycle = {"stopSignal": "SIGUSR1", "preStop": {"exec": {"command": ["/app", "--drain"]}}}
    pod = _created(cluster.create_pod(ns, _pod("stopsignal", os={"name": "linux"}, container={"lifecycle": lifecycle})))
    app = pod["spec"]["containers"][0]
    assert app["lifecycle"]["preStop"]["exec"]["command"][0].startswith("/podmedic/")
    assert app["command"][0].startswith("/podmedic/") and PREFIX + "status" in pod["metadata"]["annotations"]


def test_a_pod_with_secret_sourced_env_tells_the_collector_and_is_accepted(cluster, webhook):
    """A secretKeyRef variable and an envFrom secretRef without prefix (every name a Secret's but
    GREETING, declared plainly): the wrapper and the preStop collector are told, to redact those
    values in the bundles (engine/secret_env.py), and the API server stores the pod."""
    ns = cluster.namespace({PREFIX + "inject": "enabled", PREFIX + "supervisor": "enabled"})
    env = [{"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}}},
           {"name": "GREETING", "value": "hello"}]
    container = {"args": ["--dsn", "$(DATABASE_URL)"], "env": env, "envFrom": [{"secretRef": {"name": "app"}}]}
    pod = _created(cluster.create_pod(ns, _pod("secretenv", container=container)))
    app = pod["spec"]["containers"][0]
    flags = ["--redact-env=DATABASE_URL", "--redact-env-prefix=", "--plain-env=GREETING"]
    assert app["command"][-6:] == [*flags, "--", "/app", "--serve"] and app["args"] == container["args"]
    assert app["lifecycle"]["preStop"]["exec"]["command"][-3:] == flags
    assert PREFIX + "status" in pod["metadata"]["annotations"]


@pytest.mark.parametrize("spec", [
    {"os": {"name": "windows"}},
    {"nodeSelector": {"kubernetes.io/os": "windows"}},
    {"hostNetwork": True, "securityContext": {"windowsOptions": {"hostProcess": True}}},
], ids=["spec-os", "node-selector", "host-process"])
def test_a_windows_pod_is_let_through_unchanged(cluster, webhook, spec):
    """podmedic's init containers carry Linux-only securityContext fields that the API server
    rejects in a pod with spec.os.name windows, and its toolbox is Linux binaries: a pod that runs
    only on Windows, by spec.os or by what most manifests use instead, is skipped (not-linux)."""
    ns = cluster.namespace({PREFIX + "inject": "enabled", PREFIX + "supervisor": "enabled"})
    done = cluster.create_pod(ns, _pod(None, **spec))
    pod = _created(done)
    assert "initContainers" not in pod["spec"] and PREFIX + "status" not in pod["metadata"].get("annotations", {})
    assert pod["spec"]["containers"][0]["command"] == ["/app", "--serve"]
    assert "runs only on another OS than Linux" in done.stderr


def test_a_pod_for_another_architecture_keeps_its_command_and_gets_probes(cluster, webhook):
    """The toolbox is static binaries for toolbox.architectures only (by default the one it was
    built for): a pod pinned to another architecture by nodeSelector kubernetes.io/arch would get
    init containers and a command that cannot exec on its node (exec format error). Before: it was
    stored with podmedic-toolbox and the supervise command. Now it keeps its command, gets its
    network probes, and kubectl prints why (arch-unsupported)."""
    ns = cluster.namespace({PREFIX + "inject": "enabled", PREFIX + "supervisor": "enabled"})
    other = "arm64" if TOOLBOX_ARCH != "arm64" else "amd64"
    assert f"toolbox.architectures: {TOOLBOX_ARCH}" in webhook.log.read_text()  # said once at start-up
    done = cluster.create_pod(ns, _pod("pinned", nodeSelector={"kubernetes.io/arch": other}))
    stored = _created(done)
    app = stored["spec"]["containers"][0]
    assert "initContainers" not in stored["spec"]
    assert not [v for v in stored["spec"].get("volumes", []) if v["name"].startswith("podmedic-")]
    assert app["command"] == ["/app", "--serve"] and "tcpSocket" in app["readinessProbe"]
    assert f"nodeSelector kubernetes.io/arch={other}" in done.stderr and "toolbox.architectures" in done.stderr
    decisions = {(d["feature"], d["reason"]) for d in _audit_of(webhook, ns, "pinned")["decisions"]}
    assert {("supervisor", "arch-unsupported"), ("logs", "arch-unsupported"), ("forensics", "arch-unsupported"),
            ("probes", "injected")} <= decisions


def test_a_mirror_pod_is_let_through_unchanged(cluster, webhook):
    """The kubelet runs a static pod from its disk, not from the mirror pod it creates in the API
    server (annotation kubernetes.io/config.mirror; the API server wants spec.nodeName with it):
    podmedic leaves the mirror alone (mirror-pod, no warning)."""
    ns = cluster.namespace({PREFIX + "inject": "enabled", PREFIX + "supervisor": "enabled"})
    mirror = _pod("static-node-1", nodeName="node-1")
    mirror["metadata"]["annotations"] = {"kubernetes.io/config.mirror": "0123456789abcdef"}
    done = cluster.create_pod(ns, mirror)
    pod = _created(done)
    assert "initContainers" not in pod["spec"] and PREFIX + "status" not in pod["metadata"]["annotations"]
    assert pod["spec"]["containers"][0]["command"] == ["/app", "--serve"] and "podmedic" not in done.stderr


def test_a_marker_that_would_cross_the_annotation_limit_leaves_the_pod_unpatched(cluster, webhook):
    """The injection marker records the original command: a 140 KB `sh -c` script beside
    kubectl's last-applied-configuration (which holds it too) would take the pod's annotations
    past the API server's 256 KiB, and the pod would be refused. Verification drops the patch
    instead (verify-failed), and the pod is stored as sent."""
    ns = cluster.namespace({PREFIX + "inject": "enabled", PREFIX + "supervisor": "enabled"})
    script = "\n".join(f"echo line {i} of a long generated start-up script" for i in range(3200))
    pod = _pod("bigscript", container={"command": ["sh", "-c", script]})
    pod["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/last-applied-configuration": json.dumps(pod, separators=(",", ":"))}
    assert 128 * 1024 < len(script) < 256 * 1024 < 2 * len(script)
    done = cluster.create_pod(ns, pod)
    stored = _created(done)
    assert stored["spec"]["containers"][0]["command"] == ["sh", "-c", script]
    assert PREFIX + "status" not in stored["metadata"]["annotations"]
    assert "verify-failed" in done.stderr or "failed verification" in done.stderr


def test_a_pod_with_pod_level_resources_is_admitted(cluster, webhook):
    """Pod-level resources (spec.resources, on by default since 1.34): the API server wants the
    pod's requests to cover its containers' aggregate requests, init containers included. The
    toolbox's own requests (16Mi) exceed a small pod's 8Mi, so the pod was refused; podmedic's
    init containers now carry no resources of their own in such a pod and share its budget."""
    ns = cluster.namespace({PREFIX + "inject": "enabled", PREFIX + "supervisor": "enabled"})
    small = {"requests": {"cpu": "5m", "memory": "8Mi"}, "limits": {"cpu": "20m", "memory": "16Mi"}}
    pod = _created(cluster.create_pod(ns, _pod("podres", resources=small, container={"resources": small})))
    assert [c["name"] for c in pod["spec"]["initContainers"]] == ["podmedic-logdir", "podmedic-toolbox"]
    assert all("resources" not in c or not c["resources"] for c in pod["spec"]["initContainers"])
    assert pod["spec"]["containers"][0]["command"][0].startswith("/podmedic/")
    assert pod["spec"]["resources"] == small


def test_a_probe_port_naming_no_declared_port_is_reported_under_the_supervisor(cluster, webhook):
    """`probe-port` naming a port the container does not declare (a typo, or another container's
    port) is skipped with named-port-not-found; with the supervisor on, the probes used to fall
    back to the wrapper's `pmctl ready` silently, as for a container with no port at all, and
    the user never learned that the annotation was ignored."""
    ns = cluster.namespace({PREFIX + "inject": "enabled", PREFIX + "supervisor": "enabled"})
    pod = _pod("typo", container={"ports": [{"name": "http", "containerPort": 8080}]})
    pod["metadata"]["annotations"] = {PREFIX + "probe-port": "htpt"}
    done = cluster.create_pod(ns, pod)
    app = _created(done)["spec"]["containers"][0]
    assert "probe-port names a port the container does not declare (htpt)" in done.stderr
    assert "readinessProbe" not in app and "livenessProbe" not in app
    assert app["command"][0].startswith("/podmedic/")  # the other features are kept


@pytest.mark.parametrize("handler", [("readinessProbe",), ("lifecycle", "postStart")], ids=["probe", "hook"])
def test_the_apps_own_handler_naming_an_undeclared_port_does_not_cost_the_pod_its_injection(
        cluster, webhook, handler):
    """The API server checks a handler's named port for its form only (the kubelet resolves it
    when it probes), so it stores such a pod. Verification held every handler to a declared port
    and dropped podmedic's whole patch (verify-failed) for the app's own typo, which podmedic
    keeps as it is; it now holds only the handlers podmedic writes to it."""
    ns = cluster.namespace({PREFIX + "inject": "enabled", PREFIX + "supervisor": "enabled"})
    container: dict[str, Any] = {"ports": [{"name": "http", "containerPort": 8080}]}
    parent = container
    for key in handler[:-1]:
        parent = parent.setdefault(key, {})
    parent[handler[-1]] = {"httpGet": {"path": "/", "port": "htpt"}}
    done = cluster.create_pod(ns, _pod(None, container=container))
    app = _created(done)["spec"]["containers"][0]
    assert "failed verification" not in done.stderr
    assert app["command"][0].startswith("/podmedic/") and "livenessProbe" in app
    for key in handler:
        app = app[key]
    assert app["httpGet"]["port"] == "htpt"


def test_the_unbounded_startup_probe_beside_the_apps_liveness_is_accepted(cluster, webhook):
    """Without the supervisor, liveness checks the app: podmedic adds a startupProbe with the API's
    largest failureThreshold (int32) so that a slow starter is not killed before it first answers."""
    ns = cluster.namespace({PREFIX + "inject": "enabled"})
    app = _created(cluster.create_pod(ns, _pod("slow")))["spec"]["containers"][0]
    assert app["livenessProbe"]["tcpSocket"]["port"] == 8080
    assert app["startupProbe"]["tcpSocket"]["port"] == 8080
    assert app["startupProbe"]["failureThreshold"] == 2147483647


def test_a_namespace_readiness_path_checks_tls_and_grpc_ports_the_way_they_answer(cluster, webhook):
    """A namespace-wide readiness-path gave every container a plain HTTP GET: on a port named
    https the kubelet got a 400 (plain HTTP to a TLS server) and the pod never became Ready; on a
    port named grpc the GET failed too. The port's name says its protocol (Istio's convention)."""
    ns = cluster.namespace({PREFIX + "inject": "enabled", PREFIX + "readiness-path": "/healthz"})
    pod = _pod("tls-and-grpc", container={"ports": [{"name": "https", "containerPort": 8443}]})
    pod["spec"]["containers"].append({"name": "api", "image": "registry.example/api:1", "command": ["/api"],
                                      "ports": [{"name": "grpc-api", "containerPort": 9090}]})
    done = cluster.create_pod(ns, pod)
    app, api = _created(done)["spec"]["containers"]
    assert app["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": 8443, "scheme": "HTTPS"}
    assert api["readinessProbe"]["tcpSocket"] == {"port": 9090} and "httpGet" not in api["readinessProbe"]
    assert app["livenessProbe"]["tcpSocket"] == {"port": 8443}  # no liveness-path: as before
    detail = [line for line in webhook.audit_lines() if line.get("namespace") == ns]
    assert "port grpc-api is gRPC: tcpSocket, not httpGet" in json.dumps(detail)


_GUARANTEED = {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "250m", "memory": "64Mi"}}


def test_a_guaranteed_pod_stays_guaranteed(cluster, webhook):
    """The API server computes status.qosClass over every container, init containers included:
    Guaranteed needs each one's cpu and memory limits equal to its requests. The toolbox's
    requests (10m, 16Mi) are below its limits, so a Guaranteed pod came out Burstable (evicted
    earlier, no exclusive CPUs under the static CPU manager). In a pod whose every container is
    Guaranteed, podmedic's init containers now request their limits. (A request left out is
    defaulted to the limit, as the pod's own init container here shows.)"""
    ns = cluster.namespace({PREFIX + "inject": "enabled", PREFIX + "supervisor": "enabled"})
    init = {"name": "setup", "image": "registry.example/setup:1", "command": ["/setup"],
            "resources": {"limits": {"cpu": "1", "memory": "64Mi"}}}
    _created(cluster.create_pod(ns, _pod("guaranteed", container={"resources": _GUARANTEED},
                                               initContainers=[init])))
    stored = json.loads(cluster.kubectl("-n", ns, "get", "pod", "guaranteed", "-o", "json").stdout)
    assert stored["status"]["qosClass"] == "Guaranteed"
    inits = stored["spec"]["initContainers"]
    assert [c["name"] for c in inits] == ["podmedic-logdir", "podmedic-toolbox", "setup"]
    assert stored["spec"]["containers"][0]["command"][0].startswith("/podmedic/")
    limits = {"cpu": "100m", "memory": "64Mi"}  # webhook/defaults.yaml
    assert [c["resources"] for c in inits[:2]] == [{"requests": limits, "limits": limits}] * 2


def test_a_burstable_pod_keeps_its_class_and_the_toolbox_resources(cluster, webhook):
    """Only a Guaranteed pod's init containers change: one container below its limits (or
    without any) keeps the pod Burstable, and podmedic's init containers keep the configured
    requests."""
    ns = cluster.namespace({PREFIX + "inject": "enabled", PREFIX + "supervisor": "enabled"})
    sidecar = {"name": "side", "image": "registry.example/side:1", "command": ["/side"],
               "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "250m", "memory": "64Mi"}}}
    pod = _pod("burstable", container={"resources": _GUARANTEED})
    pod["spec"]["containers"].append(sidecar)
    stored = _created(cluster.create_pod(ns, pod))
    assert [c["resources"] for c in stored["spec"]["initContainers"]] == [
        {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}}] * 2
    assert stored["status"]["qosClass"] == "Burstable"


def test_a_pod_with_guaranteed_pod_level_resources_stays_guaranteed(cluster, webhook):
    """With pod-level resources the API server computes the class from spec.resources alone;
    podmedic's init containers carry none there (they share the pod's budget), so it holds."""
    ns = cluster.namespace({PREFIX + "inject": "enabled", PREFIX + "supervisor": "enabled"})
    pod = _created(cluster.create_pod(ns, _pod("podlevel", resources=_GUARANTEED,
                                               container={"resources": {"requests": {"cpu": "50m", "memory": "32Mi"}}})))
    assert all(not c.get("resources") for c in pod["spec"]["initContainers"])
    assert pod["status"]["qosClass"] == "Guaranteed"


def _quota(cluster: Cluster, ns: str, name: str, hard: dict[str, str], scopes: list[str]) -> None:
    """A ResourceQuota as the quota controller leaves it: no controller-manager runs here, and the
    API server refuses every pod a quota covers until its status counts the usage (none yet)."""
    cluster.apply({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": name, "namespace": ns},
                   "spec": {"hard": hard, "scopes": scopes}})
    status = {"status": {"hard": hard, "used": dict.fromkeys(hard, "0")}}
    cluster.kubectl("-n", ns, "patch", "resourcequota", name, "--subresource=status", "--type=merge",
                    "-p", json.dumps(status))


@pytest.mark.parametrize("hard", [{"pods": "0"}, {"requests.cpu": "1"}], ids=["no-pods", "requests"])
def test_a_besteffort_pod_stays_besteffort_and_outside_a_not_besteffort_quota(cluster, webhook, hard):
    """A pod without requests or limits is BestEffort, and a ResourceQuota scoped NotBestEffort
    does not cover it. podmedic's init containers gave it requests: the pod became Burstable,
    the quota covered it, and the API server refused it (pods: exceeded quota; requests.cpu: must
    specify requests.cpu for the app). In a BestEffort pod they now carry no resources."""
    ns = cluster.namespace({PREFIX + "inject": "enabled", PREFIX + "supervisor": "enabled"})
    _quota(cluster, ns, "burstable", hard, ["NotBestEffort"])
    pod = _pod("besteffort")
    assert cluster.create_pod(ns, {**pod, "metadata": {"name": "plain", "annotations": {PREFIX + "inject": "disabled"}}},
                              dry_run=True).returncode == 0  # admitted without podmedic
    stored = _created(cluster.create_pod(ns, pod))
    assert stored["status"]["qosClass"] == "BestEffort"
    inits = stored["spec"]["initContainers"]
    assert [c["name"] for c in inits] == ["podmedic-logdir", "podmedic-toolbox"]
    assert all(not c.get("resources") for c in inits)
    assert stored["spec"]["containers"][0]["command"][0].startswith("/podmedic/")


_SMALL = {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "50m", "memory": "32Mi"}}


@pytest.mark.parametrize("resources", [_SMALL, {"requests": _SMALL["limits"], "limits": _SMALL["limits"]}],
                         ids=["burstable", "guaranteed"])
def test_a_small_app_is_charged_by_a_quota_as_without_podmedic(cluster, webhook, resources):
    """A ResourceQuota charges a pod, per resource, the larger of its containers' sum and its
    largest init container. podmedic's init containers (limits 100m / 64Mi; in a Guaranteed pod
    their requests too) made an app that asks for 50m / 32Mi cost 100m / 64Mi, and a quota with
    room for the app alone refused it. They now ask no more than the app's containers."""
    ns = cluster.namespace({PREFIX + "inject": "enabled", PREFIX + "supervisor": "enabled"})
    _quota(cluster, ns, "small", {f"{kind}.{name}": room for kind in ("requests", "limits")
                                  for name, room in (("cpu", "80m"), ("memory", "48Mi"))}, [])
    pod = _pod("small", container={"resources": resources})
    assert cluster.create_pod(ns, {**pod, "metadata": {"name": "plain", "annotations": {PREFIX + "inject": "disabled"}}},
                              dry_run=True).returncode == 0  # admitted without podmedic
    stored = _created(cluster.create_pod(ns, pod))
    inits = stored["spec"]["initContainers"]
    assert [c["name"] for c in inits] == ["podmedic-logdir", "podmedic-toolbox"]
    assert [c["resources"] for c in inits] == [resources] * 2
    assert stored["status"]["qosClass"] == ("Guaranteed" if resources["requests"] == resources["limits"] else "Burstable")
    assert stored["spec"]["containers"][0]["command"][0].startswith("/podmedic/")


@pytest.mark.parametrize("constraint", [{"min": {"cpu": "50m"}}, {"maxLimitRequestRatio": {"cpu": "2"}}],
                         ids=["min", "ratio"])
def test_a_pod_within_its_namespaces_limitrange_is_admitted(cluster, webhook, constraint):
    """A LimitRange (type Container) is validated by the API server after the mutating webhooks,
    over every container, podmedic's init containers included: their configured requests (cpu
    10m, below a min of 50m; a limit of 100m, ten times the request where the ratio allows 2)
    got every pod of such a namespace refused. podmedic now fits its init containers into the
    namespace's constraints, which its webhook watches like the namespaces."""
    ns = cluster.namespace({PREFIX + "inject": "enabled", PREFIX + "supervisor": "enabled"})
    cluster.apply({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "tenant", "namespace": ns},
                   "spec": {"limits": [{"type": "Container", **constraint}]}})
    fits = {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "150m", "memory": "64Mi"}}
    pod = _pod("limited", container={"resources": fits})
    deadline = time.monotonic() + 10  # the webhook learns the LimitRange from its watch
    while cluster.create_pod(ns, pod, dry_run=True).returncode != 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    stored = _created(cluster.create_pod(ns, pod))
    inits = stored["spec"]["initContainers"]
    assert [c["name"] for c in inits] == ["podmedic-logdir", "podmedic-toolbox"]
    assert stored["spec"]["containers"][0]["command"][0].startswith("/podmedic/")
    fitted = {"requests": {"cpu": "50m", "memory": "16Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}}
    assert [c["resources"] for c in inits] == [fitted] * 2  # min 50m; or 100m / 2


def test_a_limitrange_nothing_fits_skips_what_needs_the_init_containers(cluster, webhook):
    """A `max` below what the init containers need to start: none fits, so the features that need
    them are skipped with a warning naming the LimitRange, and the pod is admitted."""
    ns = cluster.namespace({PREFIX + "inject": "enabled", PREFIX + "supervisor": "enabled"})
    cluster.apply({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "tiny", "namespace": ns},
                   "spec": {"limits": [{"type": "Container", "max": {"memory": "8Mi"}}]}})
    pod = _pod("tiny", container={"resources": {"limits": {"cpu": "100m", "memory": "8Mi"}}})
    deadline = time.monotonic() + 10  # the webhook learns the LimitRange from its watch
    while "limitrange" not in cluster.create_pod(ns, pod, dry_run=True).stderr and time.monotonic() < deadline:
        time.sleep(0.2)
    done = cluster.create_pod(ns, pod)
    stored = _created(done)
    assert "LimitRange tiny: max memory 8Mi is below 32Mi, the least memory podmedic's init" in done.stderr
    assert "initContainers" not in stored["spec"]
    assert "readinessProbe" in stored["spec"]["containers"][0]


PULL_PREFIX = "pull.podmedic.io/"  # the pull-secret server's namespaces are not opted in for `webhook`


@pytest.fixture(scope="module")
def pull_webhook(cluster: Cluster, certs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A second server with toolbox.imagePullSecrets [regcred], registered beside `webhook`
    under its own prefix."""
    with second_webhook(cluster, certs_dir, tmp_path_factory.mktemp("it-pull"), "podmedic-pull", PULL_PREFIX,
                        "toolbox:\n  imagePullSecrets: [regcred]\n") as server:
        yield server


@contextmanager
def second_webhook(cluster: Cluster, certs_dir: Path, tmp: Path, name: str, prefix: str,
                   config: str = "") -> Iterator[Any]:
    """A server beside `webhook` with annotationPrefix `prefix` (so `webhook`'s namespaces are not
    opted in for it) and `config` added, registered as configuration `name`; unregistered before
    it stops (failurePolicy Fail would refuse every pod while it is down)."""
    path = tmp / "config.yaml"
    path.write_text(f"annotationPrefix: {prefix}\n{config}")
    server = start_server(tmp, certs_dir, "--kubeconfig", str(cluster.kubeconfig), "--config", str(path))
    try:
        register(cluster, server, certs_dir, name, prefix)
        yield server
    finally:
        cluster.kubectl("delete", "mutatingwebhookconfiguration", name, "--ignore-not-found")
        stop_server(server)


def test_the_service_accounts_pull_secrets_and_podmedics_are_both_stored(cluster, pull_webhook):
    """The ServiceAccount admission plugin copies the ServiceAccount's imagePullSecrets into a pod
    that lists none, and it runs before the mutating webhooks: podmedic saw the list (its marker
    appends to it, and did not create it) and the stored pod has both. Neither Secret exists: the
    API server does not look (the kubelet pulls without a missing one)."""
    ns = cluster.namespace({PULL_PREFIX + "inject": "enabled"})
    cluster.kubectl("-n", ns, "patch", "serviceaccount", "default", "-p",
                    json.dumps({"imagePullSecrets": [{"name": "sa-secret"}]}))
    pod = _created(cluster.create_pod(ns, _pod("sa-pull")))
    assert pod["spec"]["imagePullSecrets"] == [{"name": "sa-secret"}, {"name": "regcred"}]
    status = json.loads(pod["metadata"]["annotations"][PULL_PREFIX + "status"])
    assert status["version"] == 3 and status["pod"]["imagePullSecrets"] == ["regcred"]
    assert "/spec/imagePullSecrets" not in status["created"]  # the list was there when podmedic saw the pod
    assert [c["name"] for c in pod["spec"]["initContainers"]][:2] == ["podmedic-logdir", "podmedic-toolbox"]


def test_a_pod_that_lists_the_secret_is_not_given_it_twice(cluster, pull_webhook):
    ns = cluster.namespace({PULL_PREFIX + "inject": "enabled"})
    cluster.kubectl("-n", ns, "patch", "serviceaccount", "default", "-p",
                    json.dumps({"imagePullSecrets": [{"name": "sa-secret"}]}))
    pod = _created(cluster.create_pod(ns, _pod("own-pull", imagePullSecrets=[{"name": "regcred"}])))
    assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]  # the pod's own: no copy, no duplicate
    status = json.loads(pod["metadata"]["annotations"][PULL_PREFIX + "status"])
    assert status["version"] == 2 and "imagePullSecrets" not in status["pod"]
    assert "initContainers" in pod["spec"]


_DEFAULTING = {"type": "Container", "default": {"cpu": "500m", "memory": "512Mi"},
               "defaultRequest": {"cpu": "500m", "memory": "512Mi"}}


def _pod_level_in_defaulting_namespace(cluster: Cluster, memory: str,
                                       item: dict[str, Any] = _DEFAULTING) -> tuple[str, dict[str, Any]]:
    """A namespace whose LimitRange `item` defaults cpu and memory above the budget of a pod with
    pod-level resources (200m and `memory`), whose app sets small resources of its own; the pod is
    admitted without podmedic. Returns the namespace, once podmedic's webhook knows its LimitRange,
    and the pod."""
    ns = cluster.namespace({PREFIX + "inject": "enabled", PREFIX + "supervisor": "enabled"})
    cluster.apply({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "defaults", "namespace": ns},
                   "spec": {"limits": [item]}})
    budget = {"cpu": "200m", "memory": memory}
    small = {"requests": {"cpu": "50m", "memory": "8Mi"}, "limits": {"cpu": "100m", "memory": memory}}
    pod = _pod("podres-defaults", resources={"requests": budget, "limits": budget}, container={"resources": small})
    plain = {**pod, "metadata": {**pod["metadata"], "annotations": {PREFIX + "inject": "disabled"}}}
    _created(cluster.create_pod(ns, plain, dry_run=True))
    deadline = time.monotonic() + 10  # the webhook learns the LimitRange from its watch
    while cluster.create_pod(ns, pod, dry_run=True).returncode != 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    return ns, pod


@pytest.mark.parametrize("item", [_DEFAULTING, {"type": "Container", "max": {"cpu": "1", "memory": "1Gi"}}],
                         ids=["defaults", "max"])
def test_a_pod_with_pod_level_resources_in_a_defaulting_limitrange_is_admitted(cluster, webhook, item):
    """In a pod with pod-level resources podmedic's init containers carried no resources, so the
    API server's LimitRanger filled in the namespace's Container `default`/`defaultRequest`
    (500m, 512Mi; or the `max`, which the API server makes the defaults) after the webhooks, above
    the pod's budget (200m, 128Mi): a pod admitted without podmedic was refused with it ("must be
    greater than or equal to aggregate container requests of 500m"). They now set the configured
    resources, within both."""
    ns, pod = _pod_level_in_defaulting_namespace(cluster, "128Mi", item)
    stored = _created(cluster.create_pod(ns, pod))
    inits = stored["spec"]["initContainers"]
    assert [c["name"] for c in inits] == ["podmedic-logdir", "podmedic-toolbox"]
    assert stored["spec"]["containers"][0]["command"][0].startswith("/podmedic/")
    configured = {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}}
    assert [c["resources"] for c in inits] == [configured] * 2


def test_a_pod_level_budget_below_the_toolboxs_needs_skips_the_init_containers(cluster, webhook):
    """A pod whose memory (12Mi) is below what the init containers need (32Mi), where the LimitRange's
    defaults would not fit either: the features that need the init containers are skipped with a
    warning, and the pod is admitted."""
    ns, pod = _pod_level_in_defaulting_namespace(cluster, "12Mi")
    done = cluster.create_pod(ns, pod)
    stored = _created(done)
    assert "the pod's spec.resources: max memory 12Mi is below 32Mi, the least memory" in done.stderr
    assert "initContainers" not in stored["spec"]
    assert "readinessProbe" in stored["spec"]["containers"][0]


def _audit_of(server: Any, namespace: str, name: str) -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for line in reversed(server.audit_lines()):
            if line.get("namespace") == namespace and line.get("name") == name:
                return line
        time.sleep(0.05)
    raise AssertionError(f"no audit line for {namespace}/{name}")


ISTIO_STATUS = json.dumps({"initContainers": ["istio-init"], "containers": ["istio-proxy"], "volumes": [],
                           "imagePullSecrets": None, "revision": "default"})
ISTIO_PROXY = {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.26.0",  # no command: the image's
               "args": ["proxy", "sidecar"],
               "ports": [{"containerPort": 15090, "name": "http-envoy-prom", "protocol": "TCP"}],
               "readinessProbe": {"httpGet": {"path": "/healthz/ready", "port": 15021}},
               "env": [{"name": "ISTIO_KUBE_APP_PROBERS", "value": "{}"}]}


def test_a_pod_istio_injected_first_gets_no_network_probes_and_its_proxy_is_untouched(cluster, webhook):
    """The pod as Istio's injector (its configuration's name sorts before podmedic's) hands it on:
    istio-proxy beside the app, istio-init, sidecar.istio.io/status. Before: podmedic gave the app
    tcpSocket probes Istio never rewrote, and istio-proxy a liveness on 15090, a log mount and a
    preStop hook."""
    ns = cluster.namespace({PREFIX + "inject": "enabled", PREFIX + "supervisor": "enabled"})
    pod = _pod("meshed", initContainers=[{"name": "istio-init", "image": "docker.io/istio/proxyv2:1.26.0",
                                          "args": ["istio-iptables"]}])
    pod["spec"]["containers"].append(ISTIO_PROXY)
    pod["metadata"]["annotations"] = {"sidecar.istio.io/status": ISTIO_STATUS}
    done = cluster.create_pod(ns, pod)
    stored = _created(done)
    app, proxy = stored["spec"]["containers"]
    assert "readinessProbe" not in app and "exec" in app["livenessProbe"]  # the wrapper's `pmctl alive`
    assert app["command"][0].startswith("/podmedic/") and "podmedic-logs" in {m["name"] for m in app["volumeMounts"]}
    assert not {"livenessProbe", "lifecycle", "command"} & set(proxy)
    assert not any(m["name"].startswith("podmedic-") for m in proxy.get("volumeMounts", []))
    assert "before Istio's injector" in done.stderr  # kubectl prints the warning
    decisions = {(d.get("container"), d["feature"], d["reason"]) for d in _audit_of(webhook, ns, "meshed")["decisions"]}
    assert {("app", "probes", "mesh-probes"), ("app", "probes", "injected"),
            ("istio-proxy", "pod", "mesh-proxy")} <= decisions


FIRST_PREFIX = "first.podmedic.io/"


@pytest.fixture(scope="module")
def first_webhook(cluster: Cluster, certs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A second server registered under Istio's injector's configuration name, after `webhook`
    was: which of the two runs first is the API server's order, not the registrations'."""
    with second_webhook(cluster, certs_dir, tmp_path_factory.mktemp("it-first"), "istio-sidecar-injector",
                        FIRST_PREFIX) as server:
        yield server


def test_configurations_are_called_in_name_order(cluster, webhook, first_webhook):
    """Measured: `istio-sidecar-injector` (registered last) is called before `podmedic`, and
    podmedic sees what it added (another podmedic's init containers: the pod is skipped whole as
    copy-of-injected, never injected twice); neither is called again (reinvocationPolicy Never).
    So a mesh injector's changes reach podmedic, never the reverse."""
    ns = cluster.namespace({PREFIX + "inject": "enabled", FIRST_PREFIX + "inject": "enabled"})
    stored = _created(cluster.create_pod(ns, _pod("ordered")))
    first = json.loads(stored["metadata"]["annotations"][FIRST_PREFIX + "status"])
    assert "readinessProbe" in first["containers"]["app"]["probes"]
    seen = {(d["feature"], d["reason"]) for d in _audit_of(webhook, ns, "ordered")["decisions"]}
    assert ("pod", "copy-of-injected") in seen, seen
    assert not any(key.startswith(PREFIX) for key in stored["metadata"]["annotations"])
    assert len([line for line in webhook.audit_lines() if line.get("name") == "ordered"]) == 1


# -- the differential hunt: the same pod with and without podmedic, through the whole chain ----

CHAIN_EXAMPLES = int(os.environ.get("PODMEDIC_CHAIN_EXAMPLES", "50"))
CPU = ["10m", "25m", "50m", "100m", "250m", "500m", "1", "2"]
MEMORY = ["8Mi", "16Mi", "32Mi", "64Mi", "128Mi", "256Mi", "1Gi"]
RESTRICTED = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True,
              "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}}


class Rest:
    """The API server over HTTP, without a kubectl process per call: a dry-run costs ~10 ms, so
    a hunt of hundreds of examples fits in `make test`."""

    def __init__(self, api: kubeapi.KubeAPI):
        self.url = api.url
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.verify = str(api.ca)
        self.session.headers["Authorization"] = "Bearer " + api.token_file.read_text().strip()

    def call(self, method: str, path: str, body: Any = None, **params: str) -> tuple[int, dict[str, Any]]:
        answer = self.session.request(method, self.url + path, json=body, params=params, timeout=30,
                                      headers={"Content-Type": "application/merge-patch+json"} if method == "PATCH" else None)
        return answer.status_code, answer.json()


def _levels(draw: Any, scale: list[str], count: int) -> list[str]:
    """`count` values of `scale`, ascending (repeats allowed): min <= defaultRequest <= default <= max."""
    return sorted(draw(st.lists(st.sampled_from(scale), min_size=count, max_size=count)), key=scale.index)


@st.composite
def limit_ranges(draw: Any) -> dict[str, Any] | None:
    """A valid Container item: per resource, some of min <= defaultRequest <= default <= max, and
    maybe a maxLimitRequestRatio (max/min allows it when both are set)."""
    if not draw(st.booleans()):
        return None
    item: dict[str, Any] = {"type": "Container"}
    for name, scale in (("cpu", CPU), ("memory", MEMORY)):
        fields = [f for f in ("min", "defaultRequest", "default", "max") if draw(st.booleans())]
        for field, value in zip(fields, _levels(draw, scale, len(fields))):
            item.setdefault(field, {})[name] = value
        if draw(st.integers(0, 3)) == 0:
            item.setdefault("maxLimitRequestRatio", {})[name] = draw(st.sampled_from(["1", "2", "4", "10"]))
    return item


@st.composite
def quotas(draw: Any) -> tuple[dict[str, str], list[str]] | None:
    if not draw(st.booleans()):
        return None
    hard = {}
    for kind in ("requests", "limits"):
        for name, scale in (("cpu", CPU[3:]), ("memory", MEMORY[2:])):
            if draw(st.booleans()):
                hard[f"{kind}.{name}"] = draw(st.sampled_from(scale))
    if draw(st.booleans()):
        hard["pods"] = draw(st.sampled_from(["0", "5"]))
    scopes = draw(st.sampled_from([[], ["NotBestEffort"], ["BestEffort"]]))
    if scopes == ["BestEffort"]:  # the API server allows only `pods` under that scope
        hard = {"pods": hard.get("pods", "0")}
    return (hard, scopes) if hard else None


@st.composite
def resources(draw: Any, cpu: list[str] = CPU, memory: list[str] = MEMORY) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, scale in (("cpu", cpu), ("memory", memory)):
        request, limit = draw(st.sampled_from([None, *scale])), draw(st.sampled_from([None, *scale]))
        if request and limit and scale.index(request) > scale.index(limit):
            request, limit = limit, request  # request > limit is refused with or without podmedic
        if request:
            out.setdefault("requests", {})[name] = request
        if limit:
            out.setdefault("limits", {})[name] = limit
    return out


@st.composite
def chain_containers(draw: Any, name: str, restricted: bool) -> dict[str, Any]:
    c: dict[str, Any] = {"name": name, "image": "registry.example/app:1"}
    if draw(st.integers(0, 3)):
        c["command"] = ["/app", "--serve"]
    port = draw(st.sampled_from([None, 8080, 9090]))
    if port:
        c["ports"] = [{"containerPort": port, **({"name": draw(st.sampled_from(["http", "metrics"]))}
                                                  if draw(st.booleans()) else {})}]
        if draw(st.integers(0, 3)) == 0:
            c["readinessProbe"] = {"httpGet": {"path": "/ready", "port": port}}
    if (spec := draw(resources())):
        c["resources"] = spec
    if restricted:
        c["securityContext"] = RESTRICTED
    return c


@st.composite
def chain_pods(draw: Any) -> dict[str, Any]:
    """1-3 app containers, maybe an init container and a native sidecar, resources from none to
    all, pod-level resources sometimes, restricted-compliant or not."""
    restricted = draw(st.booleans())
    names = ["app", "worker", "metrics"][:draw(st.integers(1, 3))]
    spec: dict[str, Any] = {"containers": [draw(chain_containers(n, restricted)) for n in names]}
    inits = []
    if draw(st.booleans()):
        init = draw(chain_containers("migrate", restricted))
        init.pop("readinessProbe", None)  # only sidecars may have probes among init containers
        inits.append(init)
    if draw(st.booleans()):
        inits.append({**draw(chain_containers("proxy", restricted)), "restartPolicy": "Always"})
    if inits:
        spec["initContainers"] = inits
    if draw(st.integers(0, 3)) == 0:
        spec["resources"] = draw(resources(CPU[4:], MEMORY[4:]))
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "diff"}, "spec": spec}


namespace_annotations = st.fixed_dictionaries({}, optional={
    **{PREFIX + f: st.sampled_from(["enabled", "disabled"]) for f in ("probes", "supervisor", "logs", "forensics")},
    PREFIX + "readiness-path": st.sampled_from(["/healthz", "/ready"]),
    PREFIX + "probe-port": st.sampled_from(["8080", "http", "metrics", "9999"]),
})


def _verdict(status: int, body: dict[str, Any]) -> str:
    """'accepted', or which part of the chain refused the pod (its message names containers and
    amounts, which podmedic's additions change: the part is the reason), or the fields a
    validation error names."""
    if status == 201:
        return "accepted"
    message = body.get("message", "")
    for marker, part in (("exceeded quota", "quota"), ("failed quota", "quota"), ("per Container", "limitrange"),
                         ("per Pod", "limitrange"), ("violates PodSecurity", "pod-security"),
                         ("admission webhook", "webhook")):
        if marker in message:
            return f"{part} ({status} {body.get('reason')})"
    unindexed = re.sub(r"\[\d+\]", "[*]", message)  # podmedic's init containers shift the indices
    fields = sorted(set(re.findall(r"spec\.[\w.*\[\]-]+", unindexed)))  # listed in map order: random
    return f"{body.get('reason')}: {', '.join(fields) or unindexed}"


class Chain:
    """One namespace per example with the drawn constraints, created NOT opted in; the opt-in
    annotations come last and the hunt waits until the webhook's audit shows it saw them. Its
    LimitRange watch is another watch, with no order between the two: a mismatch is asked once
    more after a second (the test)."""

    def __init__(self, rest: Rest, webhook: Any):
        self.rest, self.webhook = rest, webhook

    def namespace(self, annotations: dict[str, str], level: str | None, limit: dict[str, Any] | None,
                  quota: tuple[dict[str, str], list[str]] | None) -> str | None:
        """The namespace's name, or None when the API server refuses the drawn constraints."""
        name = "chain-" + uuid.uuid4().hex[:8]
        labels = {"pod-security.kubernetes.io/enforce": level} if level else {}
        self._done(("POST", "/api/v1/namespaces", {"metadata": {"name": name, "labels": labels}}))
        self._done(("POST", f"/api/v1/namespaces/{name}/serviceaccounts", {"metadata": {"name": "default"}}))
        if limit and self.rest.call("POST", f"/api/v1/namespaces/{name}/limitranges", {
                "metadata": {"name": "tenant"}, "spec": {"limits": [limit]}})[0] != 201:
            return None
        if quota:
            hard, scopes = quota
            self._done(("POST", f"/api/v1/namespaces/{name}/resourcequotas",
                        {"metadata": {"name": "room"}, "spec": {"hard": hard, "scopes": scopes}}))
            self._done(("PATCH", f"/api/v1/namespaces/{name}/resourcequotas/room/status",
                        {"status": {"hard": hard, "used": dict.fromkeys(hard, "0")}}))
        self._done(("PATCH", f"/api/v1/namespaces/{name}",
                    {"metadata": {"annotations": {PREFIX + "inject": "enabled", **annotations}}}))
        return name

    def _done(self, call: tuple[str, str, Any]) -> None:
        """A setup call the API server must take: a refused one left the example without the
        constraint it drew (a BestEffort quota with requests once ran every such example bare)."""
        status, body = self.rest.call(*call)
        assert status in (200, 201), f"{call[0]} {call[1]}: {status} {body.get('message')}"

    def create(self, namespace: str, pod: dict[str, Any], podmedic: bool) -> str:
        if not podmedic:
            pod = {**pod, "metadata": {**pod["metadata"], "annotations": {PREFIX + "inject": "disabled"}}}
        return _verdict(*self.rest.call("POST", f"/api/v1/namespaces/{namespace}/pods", pod, dryRun="All"))

    def with_podmedic(self, namespace: str, pod: dict[str, Any]) -> str:
        """The verdict once the webhook reviewed the pod with the namespace's opt-in (a few polls
        at most); a webhook that never does fails the example (the pod went through unreviewed,
        and its verdict would equal the plain one)."""
        deadline = time.monotonic() + 10
        while True:
            verdict = self.create(namespace, pod, podmedic=True)
            if self._reviewed(namespace):
                return verdict
            if time.monotonic() > deadline:
                pytest.fail(f"the webhook never reviewed a pod of {namespace} with its opt-in")
            time.sleep(0.1)

    def _reviewed(self, namespace: str) -> bool:
        """The webhook's last audit line of the namespace: the review ran the features, not a
        skip of the whole pod (namespace unknown, not enabled or not synced, a lookup that failed,
        an answer past its deadline)."""
        lines = [line for line in self.webhook.audit_lines() if line.get("namespace") == namespace]
        return bool(lines) and lines[-1].get("outcome") in ("patched", "unchanged") and not any(
            d.get("reason", "").startswith("namespace-") for d in lines[-1]["decisions"])


@pytest.fixture(scope="module")
def chain(cluster: Cluster, webhook: Any) -> Chain:
    return Chain(Rest(cluster.api), webhook)


@settings(max_examples=CHAIN_EXAMPLES, deadline=None, derandomize=not os.environ.get("PODMEDIC_FUZZ_RANDOM"),
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(annotations=namespace_annotations, level=st.sampled_from([None, "baseline", "restricted"]),
       limit=limit_ranges(), quota=quotas(), pod=chain_pods())
def test_podmedic_never_turns_an_accepted_pod_into_a_refused_one(chain, annotations, level, limit, quota, pod):
    """Differential, through the real API server's whole admission chain (defaults of 1.36:
    LimitRanger, ServiceAccount, PodSecurity, ResourceQuota, ...): the same pod, dry-run in the
    same namespace with podmedic (opted in with drawn settings) and without (opted out by
    annotation, so the webhook is not called). A pod refused without podmedic may be refused with
    it only by the same part of the chain; one accepted without it must be accepted with it.
    `make test` draws CHAIN_EXAMPLES namespaces and pods; PODMEDIC_CHAIN_EXAMPLES draws more."""
    namespace = chain.namespace(annotations, level, limit, quota)
    assume(namespace is not None)
    plain = chain.create(namespace, pod, podmedic=False)
    first = injected = chain.with_podmedic(namespace, pod)
    if injected != plain:
        time.sleep(1)  # the LimitRange's watch event late on a loaded machine: ask once more
        injected = chain.create(namespace, pod, podmedic=True)
    assert injected == plain, f"without podmedic: {plain}; with podmedic: {injected} (first: {first})"

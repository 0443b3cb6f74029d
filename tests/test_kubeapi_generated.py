"""Generated pods (tests/podgen.py, fixed seeds) through podmedic's admission core and the real
kube-apiserver 1.36: every pod the API server accepts as written must be accepted with podmedic's
patch too (podmedic skips, with a reason, what it cannot inject safely), keep every probe, hook,
env var, envFrom, port, mount, resource and securityContext the app wrote (an exec preStop is
chained: the app's command runs after podmedic's, unchanged), need no second injection once
stored, and never show a Secret's value in a warning or the audit record.

The patch comes from the same `handle()` the server and the CLI run, with the namespace as the
engine sees it; the API server's dry-run create (admission, defaulting and validation, Pod
Security included) judges both pods. About 5 s per 300 pods.
"""

from __future__ import annotations

import base64
import copy
import json
import uuid
from collections.abc import Iterator
from typing import Any

import jsonpatch
import pytest
import requests

from tests import kubeapi, podgen
from tests.test_integration import Cluster, cluster  # noqa: F401  (session fixture)
from webhook.admission.handle import handle
from webhook.cli.config import load
from webhook.engine.decisions import Reason
from webhook.engine.namespace import Lookup, Namespace

pytestmark = pytest.mark.integration

CONFIG = load()
PODS_PER_SEED = 300
# seed -> the namespace's enforced Pod Security level (None: no label)
SEEDS = {1: None, 2: None, 3: "baseline"}
HANDLERS = ("readinessProbe", "livenessProbe", "startupProbe")
KEPT = ("ports", "resources", "securityContext", "restartPolicy", "image", "command", "args")
LISTS = ("env", "envFrom", "volumeMounts")  # the app's entries first, as written; podmedic's after them
PRESTOP_MARK = "podmedic-prestop"  # in the chained preStop, the app's command follows it


@pytest.fixture(scope="module")
def http(cluster: Cluster) -> Iterator[requests.Session]:  # noqa: F811
    with kubeapi.session(cluster.api) as session:
        yield session


class Server:
    def __init__(self, http: requests.Session, url: str, namespace: str):
        self.http, self.pods = http, f"{url}/api/v1/namespaces/{namespace}/pods?dryRun=All"

    def create(self, pod: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """The API server's answer to a dry-run create: 201 and the pod as it would be stored."""
        done = self.http.post(self.pods, json=pod, timeout=30)
        return done.status_code, done.json()


def as_reviewed(stored: dict[str, Any]) -> dict[str, Any]:
    """The pod as the mutating webhooks see it: defaulted, ServiceAccount admission done, no uid,
    creation time or status yet (set after admission)."""
    pod = copy.deepcopy(stored)
    pod.pop("status", None)
    for field in ("uid", "creationTimestamp", "resourceVersion", "managedFields"):
        pod["metadata"].pop(field, None)
    return pod


def review(pod: dict[str, Any], lookup: Lookup) -> tuple[list[dict[str, Any]], dict[str, Any], str]:
    """podmedic's patch, its answer and everything it tells (warnings, audit record)."""
    request = {"uid": str(uuid.uuid4()), "kind": {"group": "", "version": "v1", "kind": "Pod"},
               "resource": {"group": "", "version": "v1", "resource": "pods"}, "operation": "CREATE",
               "namespace": lookup.namespace.name if lookup.namespace else "", "name": pod["metadata"]["name"],
               "userInfo": {"username": "alice"}, "dryRun": True, "object": copy.deepcopy(pod)}
    body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
    answer = handle(body.encode(), "application/json", lambda _: lookup, CONFIG)
    assert answer.status == 200, answer.body
    response: dict[str, Any] = answer.body["response"]  # type: ignore[typeddict-item]
    ops = json.loads(base64.b64decode(response["patch"])) if "patch" in response else []
    told = json.dumps([response.get("warnings"), response.get("auditAnnotations"), answer.audit])
    return ops, response, told


def app_handler(written: dict[str, Any], hook: str, stored: dict[str, Any] | None) -> dict[str, Any] | None:
    """The app's own hook as it is in the stored pod: a chained exec preStop gives back its command."""
    command = ((stored or {}).get("exec") or {}).get("command") or []
    if hook == "preStop" and "exec" in written and PRESTOP_MARK in command:
        return {"exec": {"command": command[command.index(PRESTOP_MARK) + 1:]}}
    return stored


def changed(plain: dict[str, Any], injected: dict[str, Any]) -> list[str]:
    """What of the app's own the injected pod does not keep as the API server stored it without."""
    out = [f"spec.{k}" for k, v in plain["spec"].items()
           if k not in ("containers", "initContainers", "volumes") and injected["spec"].get(k) != v]
    volumes = {v["name"]: v for v in injected["spec"].get("volumes", [])}
    out += [f"volume {v['name']}" for v in plain["spec"].get("volumes", []) if volumes.get(v["name"]) != v]
    for kind in ("containers", "initContainers"):
        after = {c["name"]: c for c in injected["spec"].get(kind, [])}
        for c in plain["spec"].get(kind, []):
            a = after.get(c["name"], {})
            wrapped = a.get("command", [""])[0].startswith("/podmedic/")  # the supervisor: checked elsewhere
            out += [f"{c['name']}.{f}" for f in HANDLERS if f in c and a.get(f) != c[f]]
            out += [f"{c['name']}.lifecycle.{hook}" for hook, h in (c.get("lifecycle") or {}).items()
                    if app_handler(h, hook, (a.get("lifecycle") or {}).get(hook)) != h]
            out += [f"{c['name']}.{f}" for f in LISTS if a.get(f, [])[:len(c.get(f, []))] != c.get(f, [])]
            out += [f"{c['name']}.{f}" for f in KEPT
                    if a.get(f) != c.get(f) and not (wrapped and f in ("command", "args"))]
    return out


def test_podgen_is_seeded():
    assert podgen.pods(7, 20) == podgen.pods(7, 20)


@pytest.mark.parametrize("seed", SEEDS)
def test_generated_pods_are_accepted_kept_and_injected_once(cluster, http, seed):  # noqa: F811
    labels = {"pod-security.kubernetes.io/enforce": SEEDS[seed]} if SEEDS[seed] else {}
    namespace = cluster.namespace({}, labels)  # not opted in at the API server: podmedic runs here, offline
    lookup = Lookup(Namespace(namespace, {podgen.PREFIX + "inject": "enabled"}, labels), None)
    server = Server(http, cluster.api.url, namespace)
    accepted = patched = 0
    for pod in podgen.pods(seed, PODS_PER_SEED):
        name = pod["metadata"]["name"]
        status, plain = server.create(pod)
        if status != 201:
            assert status in (400, 403, 422), plain  # an invalid generated pod: refused as written
            continue
        accepted += 1
        ops, response, told = review(as_reviewed(plain), lookup)
        assert podgen.SECRET not in told, name
        assert Reason.VERIFY_FAILED.text not in json.dumps(response.get("warnings")), (name, response["warnings"])
        if not ops:
            continue
        patched += 1
        status, injected = server.create(jsonpatch.apply_patch(as_reviewed(plain), ops))
        assert status == 201, (name, injected.get("message"), response.get("warnings"))
        assert changed(plain, injected) == [], name
        again, _, _ = review(as_reviewed(injected), lookup)
        assert again == [], name
    assert accepted >= PODS_PER_SEED // 5 and patched >= accepted * 3 // 4, (accepted, patched)

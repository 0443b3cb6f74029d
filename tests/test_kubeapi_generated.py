"""Generated pods (tests/podgen.py, fixed seeds) through podmedic's admission core and the real
kube-apiserver 1.36: every pod the API server accepts as written must be accepted with podmedic's
patch too (podmedic skips, with a reason, what it cannot inject safely), keep every probe, hook,
env var, envFrom, port, mount, resource, securityContext, label, annotation, owner and name the app
wrote (an exec preStop is chained: the app's command runs after podmedic's, unchanged; a wrapped
command runs the app's after the supervisor's `--`, its args untouched), hide none of them (no env
var of the app's name after it, no mount at, inside or above one of the app's, no second volume of
a name), need no second injection once stored, never show a Secret's value in a warning or the
audit record, and make no decision the input does not explain (EXPLAINED: never mutator-error or
verify-failed); a Linux pod without podmedic annotations or clashes in a plain namespace is injected.

The patch comes from the same `handle()` the server and the CLI run, with the namespace as the
engine sees it; the API server's dry-run create (admission, defaulting and validation, Pod
Security included) judges both pods. About 5 s per 300 pods.
"""

from __future__ import annotations

import base64
import copy
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import jsonpatch
import pytest
import requests

from tests import kubeapi, podgen
from tests.test_integration import Cluster, cluster  # noqa: F401  (session fixture)
from webhook.admission.handle import handle
from webhook.cli.config import load
from webhook.engine.decisions import Reason
from webhook.engine.keys import parse_command
from webhook.engine.namespace import Lookup, Namespace
from webhook.toolbox import argv as toolbox

pytestmark = pytest.mark.integration

CONFIG = load()
PODS_PER_SEED = 300
# seed -> the namespace's enforced Pod Security level (None: no label)
SEEDS = {1: None, 2: None, 3: "baseline"}
HANDLERS = ("readinessProbe", "livenessProbe", "startupProbe")
KEPT = ("ports", "resources", "securityContext", "restartPolicy", "image", "args")  # command: app_command
# the app's entries first, as written; podmedic's after them, hiding none of them (by this key)
LISTS = (("env", "name"), ("envFrom", None), ("volumeMounts", "mountPath"))
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


def review(pod: dict[str, Any], lookup: Lookup) -> tuple[list[dict[str, Any]], dict[str, Any], str, dict[str, Any]]:
    """podmedic's patch, its answer, everything it tells as one text (warnings, audit record) and
    the audit record, whose decisions the generated input must explain."""
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
    assert answer.audit is not None
    return ops, response, told, answer.audit


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
    out += metadata_changed(plain["metadata"], injected["metadata"])
    out += [f"volumes {name}" for name in shadowed(plain["spec"], injected["spec"], "volumes", "name")]
    for kind in ("containers", "initContainers"):
        after = {c["name"]: c for c in injected["spec"].get(kind, [])}
        for c in plain["spec"].get(kind, []):
            a = after.get(c["name"], {})
            out += [f"{c['name']}.{f}" for f in HANDLERS if f in c and a.get(f) != c[f]]
            out += [f"{c['name']}.lifecycle.{hook}" for hook, h in (c.get("lifecycle") or {}).items()
                    if app_handler(h, hook, (a.get("lifecycle") or {}).get(hook)) != h]
            out += [f"{c['name']}.{f} {what}" for f, key in LISTS for what in shadowed(c, a, f, key)]
            out += [f"{c['name']}.{f}" for f in KEPT if a.get(f) != c.get(f)]
            out += [f"{c['name']}.command"] if app_command(c, plain, a) != c.get("command") else []
    return out


def shadowed(app: dict[str, Any], injected: dict[str, Any], field: str, key: str | None) -> list[str]:
    """The app's entries of a list that the injected object does not keep first, as written, or
    that one of podmedic's entries after them hides: the kubelet takes the last env var of a name;
    a mount at, inside or above one of the app's hides it or needs a mount point in it (the API
    server refuses only the same mountPath as written); a volume's name is its identity. envFrom
    (key None): podmedic adds none, its variables would shadow the app's envFrom ones unseen."""
    mine, theirs = app.get(field, []), injected.get(field, [])
    if theirs[:len(mine)] != mine:
        return ["not kept first"]
    added = theirs[len(mine):]
    if key is None:
        return [f"added {e}" for e in added]
    if key == "mountPath":
        return [m["mountPath"] for m in mine if any(nested(m["mountPath"], p["mountPath"]) for p in added)]
    return [e[key] for e in mine if e[key] in {p[key] for p in added}]


def nested(one: str, other: str) -> bool:
    """Are two mount paths the same, or one inside the other, as the runtime sees them?"""
    a, b = [part for part in one.split("/") if part], [part for part in other.split("/") if part]
    return a[:len(b)] == b or b[:len(a)] == a


def metadata_changed(plain: dict[str, Any], injected: dict[str, Any]) -> list[str]:
    """The app's metadata, but for what the API server sets per create and podmedic's own keys:
    its marker, and the safe-to-evict list, where it only appends its volumes to the app's."""
    per_create = ("uid", "creationTimestamp", "resourceVersion", "managedFields", "annotations")
    out = [f"metadata.{k}" for k in {*plain, *injected} - set(per_create) if plain.get(k) != injected.get(k)]
    mine, theirs = plain.get("annotations", {}), dict(injected.get("annotations", {}))
    theirs.pop(CONFIG.status_key, None)
    listed = theirs.pop(podgen.SAFE_TO_EVICT, None)
    app_listed = mine.get(podgen.SAFE_TO_EVICT)
    if app_listed is not None:
        app, now = _entries(app_listed), _entries(listed)
        if now[:len(app)] != app or not set(now[len(app):]) <= set(podgen.CLASHING_VOLUMES):
            out.append(f"metadata.annotations[{podgen.SAFE_TO_EVICT}]")
    return out + [f"metadata.annotations[{k}]" for k in {*mine, *theirs} - {podgen.SAFE_TO_EVICT}
                  if mine.get(k) != theirs.get(k)]


def _entries(listed: str | None) -> list[str]:
    """A safe-to-evict list's volume names, as the autoscaler reads it: a text prefix passed for
    an empty list and for `data` against `database,...`."""
    return [name.strip() for name in (listed or "").split(",") if name.strip()]


def app_command(app: dict[str, Any], plain: dict[str, Any], injected: dict[str, Any]) -> Any:
    """The app's command as the injected container runs it: the supervisor's argv ends with `--`
    and what the app ran (its command, or the entrypoint annotation for one without: its args
    follow, unchanged) after the wrapper's `--key=value` flags (webhook/toolbox/argv.py)."""
    command = injected.get("command")
    head = toolbox.supervise_command(name=app["name"], flags=(), app=())[:-1]  # up to its flags
    if not command or command[:len(head)] != head:
        return command
    rest = command[len(head):]
    end = rest.index("--") if "--" in rest else len(rest)
    if not all(flag.startswith("--") and "=" in flag for flag in rest[:end]):
        return command
    ran = rest[end + 1:]
    annotations = plain["metadata"].get("annotations", {})
    entrypoint = annotations.get(f"{podgen.PREFIX}entrypoint.{app['name']}", annotations.get(f"{podgen.PREFIX}entrypoint"))
    return None if "command" not in app and ran == _entrypoint(entrypoint) else ran


def _entrypoint(text: str | None) -> list[str] | None:
    """The annotation's command as podmedic reads it (docs/annotations: JSON or words), or None."""
    try:
        return parse_command(text) if text is not None else None
    except ValueError:
        return None


def _annotated(pod: dict[str, Any], decision: dict[str, Any]) -> bool:
    return any(k.startswith(podgen.PREFIX) for k in pod["metadata"].get("annotations", {}))


def _container(pod: dict[str, Any], decision: dict[str, Any]) -> dict[str, Any]:
    spec = pod["spec"]
    return next((c for c in spec["containers"] + spec.get("initContainers", []) if c["name"] == decision.get("container")), {})


def _clashing_mount(pod: dict[str, Any], decision: dict[str, Any]) -> bool:
    return any(m["mountPath"] in podgen.CLASHING_MOUNTS for m in _container(pod, decision).get("volumeMounts", []))


def _clashing_volume(pod: dict[str, Any], decision: dict[str, Any]) -> bool:
    return any(v["name"] in podgen.CLASHING_VOLUMES for v in pod["spec"].get("volumes", []))


def _clashes(pod: dict[str, Any], decision: dict[str, Any]) -> bool:
    """Does the pod have a volume of podmedic's name, or a container a mount where podmedic's go?"""
    return _clashing_volume(pod, decision) or any(_clashing_mount(pod, {"container": c["name"]})
                                                   for c in pod["spec"]["containers"])


# Every reason the generated input can explain, and what in it does (the written pod, the decision);
# a reason not here -- mutator-error, verify-failed, malformed-pod above all -- is a defect.
EXPLAINED: dict[str, Callable[[dict[str, Any], dict[str, Any]], bool]] = {
    Reason.INJECTED.code: lambda pod, d: True,
    Reason.POD_OPTED_OUT.code: lambda pod, d: pod["metadata"]["annotations"].get(podgen.PREFIX + "inject") == "disabled",
    Reason.FEATURE_DISABLED.code: lambda pod, d: d["level"] == "global" or _annotated(pod, d),
    Reason.INVALID_VALUE.code: _annotated,
    Reason.UNKNOWN_KEY.code: _annotated,
    Reason.UNKNOWN_CONTAINER.code: _annotated,
    Reason.NOT_OVERRIDABLE.code: _annotated,
    Reason.NAMED_PORT_NOT_FOUND.code: _annotated,
    Reason.HAS_OWN_PROBE.code: lambda pod, d: any(f in _container(pod, d) for f in HANDLERS),
    Reason.NO_PROBE_PORT.code: lambda pod, d: _annotated(pod, d) or not any(
        p.get("protocol", "TCP") == "TCP" for p in _container(pod, d).get("ports", [])),
    Reason.PROBE_PATH_NOT_HTTP.code: _annotated,
    Reason.ENTRYPOINT_UNKNOWN.code: lambda pod, d: "command" not in _container(pod, d),
    Reason.PRESTOP_NOT_EXEC.code: lambda pod, d: "exec" not in _container(pod, d)["lifecycle"]["preStop"],
    Reason.GRACE_TOO_SHORT.code: lambda pod, d: _annotated(pod, d) or pod["spec"].get("terminationGracePeriodSeconds", 30) < 30,
    Reason.NOT_LINUX.code: lambda pod, d: pod["spec"].get("os", {}).get("name") == "windows",
    Reason.MOUNT_CONFLICT.code: _clashing_mount,
    Reason.ENV_CONFLICT.code: lambda pod, d: any(e["name"] in podgen.CLASHING_ENV for e in _container(pod, d).get("env", [])),
    Reason.NAME_CONFLICT.code: _clashing_volume,
    Reason.COPY_OF_INJECTED.code: _clashes,
}  # psa-forbids-hostpath depends on the namespace's Pod Security level, not the pod: unexplained()


def unexplained(pod: dict[str, Any], audit: dict[str, Any], enforced: str | None) -> list[dict[str, Any]]:
    """The decisions that nothing in the written pod or its namespace explains."""
    explained = {**EXPLAINED, Reason.PSA_FORBIDS_HOSTPATH.code: lambda pod, d: enforced in ("baseline", "restricted")}
    return [d for d in audit["decisions"] if d["reason"] not in explained or not explained[d["reason"]](pod, d)]


def plain_app(pod: dict[str, Any]) -> bool:
    """A Linux pod with no podmedic annotation and nothing of podmedic's names: always injected."""
    return not _annotated(pod, {}) and not _clashes(pod, {}) and pod["spec"].get("os", {}).get("name") != "windows"


def test_podgen_is_seeded():
    assert podgen.pods(7, 20) == podgen.pods(7, 20)


def test_a_safe_to_evict_list_is_compared_by_entries():
    """A text prefix passed an app list `data` rewritten to `database,...` and an empty one to `cache,...`."""
    def changed(app: str, written: str) -> list[str]:
        return metadata_changed({"annotations": {podgen.SAFE_TO_EVICT: app}},
                                {"annotations": {podgen.SAFE_TO_EVICT: written}})
    assert changed("data", "database,podmedic-state") and changed("", "cache,podmedic-state")
    assert not changed("data, ", "data,podmedic-state,podmedic-logs") and not changed("", "podmedic-state")


@pytest.mark.parametrize("seed", SEEDS)
def test_generated_pods_are_accepted_kept_and_injected_once(cluster, http, seed):  # noqa: F811
    labels = {"pod-security.kubernetes.io/enforce": SEEDS[seed]} if SEEDS[seed] else {}
    namespace = cluster.namespace({}, labels)  # not opted in at the API server: podmedic runs here, offline
    lookup = Lookup(Namespace(namespace, {podgen.PREFIX + "inject": "enabled"}, labels), None)
    server = Server(http, cluster.api.url, namespace)
    accepted = 0
    for pod in podgen.pods(seed, PODS_PER_SEED):
        name = pod["metadata"]["name"]
        status, plain = server.create(pod)
        if status != 201:
            assert status in (400, 403, 422), plain  # an invalid generated pod: refused as written
            continue
        accepted += 1
        ops, response, told, audit = review(as_reviewed(plain), lookup)
        assert podgen.SECRET not in told, name
        assert unexplained(pod, audit, SEEDS[seed]) == [], name
        assert ops or SEEDS[seed] or not plain_app(pod), (name, audit["decisions"])
        if not ops:
            continue
        status, injected = server.create(jsonpatch.apply_patch(as_reviewed(plain), ops))
        assert status == 201, (name, injected.get("message"), response.get("warnings"))
        assert changed(plain, injected) == [], name
        again, _, _, _ = review(as_reviewed(injected), lookup)
        assert again == [], name
    assert accepted >= PODS_PER_SEED // 5, accepted

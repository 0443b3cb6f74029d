"""Pod shapes and AdmissionReview builders shared by the tests (the mutation test matrix)."""

from __future__ import annotations

import base64
import copy
import json
import uuid
from typing import Any

import jsonpatch
import kubernetes_validate

from webhook.admission import verify

K8S_VERSION = "1.36.0"


def container(name: str = "app", *, command: list[str] | None = None, args: list[str] | None = None,
              ports: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    c: dict[str, Any] = {"name": name, "image": f"registry.example/{name}:1.0"}
    if command is not None:
        c["command"] = command
    if args is not None:
        c["args"] = args
    if ports is not None:
        c["ports"] = ports
    c.update(extra)
    return c


def pod(*containers: dict[str, Any], name: str | None = "web", annotations: dict[str, str] | None = None,
        **spec: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"namespace": "demo"}
    if name:
        metadata["name"] = name
    if annotations is not None:
        metadata["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata,
            "spec": {"containers": list(containers) or [container(ports=[{"containerPort": 8080}])], **spec}}


def controller_pod() -> dict[str, Any]:
    """What a ReplicaSet sends: generateName, no name, no uid, ownerReferences, managedFields,
    and the ServiceAccount admission's projected token volume and mounts."""
    p = pod(container("web", command=["/app/server"], args=["--port=8080"],
                      ports=[{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                      volumeMounts=[{"name": "kube-api-access-abcde", "readOnly": True,
                                     "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]),
            name=None, serviceAccountName="default",
            volumes=[{"name": "kube-api-access-abcde", "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}]}}])
    p["metadata"].update({
        "generateName": "web-7d9f8b6c5d-",
        "labels": {"app": "web", "pod-template-hash": "7d9f8b6c5d"},
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9f8b6c5d",
                             "uid": str(uuid.uuid4()), "controller": True, "blockOwnerDeletion": True}],
        "managedFields": [{"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
                           "time": "2026-11-25T00:00:00Z", "fieldsType": "FieldsV1",
                           "fieldsV1": {"f:metadata": {"f:generateName": {}, "f:labels": {".": {}, "f:app": {}}},
                                        "f:spec": {"f:containers": {'k:{"name":"web"}': {".": {}, "f:image": {}}}}}}],
    })
    return p


def review(obj: dict[str, Any] | None, *, namespace: str = "demo", operation: str = "CREATE",
           kind: str = "Pod", dry_run: bool = False, sub_resource: str | None = None) -> dict[str, Any]:
    request: dict[str, Any] = {
        "uid": str(uuid.uuid4()),
        "kind": {"group": "", "version": "v1", "kind": kind},
        "resource": {"group": "", "version": "v1", "resource": kind.lower() + "s"},
        "requestKind": {"group": "", "version": "v1", "kind": kind},
        "namespace": namespace,
        "operation": operation,
        "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
        "dryRun": dry_run,
    }
    if obj is not None:
        request["object"] = obj
        request["name"] = (obj.get("metadata") or {}).get("name", "")
    if sub_resource:
        request["subResource"] = sub_resource
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def patch_of(answer: dict[str, Any]) -> list[dict[str, Any]]:
    resp = answer["response"]
    if "patch" not in resp:
        return []
    assert resp["patchType"] == "JSONPatch"
    return json.loads(base64.b64decode(resp["patch"]))


def apply_checked(original: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """Apply a patch to a copy of the pod as sent, then check the result the way the API server
    would: the Kubernetes 1.36 OpenAPI schema plus the validation rules mutations can break."""
    mutated = jsonpatch.apply_patch(copy.deepcopy(original), ops)
    problems = list(verify.check(mutated))
    assert not problems, problems
    kubernetes_validate.validate(mutated, K8S_VERSION, strict=True)
    return mutated

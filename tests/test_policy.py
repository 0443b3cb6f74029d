"""The ValidatingAdmissionPolicy in deploy/base/policy.yaml, enforced by the real API server.

No webhook is involved: pods are created directly, as a tenant (or a misbehaving mutator) could
write them, and the API server's own CEL evaluation must hold podmedic's invariants -- log
hostPaths only under the admin's root, injected containers never privileged -- while leaving
every other pod alone. Creation is a server-side dry run: it runs the whole admission chain.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.test_deploy import DEPLOY, find, one, policy_claim, policy_roots, render
from tests.test_integration import Cluster, cluster  # noqa: F401  (session fixture: the real API server)
from webhook.engine.pod_level import (
    LOGDIR_INIT,
    LOGDIR_PVC_SECURITY,
    LOGDIR_SECURITY,
    LOGS_VOLUME,
    TOOLBOX_INIT,
    TOOLBOX_SECURITY,
)

pytestmark = pytest.mark.integration

POLICY = "podmedic-invariants"
DENIED = f"ValidatingAdmissionPolicy '{POLICY}'"
Obj = dict[str, Any]


@pytest.fixture(scope="module")
def policy_objects() -> list[Obj]:
    objs = render(DEPLOY / "base")
    return find(objs, "ValidatingAdmissionPolicy") + find(objs, "ValidatingAdmissionPolicyBinding")


@pytest.fixture(scope="module")
def root(policy_objects: list[Obj]) -> str:
    return policy_roots(policy_objects)["*"]


@pytest.fixture(scope="module")
def enforced(cluster: Cluster, policy_objects: list[Obj], root: str) -> Iterator[Cluster]:  # noqa: F811
    """The rendered policy and binding, applied; yields once the API server enforces them."""
    kube = cluster
    apply_policy(kube, policy_objects)
    namespace = kube.namespace({})
    wait_until(kube, namespace, logs_pod(root + "-probe"), admitted=False)
    yield kube
    kube.kubectl("delete", "validatingadmissionpolicybinding,validatingadmissionpolicy", POLICY,
                    "--ignore-not-found")


def apply_policy(kube: Cluster, objs: list[Obj]) -> None:
    kube.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objs}))


def wait_until(kube: Cluster, namespace: str, pod: Obj, *, admitted: bool) -> subprocess.CompletedProcess[str]:
    """Policies and their changes take effect after ~1 s: poll a dry-run until they show."""
    deadline = time.monotonic() + 20
    while True:
        done = kube.create_pod(namespace, pod, dry_run=True)
        if (done.returncode == 0) == admitted:
            return done
        if time.monotonic() > deadline:
            pytest.fail(f"policy never {'admitted' if admitted else 'denied'} the pod: {done.stderr}")
        time.sleep(0.2)


def pod(*, volumes: list[Obj] | None = None, init: list[Obj] | None = None,
        app: Obj | None = None) -> Obj:
    spec: Obj = {"containers": [{"name": "app", "image": "registry.example/app:1", **(app or {})}]}
    if volumes:
        spec["volumes"] = volumes
    if init:
        spec["initContainers"] = init
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}


def logs_pod(path: str, name: str = LOGS_VOLUME) -> Obj:
    return pod(volumes=[{"name": name, "hostPath": {"path": path, "type": "DirectoryOrCreate"}}])


def injected(name: str, security: Obj | None) -> Obj:
    return pod(init=[{"name": name, "image": "registry.example/podmedic:1",
                      **({"securityContext": security} if security is not None else {})}])


def create(kube: Cluster, namespace: str, obj: Obj) -> subprocess.CompletedProcess[str]:
    return kube.create_pod(namespace, obj, dry_run=True)


@pytest.fixture
def ns(enforced: Cluster) -> str:
    return enforced.namespace({})


def test_log_hostpath_under_the_root_is_admitted(enforced, ns, root):
    for path in (root, root + "/", root + "/team-a", root + "/a/b"):
        done = create(enforced, ns, logs_pod(path))
        assert done.returncode == 0, f"{path}: {done.stderr}"


@pytest.mark.parametrize("suffix", ["/./x", "//x", "-evil", "-evil/x", "/x/."])
def test_log_hostpath_escaping_the_root_is_denied_by_the_policy(enforced, ns, root, suffix):
    done = create(enforced, ns, logs_pod(root + suffix))
    assert done.returncode != 0 and DENIED in done.stderr, done.stderr
    assert f"must lie under {root} (got {root + suffix})" in done.stderr


@pytest.mark.parametrize("path", ["/etc", "/", "/mnt/cephfs", "/var/run/docker.sock"])
def test_log_hostpath_elsewhere_is_denied_by_the_policy(enforced, ns, path):
    done = create(enforced, ns, logs_pod(path))
    assert done.returncode != 0 and DENIED in done.stderr, done.stderr


def test_dot_dot_escape_is_denied(enforced, ns, root):
    """Pod validation rejects `..` before validating admission runs; either way it never lands."""
    done = create(enforced, ns, logs_pod(root + "/../../etc"))
    assert done.returncode != 0 and "'..'" in done.stderr, done.stderr


@pytest.mark.parametrize("name", [TOOLBOX_INIT, LOGDIR_INIT])
@pytest.mark.parametrize("security", [
    {"privileged": True},
    {"allowPrivilegeEscalation": True},
    None,  # unset allowPrivilegeEscalation means escalation is allowed
    {"runAsNonRoot": True},
    {"allowPrivilegeEscalation": False, "capabilities": {"add": ["SYS_ADMIN"]}},
], ids=["privileged", "escalation", "no-securityContext", "escalation-unset", "caps-added"])
def test_privileged_injected_containers_are_denied(enforced, ns, name, security):
    done = create(enforced, ns, injected(name, security))
    assert done.returncode != 0 and DENIED in done.stderr, done.stderr
    assert f"injected container(s) {name} must" in done.stderr


def test_as_a_regular_container_the_name_is_held_too(enforced, ns):
    done = create(enforced, ns, pod(app={"name": TOOLBOX_INIT, "securityContext": {"privileged": True}}))
    assert done.returncode != 0 and DENIED in done.stderr, done.stderr


def test_what_podmedic_itself_injects_is_admitted(enforced, ns, root):
    """The webhook's own securityContexts (delivery.py) and log volume satisfy the policy."""
    obj = logs_pod(root)
    obj["spec"]["initContainers"] = [
        {"name": LOGDIR_INIT, "image": "registry.example/podmedic:1", "securityContext": LOGDIR_SECURITY},
        {"name": TOOLBOX_INIT, "image": "registry.example/podmedic:1", "securityContext": TOOLBOX_SECURITY},
    ]
    done = create(enforced, ns, obj)
    assert done.returncode == 0, done.stderr


def claim_pod(claim: str, name: str = LOGS_VOLUME) -> Obj:
    return pod(volumes=[{"name": name, "persistentVolumeClaim": {"claimName": claim}}])


def test_log_claim_volume_must_name_the_configured_claim(enforced, ns, policy_objects):
    claim = policy_claim(policy_objects)
    assert claim == "podmedic-logs"
    admitted = create(enforced, ns, claim_pod(claim))
    assert admitted.returncode == 0, admitted.stderr
    for other in ("other-team-logs", claim + "-x", "data"):
        done = create(enforced, ns, claim_pod(other))
        assert done.returncode != 0 and DENIED in done.stderr, done.stderr
        assert f"volume podmedic-logs must use the claim {claim} (got {other})" in done.stderr
    elsewhere = create(enforced, ns, claim_pod("data", name="app-data"))  # not podmedic's name: not ours to judge
    assert elsewhere.returncode == 0, elsewhere.stderr


def test_what_podmedic_injects_on_a_claim_is_admitted(enforced, ns, policy_objects):
    obj = claim_pod(policy_claim(policy_objects))
    obj["spec"]["initContainers"] = [
        {"name": LOGDIR_INIT, "image": "registry.example/podmedic:1", "securityContext": LOGDIR_PVC_SECURITY},
        {"name": TOOLBOX_INIT, "image": "registry.example/podmedic:1", "securityContext": TOOLBOX_SECURITY},
    ]
    done = create(enforced, ns, obj)
    assert done.returncode == 0, done.stderr


def test_other_pods_are_not_affected(enforced, ns):
    for other in (logs_pod("/etc", name="host-etc"),
                  pod(init=[{"name": "setup", "image": "registry.example/x:1",
                             "securityContext": {"privileged": True}}]),
                  pod(volumes=[{"name": LOGS_VOLUME, "emptyDir": {}}]),
                  pod()):
        done = create(enforced, ns, other)
        assert done.returncode == 0, done.stderr
        assert POLICY not in done.stderr


def test_a_namespace_root_replaces_the_host_root_there(enforced, policy_objects, root, tmp_path):
    """The documented overlay patch of the `roots` variable, rendered by kustomize and applied."""
    special = enforced.namespace({})
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        "resources:\n- " + os.path.relpath(DEPLOY / "base", overlay) + "\n"
        "patches:\n- target: {kind: ValidatingAdmissionPolicy, name: " + POLICY + "}\n"
        "  patch: |-\n"
        "    - op: replace\n"
        "      path: /spec/variables/0/expression\n"
        f"      value: \"{{'*': '{root}', '{special}': '/mnt/other'}}\"\n")
    patched = render(overlay)
    assert policy_roots(patched) == {"*": root, special: "/mnt/other"}
    apply_policy(enforced, [one(patched, "ValidatingAdmissionPolicy")])
    try:
        wait_until(enforced, special, logs_pod("/mnt/other/x"), admitted=True)
        denied = create(enforced, special, logs_pod(root + "/x"))
        assert denied.returncode != 0 and "must lie under /mnt/other" in denied.stderr, denied.stderr
        elsewhere = create(enforced, enforced.namespace({}), logs_pod("/mnt/other/x"))
        assert elsewhere.returncode != 0 and DENIED in elsewhere.stderr, elsewhere.stderr
    finally:
        apply_policy(enforced, policy_objects)
        wait_until(enforced, special, logs_pod("/mnt/other/x"), admitted=False)

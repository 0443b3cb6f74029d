"""deploy/ (kustomize base + overlays), the Dockerfile and deploy/build-image.

The manifests are rendered once per session with the real `kubectl kustomize`; every built-in
object is validated against the Kubernetes 1.36 schemas, and each safety property podmedic promises
is asserted on the rendered output -- cross-checked against the code it has to agree with
(the `podmedic serve` flags, the global configuration loader, the certificate names). The
integration part applies the rendered objects to the real API server: Pod Security admission
judges the webhook's own pod template, and the API server's webhook dispatcher proves the
namespace selector, the opt-out matchCondition and the failure policies.
"""

from __future__ import annotations

import ast
import copy
import json
import os
import re
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.conftest import ROOT, podmedic
from tests.test_integration import Cluster, cluster  # noqa: F401  (session fixture: the real API server)
from webhook import cli
from webhook.cli import config
from webhook.engine.config import GlobalConfig
from webhook.engine.pod_level import TOOLBOX_SECURITY
from webhook.pki.cluster import SecretRef
from webhook.pki.x509 import serving_names
from webhook.toolbox import build as toolbox

DEPLOY = ROOT / "deploy"
OVERLAYS = ("self-managed", "cert-manager")
K8S_VERSION = "1.36.0"
PREFIX = "podmedic.io/"
JANITOR_NS = "podmedic-janitor"
Obj = dict[str, Any]


def render(path: Path) -> list[Obj]:
    """`kubectl kustomize PATH` as `make deploy` applies it, parsed."""
    done = subprocess.run(["kubectl", "kustomize", str(path)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[Obj]]:
    if not shutil.which("kubectl"):
        pytest.skip("kubectl is not installed: `kubectl kustomize` renders deploy/")
    return {name: render(DEPLOY / "overlays" / name) for name in OVERLAYS}


def find(objs: list[Obj], kind: str, name: str | None = None) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objs: list[Obj], kind: str, name: str | None = None) -> Obj:
    found = find(objs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def webhook_of(objs: list[Obj]) -> Obj:
    (hook,) = one(objs, "MutatingWebhookConfiguration")["webhooks"]
    return hook


def container(objs: list[Obj]) -> Obj:
    (server,) = one(objs, "Deployment", "podmedic")["spec"]["template"]["spec"]["containers"]
    return server


def mount_of(objs: list[Obj], volume_kind: str) -> tuple[Obj, Obj]:
    """(volume, its mount in the server container) for the pod's one volume of that kind."""
    pod = one(objs, "Deployment", "podmedic")["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if volume_kind in v]
    (mount,) = [m for m in container(objs)["volumeMounts"] if m["name"] == volume["name"]]
    return volume, mount


def env_of(objs: list[Obj]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(objs)["env"]}


def serve_args(objs: list[Obj], monkeypatch: pytest.MonkeyPatch) -> Any:
    """How the real `podmedic serve` parser reads the Deployment's args and environment."""
    for name, value in env_of(objs).items():
        monkeypatch.setenv(name, value)
    return cli.build_parser().parse_args(container(objs)["args"])


def policy_roots(objs: list[Obj]) -> dict[str, str]:
    """The log roots map literal of the ValidatingAdmissionPolicy (CEL map = Python dict literal)."""
    variables = {v["name"]: v["expression"] for v in one(objs, "ValidatingAdmissionPolicy")["spec"]["variables"]}
    return ast.literal_eval(variables["roots"])


def policy_claim(objs: list[Obj]) -> str:
    """The log claim name literal of the ValidatingAdmissionPolicy (a CEL string = a Python one)."""
    variables = {v["name"]: v["expression"] for v in one(objs, "ValidatingAdmissionPolicy")["spec"]["variables"]}
    claim = ast.literal_eval(variables["claim"])
    assert isinstance(claim, str)
    return claim


def server_config(objs: list[Obj], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> GlobalConfig:
    """The ConfigMap's file, loaded by the real loader from the path the server is given."""
    args = serve_args(objs, monkeypatch)
    volume, mount = mount_of(objs, "configMap")
    (cm,) = [c for c in find(objs, "ConfigMap") if c["metadata"]["name"] == volume["configMap"]["name"]
             and c["metadata"]["namespace"] == "podmedic-system"]
    key = os.path.relpath(args.config, mount["mountPath"])
    path = tmp_path / key
    path.write_text(cm["data"][key])
    return config.load(path)


# -- every object -----------------------------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_builtin_objects_validate_strictly_for_kubernetes_1_36(rendered, overlay):
    objs = rendered[overlay]
    expected = {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "Deployment",
                "PodDisruptionBudget", "Service", "MutatingWebhookConfiguration", "ValidatingAdmissionPolicy",
                "ValidatingAdmissionPolicyBinding"}
    assert expected <= {o["kind"] for o in objs}
    for obj in objs:
        if not obj["apiVersion"].startswith("cert-manager.io/"):
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_objects_are_namespaced_in_podmedic_system_or_cluster_scoped(rendered):
    """Except the janitor's, in its own namespace (hostPath and root: docs/logs.md)."""
    cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration",
                      "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}
    janitors = {("ServiceAccount", "podmedic-janitor"), ("CronJob", "podmedic-janitor")}
    for objs in rendered.values():
        for obj in objs:
            janitor = (obj["kind"], obj["metadata"]["name"]) in janitors
            wanted = None if obj["kind"] in cluster_scoped else JANITOR_NS if janitor else "podmedic-system"
            if obj["kind"] != "ConfigMap":  # the configuration: one copy in each namespace
                assert obj["metadata"].get("namespace") == wanted, obj
        assert sorted(c["metadata"]["namespace"] for c in find(objs, "ConfigMap")) == [JANITOR_NS, "podmedic-system"]


def test_namespace_enforces_restricted_pod_security(rendered):
    labels = one(rendered["self-managed"], "Namespace", "podmedic-system")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_server_may_only_read_namespaces_claims_and_limitranges(rendered):
    objs = rendered["self-managed"]
    account = one(objs, "Deployment", "podmedic")["spec"]["template"]["spec"]["serviceAccountName"]
    bindings = [b for b in find(objs, "ClusterRoleBinding") + find(objs, "RoleBinding")
                if {"kind": "ServiceAccount", "name": account, "namespace": "podmedic-system"} in b["subjects"]]
    assert [b["roleRef"]["kind"] for b in bindings] == ["ClusterRole"]
    role = one(objs, "ClusterRole", bindings[0]["roleRef"]["name"])
    assert role["rules"] == [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
                             {"apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": ["list", "watch"]},
                             {"apiGroups": [""], "resources": ["limitranges"], "verbs": ["list", "watch"]}]


# -- the quarantine controller ------------------------------------------------------------------

QUARANTINE_RULES = [
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch", "patch", "delete"]},
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
    {"apiGroups": [""], "resources": ["services", "resourcequotas", "persistentvolumeclaims"], "verbs": ["list"]},
    {"apiGroups": ["apps"], "resources": ["deployments", "replicasets", "statefulsets", "daemonsets"], "verbs": ["list"]},
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["list"]},
    {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": ["list"]},
    {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": ["list"]},
    {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["list"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "list"]},
]


def quarantine_container(objs: list[Obj]) -> Obj:
    (controller,) = one(objs, "Deployment", "podmedic-quarantine")["spec"]["template"]["spec"]["containers"]
    return controller


def test_quarantine_controller_may_do_exactly_what_it_uses(rendered):
    """pods: list, watch, patch, delete, never get or exec; list only on what the pre-flight reads;
    Leases: create in its namespace, get and update only its own."""
    objs = rendered["self-managed"]
    account = one(objs, "Deployment", "podmedic-quarantine")["spec"]["template"]["spec"]["serviceAccountName"]
    subject = {"kind": "ServiceAccount", "name": account, "namespace": "podmedic-system"}
    bound = {(b["kind"], b["roleRef"]["name"]) for b in find(objs, "ClusterRoleBinding") + find(objs, "RoleBinding")
             if subject in b["subjects"]}
    assert bound == {("ClusterRoleBinding", "podmedic-quarantine"), ("RoleBinding", "podmedic-quarantine-lease")}
    assert one(objs, "ClusterRole", "podmedic-quarantine")["rules"] == QUARANTINE_RULES
    lease = one(objs, "Role", "podmedic-quarantine-lease")
    assert lease["metadata"]["namespace"] == "podmedic-system"
    assert lease["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["podmedic-quarantine"],
         "verbs": ["get", "update"]}]


def test_quarantine_controller_runs_two_replicas_configured_through_the_real_flags(rendered, monkeypatch):
    objs = rendered["self-managed"]
    spec = one(objs, "Deployment", "podmedic-quarantine")["spec"]
    assert spec["replicas"] == 2
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    service = one(objs, "Service", "podmedic")["spec"]["selector"]
    assert not service.items() <= spec["template"]["metadata"]["labels"].items(), "not an admission endpoint"
    controller = quarantine_container(objs)
    documented = set(re.findall(r"\[([A-Z_]+)\]", podmedic("quarantine", "--help").stdout))
    env = {e["name"]: e.get("value") for e in controller["env"]}
    assert set(env) <= documented, "env vars `podmedic quarantine` does not read"
    assert {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in controller["env"] if "valueFrom" in e} == {
        "POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}
    for name, value in env.items():
        monkeypatch.setenv(name, value or "x")
    args = cli.build_parser().parse_args(controller["args"])
    assert args.func.__name__ == "run" and args.action is None and not args.dry_run
    mounts = {m["name"]: m["mountPath"] for m in controller["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
    assert args.config.startswith(mounts["config"] + "/")
    assert volumes["config"]["configMap"]["name"] == mount_of(objs, "configMap")[0]["configMap"]["name"]
    assert volumes["tls"]["secret"]["secretName"] == "podmedic-tls"
    assert (args.tls_cert_file, args.tls_private_key_file) == (f"{mounts['tls']}/tls.crt", f"{mounts['tls']}/tls.key")
    port = int(args.metrics_bind.rsplit(":", 1)[1])
    assert [p["containerPort"] for p in controller["ports"]] == [port]
    assert controller["image"] == container(objs)["image"]
    assert controller["securityContext"]["readOnlyRootFilesystem"] is True


def test_shipped_quarantine_network_policy_isolates_the_quarantined_label():
    policy = yaml.safe_load((DEPLOY / "quarantine" / "networkpolicy.yaml").read_text())
    kubernetes_validate.validate(policy, K8S_VERSION, strict=True)
    assert policy["metadata"]["name"] == "podmedic-quarantine" and "namespace" not in policy["metadata"]
    assert policy["spec"] == {"podSelector": {"matchLabels": {PREFIX + "quarantined": "true"}},
                              "policyTypes": ["Ingress", "Egress"]}  # no rules: nothing in, nothing out


# -- the configuration ------------------------------------------------------------------------

def test_config_map_is_a_valid_override_and_agrees_with_the_manifests(rendered, tmp_path, monkeypatch):
    objs = rendered["self-managed"]
    loaded = server_config(objs, tmp_path, monkeypatch)
    assert loaded.toolbox.image == container(objs)["image"], "init containers must run the server's release"
    assert policy_roots(objs) == {"*": loaded.logs.host_root, **loaded.logs.namespace_roots}
    assert policy_claim(objs) == loaded.logs.claim_name
    (condition,) = webhook_of(objs)["matchConditions"]
    assert condition["expression"].count(f"'{loaded.prefix}inject'") == 2
    assert loaded.review_deadline_seconds < webhook_of(objs)["timeoutSeconds"]


def test_config_map_name_carries_a_content_hash(rendered):
    """The server reads its configuration at start only: a changed file must roll the pods."""
    volume, _ = mount_of(rendered["self-managed"], "configMap")
    assert re.fullmatch(r"podmedic-config-[a-z0-9]{10}", volume["configMap"]["name"])


def documented_overlay(tmp_path: Path) -> Path:
    """docs/operations.md's overlay (the Image section's kustomization plus the Log roots section's
    policy patch) beside a copy of deploy/, as an admin would lay it out."""
    text = (ROOT / "docs" / "operations.md").read_text()
    kustomization = re.search(r"```yaml\n# my-overlay/kustomization.yaml\n(.*?)```", text, re.S)
    patches = re.search(r"## Log roots.*?```yaml\n(patches:.*?)```", text, re.S)
    assert kustomization and patches, "docs/operations.md no longer shows the overlay"
    shutil.copytree(DEPLOY, tmp_path / "deploy")
    overlay = tmp_path / "my-overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(kustomization.group(1) + patches.group(1))
    return overlay


def test_documented_overlay_gives_the_admins_config_to_server_and_janitor(tmp_path, monkeypatch):
    """What the docs tell an admin to write must reach every reader of config.yaml: the janitor
    has its own copy in podmedic-janitor, and a copy left at the base's content keeps it on the
    shipped roots and in dry-run whatever the admin set."""
    if not shutil.which("kubectl"):
        pytest.skip("kubectl is not installed: `kubectl kustomize` renders deploy/")
    overlay = documented_overlay(tmp_path)
    admin = yaml.safe_load((DEPLOY / "base" / "config.yaml").read_text())
    admin["toolbox"]["image"] = "registry.example.com/podmedic:0.1.0"
    admin["logs"].update(hostRoot="/mnt/cephfs/logs", namespaceRoots={"team-a": "/mnt/team-a"},
                         janitor={"dryRun": False})
    (overlay / "config.yaml").write_text(yaml.safe_dump(admin))
    objs = render(overlay)
    copies = {c["metadata"]["namespace"]: c for c in find(objs, "ConfigMap")
              if c["metadata"]["name"].startswith("podmedic-config-")}
    assert set(copies) == {"podmedic-system", JANITOR_NS}
    for namespace, cm in copies.items():
        assert yaml.safe_load(cm["data"]["config.yaml"]) == admin, f"{namespace} keeps the base's config.yaml"
    loaded = server_config(objs, tmp_path, monkeypatch)
    assert loaded.toolbox.image == container(objs)["image"] == janitor_pod(objs)["containers"][0]["image"]
    assert policy_roots(objs) == {"*": loaded.logs.host_root, **loaded.logs.namespace_roots}


# -- the Deployment ---------------------------------------------------------------------------

def test_deployment_runs_two_replicas_spread_across_nodes(rendered):
    objs = rendered["self-managed"]
    spec = one(objs, "Deployment", "podmedic")["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["replicas"] == 2 and spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    (per_node,) = [c for c in spec["template"]["spec"]["topologySpreadConstraints"]
                   if c["topologyKey"] == "kubernetes.io/hostname"]
    assert per_node["whenUnsatisfiable"] == "DoNotSchedule" and per_node["maxSkew"] == 1
    assert per_node["labelSelector"]["matchLabels"].items() <= labels.items()
    pdb = one(objs, "PodDisruptionBudget")["spec"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    assert 1 <= pdb["minAvailable"] < spec["replicas"]


def test_server_container_is_locked_down(rendered):
    objs = rendered["self-managed"]
    pod = one(objs, "Deployment", "podmedic")["spec"]["template"]["spec"]
    server = container(objs)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = server["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False and sc["privileged"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["seccompProfile"] == {"type": "RuntimeDefault"}
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(server["resources"][kind])
    tmp, mount = mount_of(objs, "emptyDir")
    assert mount["mountPath"] == "/tmp" and not mount.get("readOnly")  # gunicorn + PROMETHEUS_MULTIPROC_DIR
    assert "sizeLimit" in tmp["emptyDir"]


def test_server_is_configured_through_the_real_serve_flags(rendered, monkeypatch):
    objs = rendered["self-managed"]
    documented = set(re.findall(r"\[([A-Z_]+)\]", podmedic("serve", "--help").stdout))
    assert set(env_of(objs)) <= documented, "env vars `podmedic serve` does not read"
    args = serve_args(objs, monkeypatch)
    assert args.func.__name__ == "serve"
    secret, tls = mount_of(objs, "secret")
    assert secret["secret"]["secretName"] == "podmedic-tls"
    assert (args.tls_cert_file, args.tls_private_key_file) == (f"{tls['mountPath']}/tls.crt",
                                                               f"{tls['mountPath']}/tls.key")
    port = int(args.bind.rsplit(":", 1)[1])
    assert [p["containerPort"] for p in container(objs)["ports"] if p["name"] == "https"] == [port]


def test_probes_hit_the_server_endpoints_over_tls(rendered):
    server = container(rendered["self-managed"])
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")):
        assert server[probe]["httpGet"] == {"path": path, "port": "https", "scheme": "HTTPS"}


def test_termination_grace_outlasts_endpoint_removal_and_gunicorn_drain(rendered, monkeypatch):
    objs = rendered["self-managed"]
    grace = one(objs, "Deployment", "podmedic")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    pre_stop = container(objs)["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert grace > pre_stop + serve_args(objs, monkeypatch).graceful_timeout


def test_service_maps_443_to_the_server_port(rendered):
    objs = rendered["self-managed"]
    service = one(objs, "Service", "podmedic")["spec"]
    (port,) = service["ports"]
    assert port["port"] == 443 and port["targetPort"] == "https"
    labels = one(objs, "Deployment", "podmedic")["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= labels.items()


# -- the MutatingWebhookConfiguration ---------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_webhook_registration_is_safe(rendered, overlay):
    hook = webhook_of(rendered[overlay])
    assert hook["admissionReviewVersions"] == ["v1"] and hook["sideEffects"] == "None"
    assert hook["rules"] == [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                              "resources": ["pods"], "scope": "Namespaced"}]
    assert 1 <= hook["timeoutSeconds"] <= 5
    # Never: the marker makes a second pass a no-op (test_integration.py::test_reinvocation_and_reapply_add_nothing)
    assert hook["reinvocationPolicy"] == "Never" and hook["failurePolicy"] == "Ignore"
    assert hook["clientConfig"]["service"] == {"namespace": "podmedic-system", "name": "podmedic",
                                               "path": "/mutate", "port": 443}
    assert hook["namespaceSelector"] == {"matchExpressions": [{
        "key": "kubernetes.io/metadata.name", "operator": "NotIn",
        "values": ["kube-system", "kube-public", "kube-node-lease", "podmedic-system", JANITOR_NS]}]}
    (condition,) = hook["matchConditions"]
    assert f"['{PREFIX}inject'] != 'disabled'" in condition["expression"]


# -- certificates -----------------------------------------------------------------------------

def test_cert_manager_issues_the_mounted_secret_for_the_service_names(rendered):
    objs = rendered["cert-manager"]
    for obj in find(objs, "Issuer") + find(objs, "Certificate"):
        assert obj["apiVersion"] == "cert-manager.io/v1"
    issuers = {i["metadata"]["name"]: i["spec"] for i in find(objs, "Issuer")}
    certificates = {c["metadata"]["name"]: c["spec"] for c in find(objs, "Certificate")}
    (ca,) = [c for c in certificates.values() if c.get("isCA")]
    assert issuers[ca["issuerRef"]["name"]] == {"selfSigned": {}} and ca["commonName"]
    (serving,) = [c for c in certificates.values() if not c.get("isCA")]
    assert issuers[serving["issuerRef"]["name"]] == {"ca": {"secretName": ca["secretName"]}}
    secret, _ = mount_of(objs, "secret")
    assert serving["secretName"] == secret["secret"]["secretName"]
    service = one(objs, "Service")["metadata"]
    assert set(serving["dnsNames"]) == set(serving_names(service["name"], service["namespace"]))
    for spec in (ca, serving):
        assert {"kind", "name"} <= set(spec["issuerRef"]) and spec["secretName"]
    name = next(n for n, c in certificates.items() if c is serving)
    annotations = one(objs, "MutatingWebhookConfiguration")["metadata"]["annotations"]
    assert annotations["cert-manager.io/inject-ca-from"] == f"podmedic-system/{name}"
    assert "cert-manager.io/inject-ca-from" not in (
        one(rendered["self-managed"], "MutatingWebhookConfiguration")["metadata"].get("annotations") or {})


def test_self_managed_renewal_runs_certs_install_on_what_the_deployment_uses(rendered):
    objs = rendered["self-managed"]
    cron = one(objs, "CronJob", "podmedic-certs")["spec"]
    assert cron["concurrencyPolicy"] == "Forbid"
    pod = cron["jobTemplate"]["spec"]["template"]["spec"]
    (job,) = pod["containers"]
    assert job["image"] == container(objs)["image"]
    args = cli.build_parser().parse_args(job["args"])
    secret, _ = mount_of(objs, "secret")
    assert args.webhook == one(objs, "MutatingWebhookConfiguration")["metadata"]["name"]
    assert args.secret == SecretRef("podmedic-system", secret["secret"]["secretName"])
    role = one(objs, "Role", "podmedic-certs")["rules"]
    assert {args.secret.name, args.ca_secret} <= set(role[0]["resourceNames"])
    (rule,) = one(objs, "ClusterRole", "podmedic-certs")["rules"]
    assert rule["resourceNames"] == [args.webhook] and set(rule["verbs"]) == {"get", "patch"}
    assert job["securityContext"]["readOnlyRootFilesystem"] is True and pod["securityContext"]["runAsNonRoot"] is True
    assert not find(rendered["cert-manager"], "CronJob", "podmedic-certs")


# -- the log janitor --------------------------------------------------------------------------

def janitor_pod(objs: list[Obj]) -> Obj:
    cron = one(objs, "CronJob", "podmedic-janitor")
    assert cron["metadata"]["namespace"] == JANITOR_NS
    return cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def test_janitor_runs_every_15_minutes_one_at_a_time_with_the_servers_image_and_config(rendered, tmp_path,
                                                                                        monkeypatch):
    objs = rendered["self-managed"]
    cron = one(objs, "CronJob", "podmedic-janitor")["spec"]
    assert cron["schedule"] == "*/15 * * * *" and cron["concurrencyPolicy"] == "Forbid"
    pod = janitor_pod(objs)
    (job,) = pod["containers"]
    assert job["image"] == container(objs)["image"] and pod["restartPolicy"] == "Never"
    env = {e["name"]: e["value"] for e in job["env"]}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    args = cli.build_parser().parse_args(job["args"])
    assert args.func.__name__ == "janitor" and args.dry_run is None  # the file decides: dry-run first
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in job["volumeMounts"]}
    config_volume = volumes[mounts[os.path.dirname(args.config)]]["configMap"]["name"]
    server_volume, _ = mount_of(objs, "configMap")
    assert config_volume == server_volume["configMap"]["name"]  # the same file, the same content hash
    loaded = server_config(objs, tmp_path, monkeypatch)
    assert loaded.logs.janitor.dry_run is True
    for root in loaded.logs.roots:  # each root at its own path, from the host, never created empty
        assert volumes[mounts[root]]["hostPath"] == {"path": root, "type": "Directory"}, root
    assert cron["jobTemplate"]["spec"]["activeDeadlineSeconds"] > loaded.logs.janitor.run_seconds


def test_janitor_has_only_the_privilege_it_needs(rendered):
    objs = rendered["self-managed"]
    pod = janitor_pod(objs)
    (job,) = pod["containers"]
    sc = job["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["privileged"] is False and sc["readOnlyRootFilesystem"]
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert set(sc["capabilities"]["add"]) <= {"DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER"}
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    bindings = [b for b in find(objs, "ClusterRoleBinding") + find(objs, "RoleBinding")
                if {"kind": "ServiceAccount", "name": pod["serviceAccountName"], "namespace": JANITOR_NS}
                in b["subjects"]]
    assert [b["roleRef"]["kind"] for b in bindings] == ["ClusterRole"]
    assert one(objs, "ClusterRole", bindings[0]["roleRef"]["name"])["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list"]}]
    labels = one(objs, "Namespace", JANITOR_NS)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"  # hostPath + root: stated, not inherited


# -- the image --------------------------------------------------------------------------------

def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """(instruction, rest) per stage, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        instruction, _, rest = line.strip().partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instruction.upper(), rest.strip()))
    return stages


def test_dockerfile_final_stage_holds_only_the_built_tree_and_runs_non_root(rendered):
    build, final = dockerfile_stages()
    assert f"podmedic toolbox build {toolbox.DEFAULT_SOURCE}" in " ".join(r for i, r in build if i == "RUN")
    instructions = {i for i, _ in final}
    assert "RUN" not in instructions and "ADD" not in instructions  # nothing built or fetched there
    assert [r for i, r in final if i == "COPY"] == ["--from=build /opt/podmedic /opt/podmedic"]
    assert toolbox.DEFAULT_SOURCE.startswith("/opt/podmedic/")
    (user,) = [r for i, r in final if i == "USER"]
    uid = int(user.split(":")[0])
    assert uid != 0
    assert uid == TOOLBOX_SECURITY["runAsUser"] == one(rendered["self-managed"], "Deployment", "podmedic")[
        "spec"]["template"]["spec"]["securityContext"]["runAsUser"]
    (entrypoint,) = [json.loads(r) for i, r in final if i == "ENTRYPOINT"]
    (cmd,) = [json.loads(r) for i, r in final if i == "CMD"]
    assert entrypoint[0].endswith("/bin/podmedic") and cmd == ["serve"]
    (env,) = [r for i, r in final if i == "ENV"]
    assert re.search(r"PATH=/opt/podmedic/venv/bin:", env)  # init containers run `podmedic` by name


def test_dockerignore_admits_what_the_build_copies_and_nothing_secret():
    lines = [ln for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines[0] == "*"
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    build, _ = dockerfile_stages()
    copied = {src for i, r in build if i == "COPY" for src in r.split()[:-1]}
    assert copied == allowed
    assert not allowed & {"certs", ".venv", ".git", "tests"}


def fake_engine(bin_dir: Path, name: str, info_ok: bool) -> Path:
    """A stand-in engine on PATH: `info` answers as told, `build` records its argv."""
    log = bin_dir / f"{name}.argv"
    script = bin_dir / name
    script.write_text(f'#!/bin/sh\n[ "$1" = info ] && exit {0 if info_ok else 1}\necho "$@" > {log}\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return log


def build_image(bin_dir: Path, engines: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "CONTAINER_ENGINE": engines}
    return subprocess.run([str(DEPLOY / "build-image"), "example/podmedic:test", "ctx"], env=env,
                          capture_output=True, text=True, timeout=30, check=False)


def test_build_image_uses_the_first_engine_that_answers(tmp_path):
    dead = fake_engine(tmp_path, "docker", info_ok=False)
    live = fake_engine(tmp_path, "podman", info_ok=True)
    done = build_image(tmp_path, "docker podman")
    assert done.returncode == 0, done.stderr
    assert live.read_text().split() == ["build", "-t", "example/podmedic:test", "ctx"]
    assert not dead.exists() and "docker is installed but no engine answers" in done.stderr


def test_build_image_without_an_engine_says_so_and_fails(tmp_path):
    fake_engine(tmp_path, "docker", info_ok=False)
    done = build_image(tmp_path, "docker nosuch-engine")
    assert done.returncode == 1
    assert "no container engine to build example/podmedic:test" in done.stderr
    assert "docker build -t example/podmedic:test ." in done.stderr


# -- against the real API server --------------------------------------------------------------

TEST_WEBHOOK = "podmedic-deploy-test"  # not `podmedic`: the integration tests own that name
DIALED = "podmedic.podmedic-system.svc:443/mutate"  # in the API server's error: this webhook was called
SYSTEM_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease")


@pytest.fixture(scope="module")
def installed(cluster: Cluster, rendered) -> Iterator[tuple[Cluster, list[Obj]]]:  # noqa: F811
    """The self-managed overlay applied for real, its webhook registered under a test name.

    The Deployment creates no pods here (no controller-manager); its pod template is judged by
    dry-run creation below. The webhook points at the real Service, which has no endpoints: the
    API server's calls fail, exactly as when every replica is down.
    """
    kube = cluster
    objs = rendered["self-managed"]
    others = [o for o in objs if o["kind"] not in ("MutatingWebhookConfiguration", "ValidatingAdmissionPolicy",
                                                    "ValidatingAdmissionPolicyBinding")]
    kube.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": others}))
    for namespace in ("podmedic-system", *SYSTEM_NAMESPACES):  # nobody else creates them here
        kube.kubectl("-n", namespace, "create", "serviceaccount", "default", check=False)
    registration = copy.deepcopy(one(objs, "MutatingWebhookConfiguration"))  # `rendered` is shared
    registration["metadata"]["name"] = TEST_WEBHOOK
    kube.apply(registration)
    yield kube, objs
    kube.kubectl("delete", "mutatingwebhookconfiguration", TEST_WEBHOOK, "--ignore-not-found")


def pod_from_template(template: Obj, name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {**template["metadata"], "name": name},
            "spec": template["spec"]}


@pytest.mark.integration
def test_webhook_and_renewal_pods_pass_restricted_pod_security(installed):
    kube, objs = installed
    templates = {"server": one(objs, "Deployment", "podmedic")["spec"]["template"],
                 "quarantine": one(objs, "Deployment", "podmedic-quarantine")["spec"]["template"],
                 "renewal": one(objs, "CronJob", "podmedic-certs")["spec"]["jobTemplate"]["spec"]["template"]}
    for name, template in templates.items():
        done = kube.create_pod("podmedic-system", pod_from_template(template, name), dry_run=True)
        assert done.returncode == 0, done.stderr
        assert "violate" not in done.stderr, done.stderr  # the `warn: restricted` label speaks up


@pytest.mark.integration
def test_janitor_pod_is_admitted_in_its_namespace_and_would_not_be_in_podmedic_system(installed):
    """Why it has a namespace of its own: restricted (podmedic-system) rejects hostPath and root."""
    kube, objs = installed
    template = one(objs, "CronJob", "podmedic-janitor")["spec"]["jobTemplate"]["spec"]["template"]
    done = kube.create_pod(JANITOR_NS, pod_from_template(template, "janitor"), dry_run=True)
    assert done.returncode == 0, done.stderr
    elsewhere = pod_from_template(template, "janitor")
    elsewhere["spec"] = {**elsewhere["spec"], "serviceAccountName": "podmedic"}
    refused = kube.create_pod("podmedic-system", elsewhere, dry_run=True)
    assert refused.returncode != 0 and "hostPath" in refused.stderr, refused.stderr


def plain_pod(name: str, annotations: dict[str, str] | None = None) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "annotations": annotations or {}},
            "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]}}


def set_failure_policy(kube: Cluster, policy: str) -> None:
    patch = [{"op": "replace", "path": "/webhooks/0/failurePolicy", "value": policy}]
    kube.kubectl("patch", "mutatingwebhookconfiguration", TEST_WEBHOOK, "--type=json", "-p", json.dumps(patch))


def outcome_when_down(kube: Cluster, namespace: str, pod: Obj,
                      expect_admitted: bool) -> subprocess.CompletedProcess[str]:
    """Create (dry-run) until the API server's webhook configuration shows the expected outcome."""
    deadline = time.monotonic() + 20
    while True:
        done = kube.create_pod(namespace, pod, dry_run=True)
        if (done.returncode == 0) == expect_admitted or time.monotonic() > deadline:
            return done
        time.sleep(0.3)


@pytest.mark.integration
def test_webhook_down_ignore_admits_and_fail_denies(installed):
    """Fail patched in to prove the webhook is called at all; then the rendered policy, restored."""
    kube, objs = installed
    ns = kube.namespace({PREFIX + "inject": "enabled"})
    set_failure_policy(kube, "Fail")
    try:
        denied = outcome_when_down(kube, ns, plain_pod("app"), expect_admitted=False)
        assert denied.returncode != 0 and DIALED in denied.stderr, denied.stderr
        opted_out = kube.create_pod(ns, plain_pod("out", {PREFIX + "inject": "disabled"}), dry_run=True)
        assert opted_out.returncode == 0, "opted-out pods must not reach the webhook: " + opted_out.stderr
        for excluded in SYSTEM_NAMESPACES:
            done = kube.create_pod(excluded, plain_pod("system"), dry_run=True)
            assert done.returncode == 0, done.stderr
    finally:
        set_failure_policy(kube, webhook_of(objs)["failurePolicy"])
    admitted = outcome_when_down(kube, ns, plain_pod("app"), expect_admitted=True)
    assert admitted.returncode == 0, "the rendered failurePolicy must admit while down: " + admitted.stderr


@pytest.mark.integration
def test_webhook_never_calls_itself_for_its_own_pods(installed):
    kube, objs = installed
    set_failure_policy(kube, "Fail")
    try:
        live = outcome_when_down(kube, kube.namespace({}), plain_pod("probe"), expect_admitted=False)
        assert DIALED in live.stderr, live.stderr
        template = one(objs, "Deployment", "podmedic")["spec"]["template"]
        done = kube.create_pod("podmedic-system", pod_from_template(template, "replacement"), dry_run=True)
        assert done.returncode == 0, done.stderr
    finally:
        set_failure_policy(kube, webhook_of(objs)["failurePolicy"])

"""The log backend (logs.backend: hostPath | pvc | auto): which volume the log directory lives on
per namespace, the claim's phase as the namespace source hands it over (missing, unbound, Bound),
and Pod Security restricted compliance of every container podmedic adds."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from tests import pods
from tests.engine.test_mutations import ALL_ON, PREFIX, c0, mounts, reasons
from tests.pods import apply_checked, container
from webhook import engine
from webhook.cli import config as configfile
from webhook.engine import uninject
from webhook.engine.config import ConfigError, GlobalConfig, from_mapping
from webhook.engine.decisions import Reason
from webhook.engine.namespace import Namespace
from webhook.engine.pod_level import LOGDIR_INIT, LOGS_VOLUME, SAFE_TO_EVICT
from webhook.kube.namespaces import StaticSource

ENFORCE = "pod-security.kubernetes.io/enforce"
# Pod Security "restricted": the volume types it allows (everything else, hostPath first, is refused).
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret"}


def config(backend: str, claim: str = "podmedic-logs") -> GlobalConfig:
    raw = configfile._embedded()
    return from_mapping({**raw, "logs": {**raw["logs"], "backend": backend, "claimName": claim}})


def inject(cfg: GlobalConfig, *, level: str | None = None, claim: str | None = "Bound",
           pod: dict[str, Any] | None = None) -> tuple[dict[str, Any], engine.Outcome]:
    """Inject (every feature on) in a namespace enforcing `level`, whose log claim is in phase
    `claim` (None: it has none); the patch is applied and validated, re-injection adds nothing."""
    original = pod or pods.pod(container(command=["/app"], ports=[{"containerPort": 80}]))
    ns = Namespace("demo", dict(ALL_ON), {ENFORCE: level} if level else {}, claim)
    outcome = engine.inject(copy.deepcopy(original), StaticSource([ns]).get("demo"), cfg)
    mutated = apply_checked(original, outcome.ops)
    assert engine.inject(copy.deepcopy(mutated), StaticSource([ns]).get("demo"), cfg).ops == []
    return mutated, outcome


def logs_volume(mutated: dict[str, Any]) -> dict[str, Any] | None:
    return next((v for v in mutated["spec"].get("volumes", []) if v["name"] == LOGS_VOLUME), None)


def logdir(mutated: dict[str, Any]) -> dict[str, Any] | None:
    return next((c for c in mutated["spec"].get("initContainers", []) if c["name"] == LOGDIR_INIT), None)


@pytest.mark.parametrize("backend,level,volume", [
    ("hostPath", None, "hostPath"),
    ("hostPath", "privileged", "hostPath"),
    ("pvc", None, "persistentVolumeClaim"),
    ("pvc", "privileged", "persistentVolumeClaim"),
    ("pvc", "baseline", "persistentVolumeClaim"),
    ("pvc", "restricted", "persistentVolumeClaim"),
    ("auto", None, "hostPath"),
    ("auto", "privileged", "hostPath"),
    ("auto", "baseline", "persistentVolumeClaim"),
    ("auto", "restricted", "persistentVolumeClaim"),
])
def test_the_backend_per_namespace_level(backend, level, volume):
    mutated, outcome = inject(config(backend), level=level)
    assert reasons(outcome, "app")["logs"] == "injected"
    vol = logs_volume(mutated)
    assert vol is not None and volume in vol
    if volume == "persistentVolumeClaim":
        assert vol["persistentVolumeClaim"] == {"claimName": "podmedic-logs"}
    else:
        assert vol["hostPath"] == {"path": "/mnt/cephfs/podmedic", "type": "DirectoryOrCreate"}
    # the same per-incarnation layout on either volume
    assert mounts(c0(mutated))[LOGS_VOLUME]["subPathExpr"] == "demo_$(PODMEDIC_POD_NAME)_$(PODMEDIC_POD_UID)/app"
    init = logdir(mutated)
    assert init is not None and init["volumeMounts"] == [{"name": LOGS_VOLUME, "mountPath": "/podmedic-logs"}]
    assert (init["securityContext"]["runAsUser"] == 0) == (volume == "hostPath")


@pytest.mark.parametrize("level", ["baseline", "restricted"])
def test_hostpath_backend_still_skips_where_pod_security_forbids_it(level):
    mutated, outcome = inject(config("hostPath"), level=level)
    assert reasons(outcome, "app")["logs"] == "psa-forbids-hostpath"
    assert logs_volume(mutated) is None


def test_the_configured_claim_name_is_used():
    mutated, _ = inject(config("pvc", claim="team-logs"))
    assert logs_volume(mutated) == {"name": LOGS_VOLUME, "persistentVolumeClaim": {"claimName": "team-logs"}}


@pytest.mark.parametrize("phase,reason,detail", [
    (None, "logs-pvc-missing", "podmedic-logs"),
    ("Pending", "logs-pvc-unbound", "podmedic-logs: Pending"),
    ("Lost", "logs-pvc-unbound", "podmedic-logs: Lost"),
    ("Terminating", "logs-pvc-unbound", "podmedic-logs: Terminating"),
])
@pytest.mark.parametrize("backend", ["pvc", "auto"])
def test_a_claim_that_is_missing_or_not_bound_skips_only_the_log_feature(backend, phase, reason, detail):
    mutated, outcome = inject(config(backend), level="restricted", claim=phase)
    [decision] = [d for d in outcome.report.decisions if d.feature == "logs"]
    assert (decision.reason.value, decision.detail, decision.reason is Reason.INJECTED) == (reason, detail, False)
    assert any(w.startswith("podmedic: container app: logs: ") and detail in w
               for w in outcome.report.warnings(PREFIX))
    assert logs_volume(mutated) is None and logdir(mutated) is None
    assert LOGS_VOLUME not in mounts(c0(mutated))
    # the pod is let through with every other feature
    assert {k: v for k, v in reasons(outcome, "app").items() if k != "logs"} == {
        "supervisor": "injected", "probes": "injected", "forensics": "injected"}


def test_the_hostpath_backend_ignores_the_claim():
    mutated, outcome = inject(config("hostPath"), claim=None)
    assert reasons(outcome, "app")["logs"] == "injected" and "hostPath" in logs_volume(mutated)


def _restricted_problems(c: dict[str, Any]) -> list[str]:
    """Pod Security `restricted` for one container on its own (the pod sets nothing)."""
    sc = c.get("securityContext") or {}
    problems = []
    if sc.get("privileged"):
        problems.append("privileged")
    if sc.get("allowPrivilegeEscalation") is not False:
        problems.append("allowPrivilegeEscalation")
    if "ALL" not in (sc.get("capabilities") or {}).get("drop", []):
        problems.append("capabilities.drop ALL")
    if set((sc.get("capabilities") or {}).get("add", [])) - {"NET_BIND_SERVICE"}:
        problems.append("capabilities.add")
    if sc.get("runAsNonRoot") is not True or sc.get("runAsUser") == 0:
        problems.append("runAsNonRoot")
    if (sc.get("seccompProfile") or {}).get("type") not in ("RuntimeDefault", "Localhost"):
        problems.append("seccompProfile")
    return problems


@pytest.mark.parametrize("backend,level", [("auto", "restricted"), ("pvc", "restricted"), ("pvc", None)])
def test_every_container_podmedic_adds_is_restricted_compliant(backend, level):
    original = pods.pod(container(command=["/app"], ports=[{"containerPort": 80}]))
    mutated, _ = inject(config(backend), level=level, pod=original)
    added = [c for c in mutated["spec"]["initContainers"] if c["name"].startswith("podmedic-")]
    assert {c["name"] for c in added} == {"podmedic-toolbox", LOGDIR_INIT}
    for c in added:
        assert _restricted_problems(c) == [], c["name"]
    for v in mutated["spec"]["volumes"]:
        assert set(v) - {"name"} <= RESTRICTED_VOLUMES, v


def test_the_root_logdir_would_not_be_compliant():
    """The check above can fail: the hostPath backend's preparer runs as root."""
    mutated, _ = inject(config("hostPath"))
    assert "runAsNonRoot" in _restricted_problems(logdir(mutated) or {})


def test_a_claim_is_not_local_storage_for_the_autoscaler():
    pvc, _ = inject(config("pvc"))
    assert pvc["metadata"]["annotations"][SAFE_TO_EVICT] == "podmedic-toolbox,podmedic-state"
    host, _ = inject(config("hostPath"))
    assert host["metadata"]["annotations"][SAFE_TO_EVICT] == "podmedic-toolbox,podmedic-state,podmedic-logs"


def test_uninject_round_trip_in_pvc_mode():
    original = pods.pod(container(command=["/app"], ports=[{"containerPort": 80}]),
                        annotations={SAFE_TO_EVICT: "cache"})
    cfg = config("auto")
    mutated, _ = inject(cfg, level="restricted", pod=original)
    assert logs_volume(mutated) is not None
    assert uninject.template(mutated, cfg)
    assert mutated == original


@pytest.mark.parametrize("logs,message", [
    ({"backend": "nfs"}, "logs.backend must be one of hostPath, pvc, auto (got 'nfs')"),
    ({"backend": "PVC"}, "logs.backend must be one of"),
    ({"claimName": "Logs"}, "logs.claimName must be a PersistentVolumeClaim name"),
    ({"claimName": ""}, "logs.claimName must be"),
    ({"claimName": "a/b"}, "logs.claimName must be"),
    ({"claimName": 7}, "logs.claimName must be"),
])
def test_bad_backend_settings_stop_the_server_naming_the_key(logs, message):
    raw = configfile._embedded()
    with pytest.raises(ConfigError, match=re.escape(message)):
        from_mapping({**raw, "logs": {**raw["logs"], **logs}})


def test_the_default_keeps_todays_behaviour():
    cfg = configfile.load()
    assert (cfg.logs.backend, cfg.logs.claim_name, cfg.logs.watched_claim) == ("hostPath", "podmedic-logs", None)
    assert config("auto").logs.watched_claim == "podmedic-logs"

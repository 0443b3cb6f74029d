"""The mutation matrix: every pod shape x feature switches, run through the same
engine the webhook uses; each patch is applied to the original and validated (API rules +
Kubernetes 1.36 schema), and re-injecting the result adds nothing."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests import pods
from tests.pods import apply_checked, container
from webhook import engine
from webhook.cli import config as configfile
from webhook.engine import pod_level as delivery
from webhook.engine.config import from_mapping
from webhook.engine.decisions import Reason
from webhook.engine.namespace import Namespace
from webhook.kube.namespaces import StaticSource

CONFIG = configfile.load()
ALL_ON = {"podmedic.io/inject": "enabled", "podmedic.io/supervisor": "enabled"}
PREFIX = "podmedic.io/"


def run(pod: dict[str, Any], annotations: dict[str, str] | None = None, labels: dict[str, str] | None = None,
        namespace: str = "demo") -> tuple[dict[str, Any], engine.Outcome]:
    ns = Namespace(namespace, annotations if annotations is not None else dict(ALL_ON), labels or {})
    outcome = engine.inject(copy.deepcopy(pod), StaticSource([ns]).get(namespace), CONFIG)
    mutated = apply_checked(pod, outcome.ops)
    again = engine.inject(copy.deepcopy(mutated), StaticSource([ns]).get(namespace), CONFIG)
    assert again.ops == [], "re-injecting an injected pod must add nothing"
    return mutated, outcome


def reasons(outcome: engine.Outcome, container: str | None = None) -> dict[str, str]:
    return {d.feature: d.reason.value for d in outcome.report.decisions if d.container == container}


def c0(p: dict[str, Any]) -> dict[str, Any]:
    return p["spec"]["containers"][0]


def mounts(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in c.get("volumeMounts", [])}


def test_everything_on_a_bare_pod():
    original = pods.pod(container(command=["/app"], args=["-v"], ports=[{"containerPort": 80}]))
    mutated, outcome = run(original)
    app = c0(mutated)
    assert reasons(outcome, "app") == {"supervisor": "injected", "probes": "injected", "logs": "injected",
                                       "forensics": "injected"}
    # supervisor: wrapper prefix, then the original command; args untouched
    assert app["command"][-1] == "/app" and app["command"][0].startswith("/podmedic/")
    assert "--" in app["command"] and app["args"] == ["-v"]
    # a held container must not be killed by an injected liveness probe; readiness follows the app
    assert "pmctl" in " ".join(app["livenessProbe"]["exec"]["command"])
    assert app["readinessProbe"]["tcpSocket"] == {"port": 80}
    # log dir: hostPath under the admin's root, per-incarnation subPathExpr over downward-API env
    volumes = {v["name"]: v for v in mutated["spec"]["volumes"]}
    assert volumes["podmedic-logs"]["hostPath"] == {"path": "/mnt/cephfs/podmedic", "type": "DirectoryOrCreate"}
    logs = mounts(app)["podmedic-logs"]
    assert logs["mountPath"] == "/var/log/podmedic"
    assert logs["subPathExpr"] == "demo_$(PODMEDIC_POD_NAME)_$(PODMEDIC_POD_UID)/app"
    env = {e["name"]: e for e in app["env"]}
    assert env["PODMEDIC_POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["PODMEDIC_POD_UID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.uid"
    # toolbox: read-only mount, one init container placed first
    assert mounts(app)["podmedic-toolbox"] == {"name": "podmedic-toolbox", "mountPath": "/podmedic", "readOnly": True}
    inits = [c["name"] for c in mutated["spec"]["initContainers"]]
    assert sorted(inits[:2]) == ["podmedic-logdir", "podmedic-toolbox"]
    toolbox_init = next(c for c in mutated["spec"]["initContainers"] if c["name"] == "podmedic-toolbox")
    sc = toolbox_init["securityContext"]
    assert sc["runAsNonRoot"] and not sc["allowPrivilegeEscalation"] and sc["capabilities"] == {"drop": ["ALL"]}
    assert "resources" not in toolbox_init  # a BestEffort pod stays so (test_qos.py)
    # preStop forensics into the log directory
    pre = app["lifecycle"]["preStop"]["exec"]["command"]
    assert "/var/log/podmedic" in pre
    status = json.loads(mutated["metadata"]["annotations"][PREFIX + "status"])
    assert set(status["containers"]["app"]) == {"supervisor", "probes", "logs", "forensics"}


def test_controller_made_pod():
    original = pods.controller_pod()
    mutated, outcome = run(original)
    assert "generateName" in mutated["metadata"] and "name" not in mutated["metadata"]
    assert mutated["metadata"]["managedFields"] == original["metadata"]["managedFields"]
    assert reasons(outcome, "web")["supervisor"] == "injected"


@pytest.mark.parametrize("shape,expected", [
    ({"command": ["/bin/app"], "args": ["--x"]}, "injected"),
    ({"args": ["--x"]}, "entrypoint-unknown"),
    ({}, "entrypoint-unknown"),
])
def test_supervisor_needs_a_known_entrypoint(shape, expected):
    original = pods.pod(container(ports=[{"containerPort": 80}], **shape))
    mutated, outcome = run(original)
    assert reasons(outcome, "app")["supervisor"] == expected
    if expected != "injected":
        assert c0(mutated).get("command") == original["spec"]["containers"][0].get("command")
        assert any("image entrypoint unknown; set command or podmedic.io/entrypoint" in w
                   for w in outcome.report.warnings(PREFIX))


def test_entrypoint_annotation_per_container():
    original = pods.pod(container("web", args=["serve"], ports=[{"containerPort": 80}]), container("side"),
                        annotations={PREFIX + "entrypoint.web": '["/docker-entrypoint.sh", "nginx"]'})
    mutated, outcome = run(original)
    web, side = mutated["spec"]["containers"]
    assert web["command"][-2:] == ["/docker-entrypoint.sh", "nginx"] and web["args"] == ["serve"]
    assert reasons(outcome, "side")["supervisor"] == "entrypoint-unknown"
    assert "command" not in side


def test_several_containers_and_native_sidecar():
    original = pods.pod(container("a", command=["a"], ports=[{"containerPort": 1}]),
                        container("b", command=["b"], ports=[{"containerPort": 2}]),
                        initContainers=[container("mesh", restartPolicy="Always", ports=[{"containerPort": 3}]),
                                        container("setup", command=["setup"])])
    mutated, outcome = run(original)
    names = [c["name"] for c in mutated["spec"]["initContainers"]]
    assert names.count("podmedic-toolbox") == 1 and names[-2:] == ["mesh", "setup"]
    assert reasons(outcome, "mesh") == {"probes": "injected"}  # sidecars: probes only
    assert reasons(outcome, "setup") == {}
    for c in mutated["spec"]["containers"]:
        assert c["command"][0].startswith("/podmedic/")
        assert mounts(c)["podmedic-logs"]["subPathExpr"].endswith("/" + c["name"])


@pytest.mark.parametrize("pre_stop,reason", [
    ({"exec": {"command": ["/bin/drain", "--wait", "5"]}}, "injected"),
    ({"httpGet": {"path": "/quit", "port": 80}}, "prestop-not-exec"),
    ({"tcpSocket": {"port": 80}}, "prestop-not-exec"),
    ({"sleep": {"seconds": 5}}, "prestop-not-exec"),
])
def test_existing_prestop(pre_stop, reason):
    original = pods.pod(container(command=["/app"], ports=[{"containerPort": 80}],
                                  lifecycle={"preStop": pre_stop, "postStart": {"exec": {"command": ["true"]}}}))
    mutated, outcome = run(original)
    assert reasons(outcome, "app")["forensics"] == reason
    hook = c0(mutated)["lifecycle"]
    assert hook["postStart"] == {"exec": {"command": ["true"]}}
    if reason == "injected":
        command = hook["preStop"]["exec"]["command"]
        assert command[:3] == ["/podmedic/bin/busybox", "sh", "-c"]
        assert command[-3:] == ["/bin/drain", "--wait", "5"]  # user's command, arguments unchanged
    else:
        assert hook["preStop"] == pre_stop


@pytest.mark.parametrize("grace,budget", [(30, 10), (12, 7), (8, 3)])
def test_forensics_budget_fits_the_grace_period(grace, budget):
    original = pods.pod(container(command=["/app"], ports=[{"containerPort": 80}]), terminationGracePeriodSeconds=grace)
    mutated, outcome = run(original)
    command = " ".join(c0(mutated)["lifecycle"]["preStop"]["exec"]["command"])
    assert str(budget) in command
    shrunk = [d for d in outcome.report.decisions if d.reason.value == "grace-too-short"]
    assert bool(shrunk) == (budget < 10)


def test_grace_too_short_skips_forensics():
    original = pods.pod(container(command=["/app"], ports=[{"containerPort": 80}]), terminationGracePeriodSeconds=3)
    mutated, outcome = run(original)
    assert reasons(outcome, "app")["forensics"] == "grace-too-short"
    assert "lifecycle" not in c0(mutated)


def test_existing_probes_are_kept():
    probe = {"httpGet": {"path": "/ok", "port": 80}, "periodSeconds": 2}
    original = pods.pod(container(command=["/app"], ports=[{"containerPort": 80}], livenessProbe=probe))
    mutated, outcome = run(original)
    assert c0(mutated)["livenessProbe"] == probe


@pytest.mark.parametrize("volume", ["podmedic-toolbox", "podmedic-logs", "podmedic-state"])
def test_volume_named_like_ours_skips_toolbox_and_logs(volume):
    original = pods.pod(container(command=["/app"], ports=[{"containerPort": 80}]),
                        volumes=[{"name": volume, "emptyDir": {}}])
    mutated, outcome = run(original)
    r = reasons(outcome, "app")
    assert r["supervisor"] == r["forensics"] == r["logs"] == "name-conflict"
    assert r["probes"] == "injected"
    assert [v["name"] for v in mutated["spec"]["volumes"]] == [volume]


@pytest.mark.parametrize("keep_init", [True, False])
def test_a_copy_of_an_injected_pod_without_its_marker_is_not_injected_again(keep_init):
    """kubectl debug --copy-to: annotations and probes dropped, the rest copied (tests/node/test_debug.py)."""
    injected, _ = run(pods.pod(container(command=["/app"], ports=[{"containerPort": 80}])))
    copied = copy.deepcopy(injected)
    del copied["metadata"]["annotations"]
    for key in ("livenessProbe", "readinessProbe", "startupProbe"):
        c0(copied).pop(key, None)
    if not keep_init:
        del copied["spec"]["initContainers"]
    _, outcome = run(copied)
    (decision,) = outcome.report.decisions
    assert (decision.feature, decision.reason) == ("pod", Reason.COPY_OF_INJECTED) and outcome.ops == []
    assert decision.detail == ("init container podmedic-logdir" if keep_init
                               else "container app mounts podmedic-toolbox at /podmedic")


def _kubectl_debug_copy(injected: dict[str, Any], keep_init: bool) -> dict[str, Any]:
    """What `kubectl debug --copy-to` makes of an injected pod: annotations and probes dropped,
    init containers too with --keep-init-containers=false, the rest copied."""
    copied = copy.deepcopy(injected)
    copied["metadata"].pop("annotations", None)
    for key in ("livenessProbe", "readinessProbe", "startupProbe"):
        c0(copied).pop(key, None)
    if not keep_init:
        copied["spec"].pop("initContainers", None)
    return copied


def test_a_copy_of_a_logs_only_injection_without_init_containers_is_not_injected_again():
    """forensics disabled: no toolbox, only the log directory's init container, which
    --keep-init-containers=false drops; the log mount at podmedic's subPathExpr is what remains
    of the injection."""
    settings = {"podmedic.io/inject": "enabled", "podmedic.io/forensics": "disabled"}
    injected, _ = run(pods.pod(container(command=["/app"], ports=[{"containerPort": 80}])), settings)
    _, outcome = run(_kubectl_debug_copy(injected, keep_init=False), settings)
    (decision,) = outcome.report.decisions
    assert (decision.feature, decision.reason) == ("pod", Reason.COPY_OF_INJECTED) and outcome.ops == []
    assert decision.detail == "container app mounts podmedic-logs at podmedic's subPathExpr"


def test_a_users_pod_env_and_podmedic_logs_volume_are_no_copy():
    """A user's pod may set PODMEDIC_POD_NAME from the downward API itself and name its own
    emptyDir podmedic-logs: podmedic only adds that env together with its subPathExpr mount, so
    the env alone marks no copy and the pod keeps its probes (the reviewer's pod_env.yaml)."""
    original = pods.pod(container(ports=[{"name": "http", "containerPort": 8080}],
                                  env=[delivery.pod_env()[0]],
                                  volumeMounts=[{"name": "podmedic-logs", "mountPath": "/var/log/app"}]),
                        volumes=[{"name": "podmedic-logs", "emptyDir": {}}])
    mutated, outcome = run(original)
    r = reasons(outcome, "app")
    assert reasons(outcome) == {} and r["probes"] == "injected"
    assert r["logs"] == r["forensics"] == "name-conflict"
    assert {"readinessProbe", "livenessProbe", "startupProbe"} <= c0(mutated).keys()


def test_a_volume_named_podmedic_logs_mounted_by_the_user_is_no_copy():
    """Only podmedic's subPathExpr (the kubelet's pod directory naming over its env) marks a copy."""
    original = pods.pod(container(command=["/app"], ports=[{"containerPort": 80}],
                                  volumeMounts=[{"name": "podmedic-logs", "mountPath": "/data", "subPath": "app"}]),
                        volumes=[{"name": "podmedic-logs", "emptyDir": {}}])
    _, outcome = run(original)
    r = reasons(outcome, "app")
    assert r["logs"] == "name-conflict" and r["probes"] == "injected"


def test_a_copy_of_a_probes_only_injection_gets_probes_again():
    """Nothing of a probes-only injection survives the copy but the probes kubectl drops: podmedic
    cannot tell the copy from a new pod (docs/toolbox.md, kubectl debug)."""
    settings = {"podmedic.io/inject": "enabled", "podmedic.io/logs": "disabled", "podmedic.io/forensics": "disabled"}
    injected, _ = run(pods.pod(container(command=["/app"], ports=[{"containerPort": 80}])), settings)
    assert "initContainers" not in injected["spec"] and "volumes" not in injected["spec"]
    _, outcome = run(_kubectl_debug_copy(injected, keep_init=True), settings)
    assert reasons(outcome, "app")["probes"] == "injected"


@pytest.mark.parametrize("written", ["/var/log/podmedic/", "//var/log/podmedic", "/var/log/./podmedic",
                                     "/var/log/x/../podmedic"])
def test_a_mount_at_the_log_path_written_otherwise_is_a_conflict(written):
    """The API server compares mountPaths as written and admits both; on the node the later mount
    (ours) would hide the app's own volume."""
    original = pods.pod(container("a", command=["a"], volumeMounts=[{"name": "data", "mountPath": written}]),
                        volumes=[{"name": "data", "emptyDir": {}}])
    _, outcome = run(original)
    assert reasons(outcome, "a")["logs"] == "mount-conflict"


def test_mounts_placed_like_ours_skip_that_container_only():
    original = pods.pod(
        container("a", command=["a"], ports=[{"containerPort": 1}],
                  volumeMounts=[{"name": "data", "mountPath": "/var/log/podmedic"}, {"name": "data2", "mountPath": "/podmedic"}]),
        container("b", command=["b"], ports=[{"containerPort": 2}]),
        volumes=[{"name": "data", "emptyDir": {}}, {"name": "data2", "emptyDir": {}}])
    mutated, outcome = run(original)
    assert reasons(outcome, "a")["logs"] == "mount-conflict"
    assert reasons(outcome, "a")["supervisor"] == reasons(outcome, "a")["forensics"] == "mount-conflict"
    assert reasons(outcome, "b")["logs"] == "injected"


def test_env_conflict_skips_logs():
    original = pods.pod(container(command=["/app"], env=[{"name": "PODMEDIC_POD_NAME", "value": "x"}]))
    mutated, outcome = run(original)
    assert reasons(outcome, "app")["logs"] == "env-conflict"


def test_run_as_non_root_pod():
    original = pods.pod(container(command=["/app"], ports=[{"containerPort": 80}]),
                        securityContext={"runAsNonRoot": True, "runAsUser": 1000, "fsGroup": 2000})
    mutated, outcome = run(original)
    inits = {c["name"]: c for c in mutated["spec"]["initContainers"]}
    assert inits["podmedic-toolbox"]["securityContext"]["runAsUser"] != 0
    # the log dir preparer runs as its owner (root) explicitly, overriding the pod's runAsNonRoot
    assert inits["podmedic-logdir"]["securityContext"]["runAsNonRoot"] is False


@pytest.mark.parametrize("level,logs", [(None, "injected"), ("privileged", "injected"),
                                        ("baseline", "psa-forbids-hostpath"), ("restricted", "psa-forbids-hostpath")])
def test_pod_security_levels(level, logs):
    labels = {"pod-security.kubernetes.io/enforce": level} if level else {}
    original = pods.pod(container(command=["/app"], ports=[{"containerPort": 80}]))
    mutated, outcome = run(original, labels=labels)
    assert reasons(outcome, "app")["logs"] == logs
    hostpaths = [v for v in mutated["spec"].get("volumes", []) if "hostPath" in v]
    assert bool(hostpaths) == (logs == "injected")
    if logs != "injected":
        assert not any(c["name"] == delivery.LOGDIR_INIT for c in mutated["spec"]["initContainers"])
        # forensics falls back to the termination message
        assert "/var/log/podmedic" not in " ".join(c0(mutated)["lifecycle"]["preStop"]["exec"]["command"])


@pytest.mark.parametrize("feature", ["probes", "supervisor", "logs", "forensics"])
def test_each_feature_alone(feature):
    annotations = {PREFIX + "inject": "enabled"}
    for f in ("probes", "supervisor", "logs", "forensics"):
        annotations[PREFIX + f] = "enabled" if f == feature else "disabled"
    original = pods.pod(container(command=["/app"], ports=[{"containerPort": 80}]))
    mutated, outcome = run(original, annotations)
    applied = {d.feature for d in outcome.report.decisions if d.reason is Reason.INJECTED}
    assert applied == {feature}
    uses_toolbox = feature in ("supervisor", "forensics")
    assert any(c["name"] == "podmedic-toolbox" for c in mutated["spec"].get("initContainers", [])) == uses_toolbox


def test_log_root_per_namespace_and_tenant_cannot_choose_host_path():
    cfg = from_mapping({**_raw_config(), "logs": {"hostRoot": "/mnt/cephfs/podmedic",
                                                           "namespaceRoots": {"team-a": "/mnt/cephfs/team-a"}}})
    original = pods.pod(container(command=["/app"]), annotations={PREFIX + "log-path": "/data/logs",
                                                                 PREFIX + "log-root": "/etc"})
    ns = Namespace("team-a", {PREFIX + "inject": "enabled", PREFIX + "host-path": "/"}, {})
    outcome = engine.inject(copy.deepcopy(original), StaticSource([ns]).get("team-a"), cfg)
    mutated = apply_checked(original, outcome.ops)
    hostpaths = [v["hostPath"]["path"] for v in mutated["spec"]["volumes"] if "hostPath" in v]
    assert hostpaths == ["/mnt/cephfs/team-a"]
    assert mounts(c0(mutated))["podmedic-logs"]["mountPath"] == "/data/logs"


@pytest.mark.parametrize("path", ["relative/logs", "/var/../etc", "/var/log/", "/", "/a//b"])
def test_log_path_must_be_absolute_and_normalised(path):
    original = pods.pod(container(command=["/app"]), annotations={PREFIX + "log-path": path})
    mutated, outcome = run(original)
    assert reasons(outcome, "app")["logs"] == "invalid-value"
    assert "podmedic-logs" not in mounts(c0(mutated))


def test_already_injected_pod_is_left_alone():
    mutated, _ = run(pods.pod(container(command=["/app"], ports=[{"containerPort": 80}])))
    ns = Namespace("demo", {PREFIX + "inject": "enabled", PREFIX + "probes": "disabled"}, {})
    again = engine.inject(copy.deepcopy(mutated), StaticSource([ns]).get("demo"), CONFIG)
    assert again.ops == [] and again.report.decisions[0].reason.value == "already-injected"


def test_marker_stripped_still_never_duplicates():
    mutated, _ = run(pods.pod(container(command=["/app"], ports=[{"containerPort": 80}])))
    del mutated["metadata"]["annotations"][PREFIX + "status"]
    ns = Namespace("demo", dict(ALL_ON), {})
    outcome = engine.inject(copy.deepcopy(mutated), StaticSource([ns]).get("demo"), CONFIG)
    twice = apply_checked(mutated, outcome.ops)
    assert twice["spec"]["initContainers"] == mutated["spec"]["initContainers"]
    assert twice["spec"]["volumes"] == mutated["spec"]["volumes"]
    assert c0(twice)["command"] == c0(mutated)["command"]
    assert c0(twice)["env"] == c0(mutated)["env"]


def test_mutator_error_skips_only_that_feature(monkeypatch):
    def boom(ctx, target, patch):
        patch.set(target.path + ("tty",), True)  # emitted, then rolled back
        raise RuntimeError("bug")

    features = tuple(engine.Feature(f.name, boom if f.name == "logs" else f.mutate, f.targets)
                     for f in engine.FEATURES)
    monkeypatch.setattr(engine, "FEATURES", features)
    original = pods.pod(container(command=["/app"], ports=[{"containerPort": 80}]))
    mutated, outcome = run(original)
    assert reasons(outcome, "app")["logs"] == "mutator-error"
    assert reasons(outcome, "app")["probes"] == "injected"
    assert "tty" not in c0(mutated) and "podmedic-logs" not in mounts(c0(mutated))
    deny = from_mapping({**_raw_config(), "onError": "deny"})
    denied = engine.inject(copy.deepcopy(original), StaticSource([Namespace("demo", ALL_ON, {})]).get("demo"), deny)
    assert denied.denied and denied.ops == []


def _raw_config() -> dict[str, Any]:
    return configfile._embedded()


def test_empty_annotation_values_fall_through_to_the_next_level():
    original = pods.pod(container(command=["/app"], ports=[{"containerPort": 80}]),
                        annotations={PREFIX + "log-path": "", PREFIX + "forensics-budget-seconds": ""})
    mutated, outcome = run(original, {PREFIX + "inject": "enabled", PREFIX + "log-path": ""})
    assert mounts(c0(mutated))["podmedic-logs"]["mountPath"] == "/var/log/podmedic"
    assert reasons(outcome, "app")["forensics"] == "injected"


@pytest.mark.parametrize("os_name", ["windows", "Linux", ""])
def test_a_pod_for_another_os_is_not_injected(os_name):
    """The toolbox is Linux binaries, and the API server rejects the Linux-only securityContext
    fields of podmedic's init containers in a Windows pod: anything but "linux" is skipped."""
    original = pods.pod(container(command=["/app"], ports=[{"containerPort": 80}]), os={"name": os_name})
    mutated, outcome = run(original)
    assert outcome.ops == [] and mutated == original
    assert [(d.feature, d.reason.value, d.detail) for d in outcome.report.decisions] == [
        ("pod", "not-linux", f"spec.os.name={os_name!r}")]
    assert outcome.report.warnings(PREFIX)[0].startswith("podmedic: pod: the pod runs only on")


WINDOWS_AFFINITY = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
    {"matchExpressions": [{"key": "kubernetes.io/os", "operator": "In", "values": ["windows"]}]},
    {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
                          {"key": "kubernetes.io/os", "operator": "NotIn", "values": ["linux"]}]}]}}}
HOST_PROCESS = {"windowsOptions": {"hostProcess": True}}


@pytest.mark.parametrize("spec, detail", [
    ({"nodeSelector": {"kubernetes.io/os": "windows"}}, "nodeSelector kubernetes.io/os=windows"),
    ({"nodeSelector": {"beta.kubernetes.io/os": "windows"}}, "nodeSelector beta.kubernetes.io/os=windows"),
    ({"affinity": WINDOWS_AFFINITY}, "required node affinity excludes kubernetes.io/os=linux"),
    ({"hostNetwork": True, "securityContext": HOST_PROCESS}, "windowsOptions.hostProcess"),
    ({"hostNetwork": True, "container": {"securityContext": HOST_PROCESS}}, "windowsOptions.hostProcess"),
], ids=["node-selector", "beta-node-selector", "affinity", "host-process-pod", "host-process-container"])
def test_a_pod_that_only_runs_on_windows_without_spec_os_is_not_injected(spec, detail):
    """spec.os is optional: most Windows manifests pick their nodes by the kubernetes.io/os label,
    and HostProcess containers exist only on Windows. Such a pod is skipped like spec.os windows."""
    spec = dict(spec)
    original = pods.pod(container(command=["/app"], ports=[{"containerPort": 80}], **spec.pop("container", {})),
                        **spec)
    mutated, outcome = run(original)
    assert outcome.ops == [] and mutated == original
    assert [(d.feature, d.reason.value, d.detail) for d in outcome.report.decisions] == [
        ("pod", "not-linux", detail)]
    assert outcome.report.warnings(PREFIX)[0].startswith("podmedic: pod: the pod runs only on")


def _os_term(operator: str, *values: str) -> dict[str, Any]:
    return {"matchExpressions": [{"key": "kubernetes.io/os", "operator": operator, "values": list(values)}]}


@pytest.mark.parametrize("spec", [
    {"nodeSelector": {"kubernetes.io/os": "linux", "disktype": "ssd"}},
    {"nodeSelector": {"disktype": "ssd"}},
    {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        _os_term("In", "windows"), _os_term("In", "windows", "linux")]}}}},
    {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        _os_term("NotIn", "windows"), {"matchExpressions": [{"key": "disktype", "operator": "Exists"}]}]}}}},
    {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 1, "preference": _os_term("In", "windows")}]}}},
    {"hostNetwork": True, "securityContext": {"windowsOptions": {"hostProcess": False, "runAsUserName": "x"}}},
    {"securityContext": {"windowsOptions": {"runAsUserName": "ContainerUser"}}},
], ids=["selector-linux", "selector-other", "one-term-allows-linux", "notin-windows", "preferred-only",
        "host-process-false", "windows-options-without-host-process"])
def test_a_pod_that_may_run_on_linux_is_injected(spec):
    """Node selector terms are ORed: one term that lets the pod land on Linux is enough to inject;
    a preferred affinity or windowsOptions without hostProcess (ignored on Linux) decide nothing."""
    _, outcome = run(pods.pod(container(command=["/app"], ports=[{"containerPort": 80}]), **spec))
    assert outcome.ops and reasons(outcome, "app")["supervisor"] == "injected"


def test_a_mirror_pod_is_not_injected():
    """The kubelet runs a static pod from the manifest on its disk, not from its mirror pod in the
    API server: a mutated mirror pod would show init containers and mounts that never run."""
    original = pods.pod(container(command=["/app"], ports=[{"containerPort": 80}]),
                        annotations={"kubernetes.io/config.mirror": "4c6ad3a2b0e9f0f3"})
    mutated, outcome = run(original)
    assert outcome.ops == [] and mutated == original
    assert [(d.feature, d.reason.value) for d in outcome.report.decisions] == [("pod", "mirror-pod")]
    assert outcome.report.warnings(PREFIX) == []


def test_a_linux_pod_is_injected():
    _, outcome = run(pods.pod(container(command=["/app"], ports=[{"containerPort": 80}]), os={"name": "linux"}))
    assert outcome.ops and reasons(outcome, "app")["supervisor"] == "injected"


_OURS = "podmedic mounts its own volume at /podmedic"
_RUNTIME = "the container runtime or the kubelet mounts {} in every container"


@pytest.mark.parametrize(("path", "why"), [
    ("/podmedic", _OURS), ("/podmedic/logs", _OURS), ("/podmedic-state", _OURS), ("/podmedic-state/logs", _OURS),
    *((path, _RUNTIME.format(owner)) for path, owner in [
        ("/proc", "/proc"), ("/proc/sys/x", "/proc"), ("/sys", "/sys"), ("/sys/fs/cgroup", "/sys"), ("/dev", "/dev"),
        ("/dev/null", "/dev"), ("/dev/termination-log", "/dev"), ("/etc/hosts", "/etc/hosts"),
        ("/etc/hostname", "/etc/hostname"), ("/etc/resolv.conf", "/etc/resolv.conf"),
        ("/etc/resolv.conf/x", "/etc/resolv.conf")])])
def test_a_log_path_where_a_mount_cannot_go_is_invalid(path, why):
    """A mount point inside the read-only toolbox fails at container creation (EROFS), and one
    at the same path as ours makes verification drop the whole patch. Measured on the real node:
    /proc, /dev, a device in it, anything under a file the kubelet mounts and a new directory in
    /sys fail at container creation; /sys, /etc/hosts and /etc/resolv.conf start but hide sysfs
    (the cgroup files the supervisor reads), the pod's own names and its DNS. The logs feature is
    skipped with a warning naming the annotation, the other features still go in."""
    original = pods.pod(container(command=["/app"], ports=[{"containerPort": 80}]),
                        annotations={PREFIX + "log-path": path})
    mutated, outcome = run(original)
    r = reasons(outcome, "app")
    assert r["logs"] == "invalid-value" and r["supervisor"] == r["forensics"] == "injected"
    detail = next(d.detail for d in outcome.report.decisions if d.feature == "logs")
    assert detail.startswith(f"{PREFIX}log-path={path!r} is invalid: {why}")
    assert "podmedic-logs" not in mounts(c0(mutated))


@pytest.mark.parametrize("path", ["/procfs", "/system", "/devices/x", "/etc/hosts.d", "/etc/app", "/var/proc"])
def test_a_log_path_beside_what_the_runtime_mounts_is_fine(path):
    _, outcome = run(pods.pod(container(command=["/app"], ports=[{"containerPort": 80}]),
                              annotations={PREFIX + "log-path": path}))
    assert reasons(outcome, "app")["logs"] == "injected"


@pytest.mark.parametrize(("term", "path", "reason"), [
    ("/tmp/term", "/tmp/term", "mount-conflict"), ("/tmp/term", "/tmp/term/x", "mount-conflict"),
    ("/tmp/term/", "/tmp/term", "mount-conflict"), ("/tmp/app/term", "/tmp/app", "injected"),
    ("/tmp/term", "/tmp/terminal", "injected")])
def test_a_log_path_at_or_under_the_termination_message_file_is_a_mount_conflict(term, path, reason):
    """The kubelet mounts the termination message file at the container's terminationMessagePath:
    a directory at that path or under it fails at container creation ("not a directory", measured
    on the real node); above it the file simply lands in the log directory."""
    original = pods.pod(container(command=["/app"], ports=[{"containerPort": 80}], terminationMessagePath=term),
                        annotations={PREFIX + "log-path": path})
    _, outcome = run(original)
    assert reasons(outcome, "app")["logs"] == reason
    if reason == "mount-conflict":
        assert {d.detail for d in outcome.report.decisions if d.feature == "logs"} == {f"terminationMessagePath {term}"}


RO = "read-only-mount"


@pytest.mark.parametrize(("mount", "volume", "path", "detail"), [
    ({"mountPath": "/app", "readOnly": True}, {"emptyDir": {}}, "/app/logs", "/app: readOnly on the mount (volume v)"),
    ({"mountPath": "//var/"}, {"image": {"reference": "app:1"}}, None, "//var/: image volume v (always read-only)"),
    ({"mountPath": "/var/log"}, {"persistentVolumeClaim": {"claimName": "c", "readOnly": True}}, None,
     "/var/log: readOnly on volume v's persistentVolumeClaim"),
    ({"mountPath": "/var/log", "readOnly": True}, {"persistentVolumeClaim": {"claimName": "c"}}, None,
     "/var/log: readOnly on the mount (volume v)"),
    ({"mountPath": "/var/log"}, {"emptyDir": {}}, None, None),
    ({"mountPath": "/var/log", "readOnly": True}, {"configMap": {"name": "c"}}, None, None),
    ({"mountPath": "/var", "readOnly": True}, {"secret": {"secretName": "s"}}, None, None),
    ({"mountPath": "/var"}, {"downwardAPI": {"items": []}}, None, None),
    ({"mountPath": "/var"}, {"projected": {"sources": []}}, None, None),
    ({"mountPath": "/var/log", "subPath": "d"}, {"configMap": {"name": "c"}}, None,
     "/var/log: configMap volume v by subPath (the kubelet makes the mount point at the volume's root)"),
    ({"mountPath": "var/log"}, {"configMap": {"name": "c"}}, None,
     "var/log: configMap volume v by a relative path (the kubelet makes no mount point in it)"),
    ({"mountPath": "/var", "subPathExpr": "d"}, {"projected": {"sources": []}}, None,
     "/var: projected volume v by subPath (the kubelet makes the mount point at the volume's root)"),
    ({"mountPath": "/var/x/..", "readOnly": True}, {"emptyDir": {}}, None, "/var/x/..: readOnly on the mount (volume v)"),
    ({"mountPath": "/var/log/../log", "readOnly": True}, {"emptyDir": {}}, None,
     "/var/log/../log: readOnly on the mount (volume v)"),
    ({"mountPath": "/var/log/podmedic/..", "readOnly": True}, {"emptyDir": {}}, None,
     "/var/log/podmedic/..: readOnly on the mount (volume v)"),
    ({"mountPath": "var/../var/log", "readOnly": True}, {"emptyDir": {}}, None,
     "var/../var/log: readOnly on the mount (volume v)"),
    ({"mountPath": "var", "readOnly": True}, {"emptyDir": {}}, None, "var: readOnly on the mount (volume v)"),
    ({"mountPath": "/var/../app", "readOnly": True}, {"emptyDir": {}}, None, None),
    ({"mountPath": "/app", "readOnly": True}, {"emptyDir": {}}, "/application/logs", None),
    ({"mountPath": "/app/logs/x", "readOnly": True}, {"emptyDir": {}}, "/app/logs", None)])
def test_a_read_only_mount_above_the_log_path_skips_logs(mount, volume, path, detail):
    """The runtime creates the log directory's mount point inside the app's volume above it: in a
    read-only one it cannot, and the container fails at creation (EROFS, measured on the real
    node: tests/node/test_mount_above_log_path.py). The kubelet makes that mount point itself in
    its configMap, secret, downwardAPI and projected volumes -- at the volume's root, so not in
    a subPath of one; a writable one gains an empty directory; a mount beside or below the log
    path holds none. Paths as the runtime cleans them (rooted, `..` resolved). The other
    features stay."""
    original = pods.pod(container(command=["/app"], ports=[{"containerPort": 80}],
                                  volumeMounts=[{"name": "v", **mount}]),
                        volumes=[{"name": "v", **volume}],
                        annotations={PREFIX + "log-path": path} if path else {})
    mutated, outcome = run(original)
    r = reasons(outcome, "app")
    assert r["logs"] == (RO if detail else "injected")
    assert r["supervisor"] == r["probes"] == "injected"
    if detail:
        assert {d.detail for d in outcome.report.decisions if d.feature == "logs"} == {detail}
        assert "podmedic-logs" not in mounts(c0(mutated))


_PVC_RO = {"persistentVolumeClaim": {"claimName": "c", "readOnly": True}}


@pytest.mark.parametrize(("mounts_", "path", "detail"), [
    # only the deepest mount above counts: the runtime mounts by depth and creates the log
    # directory's mount point in the deepest one
    ([("ro", "/data"), ("w", "/data/logs")], "/data/logs/app", None),
    ([("w", "/data"), ("ro", "/data/logs")], "/data/logs/app", "/data/logs: readOnly on volume ro's persistentVolumeClaim"),
    ([("ro2", "/data/logs"), ("ro", "/data")], "/data/logs/app", "/data/logs: readOnly on the mount (volume ro2)"),
    ([("ro", "/data/x/.."), ("w", "/data/./logs")], "/data/logs/app", None),
    ([("w", "/data/logs/.."), ("ro", "/data")], "/data/logs/app", "/data: readOnly on volume ro's persistentVolumeClaim"),
    # the same cleaned path twice: conservatively, any read-only one among them blocks
    ([("ro", "/data/"), ("w", "/data")], "/data/logs", "/data/: readOnly on volume ro's persistentVolumeClaim"),
    ([("w", "/data"), ("ro", "data")], "/data/logs", "data: readOnly on volume ro's persistentVolumeClaim")])
def test_only_the_deepest_mount_above_the_log_path_decides(mounts_, path, detail):
    """ro: a read-only claim; ro2: an emptyDir mounted readOnly; w: a writable emptyDir."""
    volumes = {"ro": _PVC_RO, "w": {"emptyDir": {}}, "ro2": {"emptyDir": {}}}
    spec_mounts = [{"name": n, "mountPath": p, **({"readOnly": True} if n == "ro2" else {})} for n, p in mounts_]
    original = pods.pod(container(command=["/app"], ports=[{"containerPort": 80}], volumeMounts=spec_mounts),
                        volumes=[{"name": n, **volumes[n]} for n, _ in mounts_],
                        annotations={PREFIX + "log-path": path})
    _, outcome = run(original)
    assert reasons(outcome, "app")["logs"] == (RO if detail else "injected")
    if detail:
        assert {d.detail for d in outcome.report.decisions if d.feature == "logs"} == {detail}


@pytest.mark.parametrize("where", ["namespace", "container"])
def test_a_read_only_mount_above_a_namespace_or_container_log_path_skips_logs(where):
    """Whichever level sets the log path, the check is on the container's resolved path."""
    original = pods.pod(container(command=["/app"], ports=[{"containerPort": 80}],
                                  volumeMounts=[{"name": "v", "mountPath": "/srv/../data/", "readOnly": True}]),
                        volumes=[{"name": "v", "emptyDir": {}}],
                        annotations={PREFIX + "log-path.app": "/data/logs"} if where == "container" else {})
    ns = {**ALL_ON, PREFIX + "log-path": "/data/logs"} if where == "namespace" else None
    _, outcome = run(original, ns)
    assert reasons(outcome, "app")["logs"] == RO
    assert {d.detail for d in outcome.report.decisions if d.feature == "logs"} == {
        "/srv/../data/: readOnly on the mount (volume v)"}


def test_a_log_path_beside_podmedics_mounts_is_fine():
    _, outcome = run(pods.pod(container(command=["/app"], ports=[{"containerPort": 80}]),
                              annotations={PREFIX + "log-path": "/podmedic-logs/app"}))
    assert reasons(outcome, "app")["logs"] == "injected"


@pytest.mark.parametrize("path", ["/podmedic/conf", "/podmedic/", "//podmedic", "/podmedic-state/x", "/",
                                  "/x/../podmedic", "podmedic/x", "/podmedic-state/x/../..", "/a/../podmedic-state/."])
def test_a_mount_inside_or_above_the_toolbox_is_a_mount_conflict(path):
    """By path components: inside the read-only toolbox (EROFS at container creation), the same
    path spelled otherwise, or above it."""
    original = pods.pod(container(command=["/app"], ports=[{"containerPort": 80}],
                                  volumeMounts=[{"name": "conf", "mountPath": path}]),
                        volumes=[{"name": "conf", "emptyDir": {}}])
    _, outcome = run(original)
    r = reasons(outcome, "app")
    assert r["supervisor"] == r["forensics"] == "mount-conflict"
    assert {d.detail for d in outcome.report.decisions if d.feature == "supervisor"} == {path}


@pytest.mark.parametrize("path", ["/podmedic-conf", "/podmedic/../app", "/podmedic-state/../podmedic-x"])
def test_a_mount_beside_the_toolbox_is_no_conflict(path):
    """Beside it, also when spelled through it: the runtime cleans `..` away."""
    original = pods.pod(container(command=["/app"], ports=[{"containerPort": 80}],
                                  volumeMounts=[{"name": "conf", "mountPath": path}]),
                        volumes=[{"name": "conf", "emptyDir": {}}])
    _, outcome = run(original)
    assert reasons(outcome, "app")["supervisor"] == reasons(outcome, "app")["forensics"] == "injected"


def test_a_container_annotation_naming_no_container_is_reported():
    """`probes.wbe` for a container named web is a typo: it is ignored, and the user is told."""
    original = pods.pod(container("web", command=["/app"], ports=[{"containerPort": 80}]),
                        annotations={PREFIX + "probes.wbe": "disabled", PREFIX + "probes.web": "enabled"})
    _, outcome = run(original)
    assert reasons(outcome, "web")["probes"] == "injected"
    assert [(d.feature, d.reason.value, d.detail) for d in outcome.report.decisions if d.feature == "settings"] == [
        ("settings", "unknown-container", PREFIX + "probes.wbe")]
    assert any("names a container the pod does not have" in w for w in outcome.report.warnings(PREFIX))


def test_an_invalid_pod_switch_skips_every_container_but_one_with_its_own_value():
    """The engine looks a feature's switch up once for the containers without annotations of
    their own: each of them still gets its own invalid-value decision (same message, in
    container order), and a container with a valid `<key>.<container>` value gets the feature."""
    original = pods.pod(container("a", command=["a"]), container("b", command=["b"]), container("c", command=["c"]),
                        annotations={PREFIX + "supervisor": "yes", PREFIX + "supervisor.b": "enabled"})
    mutated, outcome = run(original)
    supervisor = [(d.container, d.reason.value, d.detail) for d in outcome.report.decisions if d.feature == "supervisor"]
    invalid = f"{PREFIX}supervisor='yes' is invalid: expected enabled or disabled"
    assert [(c, r) for c, r, _ in supervisor] == [("a", "invalid-value"), ("b", "injected"), ("c", "invalid-value")]
    assert supervisor[0][2] == supervisor[2][2] == invalid
    assert [c["command"][0].startswith("/podmedic/") for c in mutated["spec"]["containers"]] == [False, True, False]

"""Mixed-architecture clusters: the toolbox is static binaries for the architectures in
toolbox.architectures only. A pod that can only land on other nodes (kubernetes.io/arch) gets
none of the features that need podmedic's init containers (arch-unsupported, a warning), and
keeps the probes that need nothing of podmedic's image."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests import pods
from tests.engine.test_mutations import PREFIX, reasons
from tests.pods import apply_checked, container
from webhook import engine
from webhook.cli import config as configfile
from webhook.engine.config import GlobalConfig, from_mapping
from webhook.engine.namespace import Namespace
from webhook.kube.namespaces import StaticSource

TOOLBOX_FEATURES = ("logs", "supervisor", "forensics")


def amd64_only() -> GlobalConfig:
    raw = configfile._embedded()
    return from_mapping({**raw, "toolbox": {**raw["toolbox"], "architectures": ["amd64"]}})


AMD64 = amd64_only()


def run_amd64(pod: dict[str, Any], config: GlobalConfig = AMD64) -> tuple[dict[str, Any], engine.Outcome]:
    ns = Namespace("demo", {"podmedic.io/inject": "enabled", "podmedic.io/supervisor": "enabled"}, {})
    outcome = engine.inject(copy.deepcopy(pod), StaticSource([ns]).get("demo"), config)
    mutated = apply_checked(pod, outcome.ops)
    assert engine.inject(copy.deepcopy(mutated), StaticSource([ns]).get("demo"), config).ops == []
    return mutated, outcome


def _term(*expressions: tuple[str, str, Any]) -> dict[str, Any]:
    return {"matchExpressions": [{"key": key, "operator": op, "values": values} for key, op, values in expressions]}


def _required(*terms: dict[str, Any]) -> dict[str, Any]:
    return {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": list(terms)}}}}


ARCH = "kubernetes.io/arch"


def _app_pod(**spec: Any) -> dict[str, Any]:
    return pods.pod(container(command=["/app"], ports=[{"containerPort": 80}]), **spec)


@pytest.mark.parametrize("spec, detail", [
    ({"nodeSelector": {ARCH: "arm64"}}, "nodeSelector kubernetes.io/arch=arm64"),
    ({"nodeSelector": {"beta.kubernetes.io/arch": "arm64"}}, "nodeSelector beta.kubernetes.io/arch=arm64"),
    (_required(_term((ARCH, "In", ["arm64"]))), "required node affinity on kubernetes.io/arch"),
    (_required(_term((ARCH, "NotIn", ["amd64"]))), "required node affinity on kubernetes.io/arch"),
    (_required(_term((ARCH, "In", ["arm64"])), _term(("disktype", "In", ["ssd"]), (ARCH, "In", ["s390x"]))),
     "required node affinity on kubernetes.io/arch"),
    (_required(_term((ARCH, "In", ["amd64", "arm64"]), (ARCH, "NotIn", ["amd64"]))),
     "required node affinity on kubernetes.io/arch"),
    ({"nodeSelector": {ARCH: "amd64"}, **_required(_term((ARCH, "NotIn", ["amd64"])))},
     "required node affinity on kubernetes.io/arch"),
], ids=["selector", "beta-selector", "in-arm64", "notin-amd64", "every-term-elsewhere", "expressions-anded",
        "selector-and-affinity"])
def test_a_pod_only_for_other_architectures_gets_no_init_containers(spec, detail):
    """Before: the pod got podmedic's amd64 init containers and a supervise command, and on an
    arm64 node it never started (exec format error)."""
    original = _app_pod(**spec)
    mutated, outcome = run_amd64(original)
    r = reasons(outcome, "app")
    assert {f: r[f] for f in TOOLBOX_FEATURES} == dict.fromkeys(TOOLBOX_FEATURES, "arch-unsupported")
    assert r["probes"] == "injected" and "tcpSocket" in mutated["spec"]["containers"][0]["readinessProbe"]
    assert "initContainers" not in mutated["spec"] and "volumes" not in mutated["spec"]
    assert mutated["spec"]["containers"][0]["command"] == ["/app"]
    details = {d.detail for d in outcome.report.decisions if d.reason.value == "arch-unsupported"}
    assert len(details) == 1 and details.pop().startswith(detail)
    warnings = outcome.report.warnings(PREFIX)
    assert any("toolbox.architectures" in w and "amd64" in w for w in warnings), warnings


@pytest.mark.parametrize("spec", [
    {},
    {"nodeSelector": {ARCH: "amd64"}},
    {"nodeSelector": {"disktype": "ssd"}},
    _required(_term((ARCH, "In", ["arm64"])), _term((ARCH, "In", ["amd64"]))),
    _required(_term((ARCH, "In", ["arm64", "amd64"]))),
    _required(_term((ARCH, "NotIn", ["arm64"]))),
    _required(_term((ARCH, "Exists", None))),
    _required(_term(("disktype", "In", ["ssd"]))),
    {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 1, "preference": _term((ARCH, "In", ["arm64"]))}]}}},
], ids=["none", "selector-amd64", "selector-other", "one-term-allows-amd64", "in-both", "notin-arm64", "exists",
        "other-label", "preferred-only"])
def test_a_pod_that_may_run_on_a_toolbox_architecture_is_injected(spec):
    mutated, outcome = run_amd64(_app_pod(**spec))
    r = reasons(outcome, "app")
    assert {f: r[f] for f in TOOLBOX_FEATURES} == dict.fromkeys(TOOLBOX_FEATURES, "injected")
    assert [c["name"] for c in mutated["spec"]["initContainers"]] == ["podmedic-logdir", "podmedic-toolbox"]


@pytest.mark.parametrize("affinity", [
    {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": "arm64"}}},
    {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": ["arm64"]}}},
    {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": ["arm64"]}]}}},
    {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": ARCH, "operator": "In", "values": "arm64"}]}]}}},
    {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": ARCH, "operator": "In", "values": [64]}]}]}}},
    {"nodeAffinity": "arm64"},
    {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": ["arm64"]}},
], ids=["terms-not-a-list", "term-not-a-map", "expression-not-a-map", "values-not-a-list", "value-not-a-string",
        "node-affinity-not-a-map", "required-not-a-map"])
def test_a_malformed_affinity_breaks_nothing(affinity):
    """The API server refuses such a pod after admission: the review must not fail on it (no
    mutator-error, no exception), and a malformed term or expression (values not a list of
    strings: `values: "arm64"` is not [arm64]) rules no node out, so the pod is injected."""
    outcome = _decide(_app_pod(affinity=affinity))
    assert "mutator-error" not in {d.reason.value for d in outcome.report.decisions}
    assert {reasons(outcome, "app")[f] for f in TOOLBOX_FEATURES} == {"injected"}


@pytest.mark.parametrize("value", [64, ["arm64"], ["amd64"], {"amd64": "amd64"}], ids=repr)
def test_a_malformed_selector_value_is_not_an_architecture(value):
    """A node label's value is a string: any other never matches a node, so it is not one of ours
    (a list or map raised TypeError: unhashable, the whole review's mutator-error)."""
    outcome = _decide(_app_pod(nodeSelector={ARCH: value}))
    assert {reasons(outcome, "app")[f] for f in TOOLBOX_FEATURES} == {"arch-unsupported"}


def _decide(pod: dict[str, Any]) -> engine.Outcome:
    """The decisions alone, for a pod the API server would refuse (so no patched pod to check)."""
    ns = Namespace("demo", {"podmedic.io/inject": "enabled", "podmedic.io/supervisor": "enabled"}, {})
    return engine.inject(pod, StaticSource([ns]).get("demo"), AMD64)


def test_probes_of_a_wrapped_container_need_the_toolbox():
    """Without a port, a wrapped container's probes are the supervisor's `pmctl` exec probes: with
    the supervisor skipped, none of them points into a toolbox the pod does not have."""
    original = pods.pod(container(command=["/app"]), nodeSelector={ARCH: "arm64"})
    mutated, outcome = run_amd64(original)
    app = mutated["spec"]["containers"][0]
    assert "livenessProbe" not in app and "readinessProbe" not in app
    assert reasons(outcome, "app")["probes"] == "no-probe-port"


def test_the_default_is_the_toolbox_s_own_architecture(tmp_path, monkeypatch):
    """The embedded default: the architecture the image's toolbox was built for (recorded by
    `podmedic toolbox build`), so a pod pinned to it is injected as before."""
    (tmp_path / "arch").write_text("arm64\n")
    monkeypatch.setenv("PODMEDIC_TOOLBOX_DIR", str(tmp_path))
    config = configfile.load()
    _, outcome = run_amd64(_app_pod(nodeSelector={ARCH: "arm64"}), config)
    assert reasons(outcome, "app")["supervisor"] == "injected"
    _, outcome = run_amd64(_app_pod(nodeSelector={ARCH: "amd64"}), config)
    assert reasons(outcome, "app")["supervisor"] == "arch-unsupported"


@pytest.mark.parametrize("arch", ["amd64", "arm64", "s390x"])
def test_without_a_recorded_architecture_no_pod_is_turned_away(tmp_path, monkeypatch, arch):
    """No toolbox `arch` file and no setting (offline, from a checkout): nothing is known of the
    image's architectures, so none is checked. Before: the machine's, so on an arm64 laptop
    `podmedic inject` took an amd64-pinned pod's features away."""
    monkeypatch.setenv("PODMEDIC_TOOLBOX_DIR", str(tmp_path / "none"))
    _, outcome = run_amd64(_app_pod(nodeSelector={ARCH: arch}), configfile.load())
    assert {reasons(outcome, "app")[f] for f in TOOLBOX_FEATURES} == {"injected"}

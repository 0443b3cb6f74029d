"""verify.check(): every rule the API server enforces that a mutation can break, one pod per
rule with the exact message, the order of messages for a pod that breaks several, and pods that
break none (a field of an unexpected JSON type counts as the API server would see it). The
fast paths in verify.py must give these answers unchanged."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest

from tests.pods import container
from tests.pods import pod as engine_pod
from webhook.admission import podshape, verify
from webhook.admission.plan import plan
from webhook.cli.config import load
from webhook.engine.decisions import Reason
from webhook.engine.namespace import Namespace
from webhook.kube.namespaces import StaticSource


def pod(*containers: dict[str, Any], volumes: list[Any] | None = None, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p"}, "spec": {"containers": list(containers), "volumes": volumes or [], **spec}}


def c(name: str = "app", **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": "x", **fields}


GOOD = c(env=[{"name": "A", "value": "1"}, {"name": "PODMEDIC_POD_NAME"}],
         volumeMounts=[{"name": "podmedic-logs", "mountPath": "/logs", "subPathExpr": "ns_$(PODMEDIC_POD_NAME)/app"},
                       {"name": "data", "mountPath": "/data", "subPath": "x"}],
         ports=[{"name": "http", "containerPort": 80}],
         readinessProbe={"httpGet": {"port": "http", "path": "/"}, "periodSeconds": 5, "successThreshold": 3},
         livenessProbe={"tcpSocket": {"port": 80}, "successThreshold": 1},
         startupProbe={"exec": {"command": ["true"]}},
         lifecycle={"preStop": {"exec": {"command": ["x"]}}, "postStart": {"sleep": {"seconds": 1}}})

CASES = {
    "duplicate volume": (pod(c(), volumes=[{"name": "v"}, {"name": "v"}]), ["duplicate volume name 'v'"]),
    "duplicate container": (pod(c(), c(), initContainers=[c()]),
                            ["duplicate container name 'app'", "duplicate container name 'app'"]),
    "duplicate mountPath": (pod(c(volumeMounts=[{"name": "a", "mountPath": "/m"}, {"name": "b", "mountPath": "/m"}])),
                            ["duplicate mountPath in container app '/m'"]),
    "our mount without volume": (pod(c(volumeMounts=[{"name": "podmedic-state", "mountPath": "/s"}])),
                                 ["container app: volumeMount 'podmedic-state' names no volume"]),
    "user mount without volume": (pod(c(volumeMounts=[{"name": "claim-from-template", "mountPath": "/s"}])), []),
    "subPath and subPathExpr": (pod(c(volumeMounts=[{"name": "a", "mountPath": "/m", "subPath": "x",
                                                     "subPathExpr": "y"}])),
                                ["container app: volumeMount 'a' has both subPath and subPathExpr"]),
    "undefined env in subPathExpr": (pod(c(volumeMounts=[{"name": "a", "mountPath": "/m",
                                                          "subPathExpr": "$(A)/$(B)"}], env=[{"name": "A"}])),
                                     ["container app: subPathExpr references undefined env var 'B'"]),
    "undefined env in subPathExpr, a name unhashable": (pod(c(volumeMounts=[{"name": "a", "mountPath": "/m",
                                                                          "subPathExpr": "$(B)/$(A)/$(B)"}],
                                                             env=[{"name": ["x"]}, {"name": "A"}])),
                                                        ["container app: subPathExpr references undefined env var 'B'",
                                                         "container app: subPathExpr references undefined env var 'B'"]),
    "subPathExpr not a string": (pod(c(volumeMounts=[{"name": "a", "mountPath": "/m", "subPathExpr": 5}])),
                                 ["container app: volumeMount 'a' subPathExpr must be a string"]),
    "empty env name": (pod(c(env=[{"name": ""}, {"value": "no name"}])),
                       ["container app: invalid env var name ''", "container app: invalid env var name None"]),
    "env name with =": (pod(c(env=[{"name": "A=B"}])), ["container app: invalid env var name 'A=B'"]),
    "env name not a string": (pod(c(env=[{"name": 0}, {"name": 7}, {"name": ["="]}])),
                              ["container app: invalid env var name 0", "container app: invalid env var name ['=']"]),
    "probe on a plain init container": (pod(c(), initContainers=[c("init", readinessProbe={"exec": {"command": ["x"]}})]),
                                        ["container init: readinessProbe is not allowed on initContainers without "
                                         "restartPolicy Always"]),
    "probe on a sidecar": (pod(c(), initContainers=[c("side", restartPolicy="Always",
                                                      readinessProbe={"exec": {"command": ["x"]}})]), []),
    "probe on an ephemeral container": (pod(c(), ephemeralContainers=[c("dbg", livenessProbe={"tcpSocket": {"port": 1}})]),
                                        ["container dbg: livenessProbe is not allowed on ephemeralContainers without "
                                         "restartPolicy Always"]),
    "two handlers": (pod(c(readinessProbe={"exec": {"command": ["x"]}, "tcpSocket": {"port": 1}})),
                     ["container app: readinessProbe must have exactly one handler (has ['exec', 'tcpSocket'])"]),
    "a null handler beside one": (pod(c(readinessProbe={"exec": None, "tcpSocket": {"port": 1}})), []),
    "only a null handler": (pod(c(readinessProbe={"exec": None})),
                            ["container app: readinessProbe must have exactly one handler (has none)"]),
    "no handler": (pod(c(livenessProbe={"periodSeconds": 3})),
                   ["container app: livenessProbe must have exactly one handler (has none)"]),
    "undeclared port name": (pod(c(readinessProbe={"httpGet": {"port": "web"}}, ports=[{"name": "http"}])),
                             ["container app: readinessProbe names port 'web' that the container does not declare"]),
    "exec without command": (pod(c(startupProbe={"exec": {"command": []}})),
                             ["container app: startupProbe: exec needs a command"]),
    "liveness successThreshold": (pod(c(livenessProbe={"tcpSocket": {"port": 1}, "successThreshold": 2})),
                                  ["container app: livenessProbe.successThreshold must be 1"]),
    "timings": (pod(c(readinessProbe={"tcpSocket": {"port": 1}, "periodSeconds": 0, "timeoutSeconds": "1",
                                      "failureThreshold": True, "successThreshold": 1.5})),
                ["container app: readinessProbe.periodSeconds must be a positive integer",
                 "container app: readinessProbe.timeoutSeconds must be a positive integer",
                 "container app: readinessProbe.successThreshold must be a positive integer"]),
    "hooks": (pod(c(lifecycle={"preStop": {"grpc": {"port": 1}}, "postStart": {"httpGet": {"port": "nope"}}})),
              ["container app: lifecycle.preStop must have exactly one handler (has none)",
               "container app: lifecycle.postStart names port 'nope' that the container does not declare"]),
    "stopSignal is not a hook": (pod(c(lifecycle={"stopSignal": "SIGUSR1", "preStop": {"exec": {"command": ["x"]}}})),
                                 []),
    "Linux-only fields in a windows pod": (pod(c(securityContext={"runAsNonRoot": True}),
                                                initContainers=[c("init", securityContext={"runAsUser": 1,
                                                                                           "capabilities": {}})],
                                                os={"name": "windows"}),
                                            ["container init: securityContext.capabilities cannot be set for a "
                                             "windows pod",
                                             "container init: securityContext.runAsUser cannot be set for a windows pod"]),
    "Linux-only fields in a linux pod": (pod(c(securityContext={"runAsUser": 1}), os={"name": "linux"}), []),
    "annotations at the limit": (dict(pod(c()), metadata={"annotations": {"k": "x" * (256 * 1024 - 1)}}), []),
    "annotations over the limit": (dict(pod(c()), metadata={"annotations": {"k": "x" * (256 * 1024 - 5),
                                                                           "é": "€"}}),
                                   ["metadata.annotations: total size 262145 bytes exceeds the API server's limit "
                                    "of 262144"]),
    "a good pod": (pod(GOOD, c("side", restartPolicy="Always"), volumes=[{"name": "podmedic-logs"}]), []),
    "everything at once": (pod(c(env=[{"name": "X="}], volumeMounts=[{"name": "podmedic-toolbox", "mountPath": "/t"},
                                                                    {"name": "a", "mountPath": "/t"}],
                                 livenessProbe={"exec": {}}), c(), volumes=[{"name": "v"}, {"name": "v"}]),
                           ["duplicate volume name 'v'", "duplicate container name 'app'",
                            "duplicate mountPath in container app '/t'",
                            "container app: volumeMount 'podmedic-toolbox' names no volume",
                            "container app: invalid env var name 'X='",
                            "container app: livenessProbe: exec needs a command"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_rule_names_the_problem(case):
    obj, expected = CASES[case]
    before = copy.deepcopy(obj)
    assert list(verify.check(obj)) == expected
    assert obj == before  # checking never changes the pod


def test_apply_raises_with_every_problem_joined():
    obj, expected = CASES["everything at once"]
    with pytest.raises(verify.PatchRejected) as raised:
        verify.apply(obj, b'[{"op": "add", "path": "/metadata/labels", "value": {}}]')
    assert str(raised.value) == "; ".join(expected)


def test_only_the_handlers_the_patch_writes_must_name_a_declared_port():
    """The API server stores an app's handler naming an undeclared port (it checks the form only);
    podmedic's own must name a declared one, or its probe would fail on every try."""
    apps = pod(c(readinessProbe={"httpGet": {"port": "typo"}}, lifecycle={"postStart": {"tcpSocket": {"port": "typo"}}}))
    ours = b'[{"op": "add", "path": "/spec/containers/0/livenessProbe", "value": {"tcpSocket": {"port": %s}}}]'
    verify.apply(copy.deepcopy(apps), ours % b"8080")
    with pytest.raises(verify.PatchRejected, match="^container app: livenessProbe names port 'web' that"):
        verify.apply(copy.deepcopy(apps), ours % b'"web"')
    # a handler inside a larger value the patch writes is the patch's too: a container, a lifecycle
    side = b'{"name": "side", "image": "i", "readinessProbe": {"tcpSocket": {"port": "web"}}}'
    with pytest.raises(verify.PatchRejected, match="^container side: readinessProbe names port 'web' that"):
        verify.apply(copy.deepcopy(apps), b'[{"op": "add", "path": "/spec/containers/-", "value": %s}]' % side)
    with pytest.raises(verify.PatchRejected, match="^container side: readinessProbe names port 'web' that"):
        verify.apply(copy.deepcopy(apps), b'[{"op": "add", "path": "/spec/initContainers", "value": [%s]}]'
                     % side.replace(b'"i",', b'"i", "restartPolicy": "Always",'))
    hook = b'{"postStart": {"httpGet": {"port": "web"}}}'
    with pytest.raises(verify.PatchRejected, match="^container app: lifecycle.postStart names port 'web' that"):
        verify.apply(copy.deepcopy(apps), b'[{"op": "replace", "path": "/spec/containers/0/lifecycle", "value": %s}]' % hook)



def test_only_the_mounts_the_patch_writes_must_reference_defined_env():
    """The API server stores an app's subPathExpr naming a variable its env does not define (it
    checks the form only; envFrom may define it, else the kubelet reports it at container start),
    so an app's mount never fails podmedic's patch; podmedic's own must name its env, or its app
    would never start. Found by tests/test_kubeapi_generated.py: every such pod went through
    uninjected (verify-failed)."""
    apps = pod(c(envFrom=[{"configMapRef": {"name": "ids"}}], volumeMounts=[
        {"name": "data", "mountPath": "/data", "subPathExpr": "$(POD_NAME)"}]), volumes=[{"name": "data", "emptyDir": {}}])
    ours = b'[{"op": "add", "path": "/spec/containers/0/volumeMounts/-", "value": %s}]'
    verify.apply(copy.deepcopy(apps), ours % b'{"name": "logs", "mountPath": "/logs"}')
    with pytest.raises(verify.PatchRejected, match="^container app: subPathExpr references undefined env var 'UID'$"):
        verify.apply(copy.deepcopy(apps), ours % b'{"name": "logs", "mountPath": "/logs", "subPathExpr": "$(UID)"}')


DENY = dataclasses.replace(load(None), on_error="deny")
DEMO = StaticSource([Namespace("demo", {"podmedic.io/inject": "enabled", "podmedic.io/supervisor": "enabled"}, {})])


def test_a_stop_signal_pod_is_injected_and_verifies():
    """lifecycle.stopSignal (Kubernetes 1.33+) is a string beside the hooks, not a handler."""
    app = container("app", command=["/app"], lifecycle={"stopSignal": "SIGUSR1", "preStop": {"exec": {"command": ["x"]}}})
    result, _ = plan(engine_pod(app, os={"name": "linux"}), DEMO.get("demo"), DENY)
    assert result.denied is None and result.patch is not None
    assert [d for d in result.report.decisions if d.reason is Reason.VERIFY_FAILED] == []


def test_a_pod_whose_own_subpathexpr_names_an_undefined_variable_is_injected():
    app = container("app", command=["/app"], envFrom=[{"configMapRef": {"name": "ids"}}],
                    volumeMounts=[{"name": "data", "mountPath": "/data", "subPathExpr": "$(POD_NAME)"}])
    result, _ = plan(engine_pod(app, volumes=[{"name": "data", "emptyDir": {}}]), DEMO.get("demo"), DENY)
    assert [d for d in result.report.decisions if d.reason is Reason.VERIFY_FAILED] == []
    assert result.patch is not None


def test_an_error_inside_verification_is_a_verify_failure_never_a_deny():
    """A rule that meets a value it did not expect (here a mountPath that is a list, which
    no typed Pod has) must not deny the pod under onError=deny: the patch is unverified, so
    the pod goes through without it."""
    app = container("app", command=["/app"], volumeMounts=[{"name": "data", "mountPath": ["x"]}])
    result, size = plan(engine_pod(app), DEMO.get("demo"), DENY)
    assert result.denied is None and result.patch is None and size is None
    assert result.report.decisions[-1].reason is Reason.VERIFY_FAILED
    assert result.report.decisions[-1].detail == "verification error: TypeError"


@pytest.mark.parametrize("field", ["os", "nodeSelector", "affinity"])
def test_a_field_the_not_linux_gate_reads_of_the_wrong_type_is_malformed(field):
    """The engine's not-linux gate reads spec.os.name, the OS node selector and node affinity: one
    of them that is not a map is a 400."""
    assert podshape.problem({"spec": {field: "windows"}}) == f"request.object.spec.{field} has the wrong type"

"""The admission endpoint over real HTTPS against the real server (gunicorn, TLS, 2 workers)."""

from __future__ import annotations

import json
import re

import pytest

from tests import pods
from tests.pods import apply_checked, container, patch_of, review


def answer_ok(server, body) -> dict:
    r = server.post(body)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["apiVersion"] == "admission.k8s.io/v1" and answer["kind"] == "AdmissionReview"
    assert answer["response"]["uid"] == body["request"]["uid"]
    assert answer["response"]["allowed"] is True
    return answer


def test_sample_review_adds_readiness_liveness_and_startup(server):
    original = pods.pod(container(ports=[{"containerPort": 8080}]))
    body = review(original)
    answer = answer_ok(server, body)
    mutated = apply_checked(original, patch_of(answer))
    app = mutated["spec"]["containers"][0]
    assert app["readinessProbe"]["tcpSocket"] == {"port": 8080}
    assert app["livenessProbe"]["tcpSocket"] == {"port": 8080}
    assert app["livenessProbe"]["successThreshold"] == 1
    assert app["startupProbe"]["tcpSocket"] == {"port": 8080}  # liveness starts once the app answered
    assert app["startupProbe"]["failureThreshold"] == 2**31 - 1  # no bound on start-up, as without podmedic
    assert "podmedic.io/status" in mutated["metadata"]["annotations"]


def test_examples_review_json_is_patched(server):
    from tests.conftest import ROOT

    body = json.loads((ROOT / "examples" / "review.json").read_text())
    answer = answer_ok(server, body)
    mutated = apply_checked(body["request"]["object"], patch_of(answer))
    assert "readinessProbe" in mutated["spec"]["containers"][0]


def test_controller_made_pod_without_name_or_annotations(server):
    original = pods.controller_pod()
    answer = answer_ok(server, review(original))
    ops = patch_of(answer)
    assert {"op": "add", "path": "/metadata/annotations", "value": {}} in ops  # parent first
    mutated = apply_checked(original, ops)
    assert mutated["spec"]["containers"][0]["readinessProbe"]["tcpSocket"] == {"port": 8080}
    line = server.audit_for(answer["response"]["uid"])
    assert line["generateName"] == "web-7d9f8b6c5d-" and line["name"] is None
    assert line["owner"] == "ReplicaSet/web-7d9f8b6c5d"


@pytest.mark.parametrize("kind,operation,sub", [("ConfigMap", "CREATE", None), ("Pod", "UPDATE", None),
                                                ("Pod", "CREATE", "binding"), ("Pod", "DELETE", None)])
def test_not_a_pod_create_is_allowed_unpatched(server, kind, operation, sub):
    answer = answer_ok(server, review(pods.pod(), kind=kind, operation=operation, sub_resource=sub))
    assert "patch" not in answer["response"] and "patchType" not in answer["response"]


@pytest.mark.parametrize("namespace,reason", [("plain", "namespace-not-enabled"),
                                              ("nowhere", "namespace-unknown")])
def test_namespaces_not_opted_in_get_no_patch(server, namespace, reason):
    body = review(pods.pod(), namespace=namespace)
    answer = answer_ok(server, body)
    assert "patch" not in answer["response"]
    line = server.audit_for(body["request"]["uid"])
    assert [d["reason"] for d in line["decisions"]] == [reason]
    assert line["outcome"] == "unchanged"
    if reason == "namespace-unknown":
        assert any("namespace not found" in w for w in answer["response"]["warnings"])


def test_pod_can_opt_out(server):
    body = review(pods.pod(annotations={"podmedic.io/inject": "disabled"}))
    assert "patch" not in answer_ok(server, body)["response"]
    assert server.audit_for(body["request"]["uid"])["decisions"][0]["reason"] == "pod-opted-out"


def test_dry_run_gets_the_same_patch_and_is_marked(server):
    original = pods.controller_pod()
    wet, dry = review(original), review(original, dry_run=True)
    assert patch_of(answer_ok(server, wet)) == patch_of(answer_ok(server, dry))
    assert server.audit_for(dry["request"]["uid"])["dry_run"] is True
    assert server.audit_for(wet["request"]["uid"])["dry_run"] is False


def test_second_review_of_mutated_pod_is_empty(server):
    original = pods.controller_pod()
    mutated = apply_checked(original, patch_of(answer_ok(server, review(original))))
    again = answer_ok(server, review(mutated))
    assert "patch" not in again["response"]


def test_user_probes_are_never_changed(server):
    own = {"httpGet": {"path": "/mine", "port": 9000}, "periodSeconds": 3}
    original = pods.pod(container(ports=[{"containerPort": 8080}], readinessProbe=own))
    mutated = apply_checked(original, patch_of(answer_ok(server, review(original))))
    app = mutated["spec"]["containers"][0]
    assert app["readinessProbe"] == own
    assert app["livenessProbe"]["tcpSocket"] == {"port": 8080}


def test_all_own_probes_means_no_patch(server):
    probe = {"tcpSocket": {"port": 1}}
    body = review(pods.pod(container(readinessProbe=probe, livenessProbe=probe)), namespace="probes-only")
    assert "patch" not in answer_ok(server, body)["response"]
    decisions = server.audit_for(body["request"]["uid"])["decisions"]
    assert next(d for d in decisions if d["feature"] == "probes")["reason"] == "has-own-probe"


def test_namespace_tuning_http_paths_and_startup_budget(server):
    original = pods.pod(container(ports=[{"name": "http", "containerPort": 8080}]))
    mutated = apply_checked(original, patch_of(answer_ok(server, review(original, namespace="tuned"))))
    app = mutated["spec"]["containers"][0]
    assert app["readinessProbe"]["httpGet"] == {"path": "/health", "port": 8080}
    assert app["livenessProbe"]["httpGet"] == {"path": "/livez", "port": 8080}
    assert app["readinessProbe"]["periodSeconds"] == 7
    startup = app["startupProbe"]
    assert startup["httpGet"] == {"path": "/livez", "port": 8080}
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 180
    assert startup["successThreshold"] == 1


def test_per_container_tuning_in_multi_container_pod(server):
    original = pods.pod(
        container("web", ports=[{"name": "http", "containerPort": 8080}, {"name": "admin", "containerPort": 9090}]),
        container("worker"),
        annotations={"podmedic.io/probe-port.web": "admin", "podmedic.io/readiness-command.worker": "[\"cat\", \"/tmp/ready\"]",
                     "podmedic.io/liveness-command.worker": "cat /tmp/alive"})
    answer = answer_ok(server, review(original))
    mutated = apply_checked(original, patch_of(answer))
    web, worker = mutated["spec"]["containers"]
    assert web["readinessProbe"]["tcpSocket"] == {"port": "admin"}
    assert worker["readinessProbe"]["exec"] == {"command": ["cat", "/tmp/ready"]}
    assert worker["livenessProbe"]["exec"] == {"command": ["cat", "/tmp/alive"]}


def test_no_port_skips_with_reason_and_warning(server):
    body = review(pods.pod(container("sleeper", command=["sleep", "3600"]), container("web", ports=[{"containerPort": 80}])))
    answer = answer_ok(server, body)
    mutated = apply_checked(body["request"]["object"], patch_of(answer))
    sleeper, web = mutated["spec"]["containers"]
    assert "readinessProbe" not in sleeper and "readinessProbe" in web
    assert any("container sleeper: probes" in w and "no TCP containerPort" in w for w in answer["response"]["warnings"])
    decisions = server.audit_for(body["request"]["uid"])["decisions"]
    assert {"feature": "probes", "applied": False, "reason": "no-probe-port", "container": "sleeper",
            "level": "global"} in decisions


def test_named_port_that_does_not_exist_skips(server):
    body = review(pods.pod(container(ports=[{"containerPort": 80}]), annotations={"podmedic.io/probe-port": "metrics"}),
                  namespace="probes-only")
    answer = answer_ok(server, body)
    assert "patch" not in answer["response"]
    assert any("probe-port names a port" in w for w in answer["response"]["warnings"])


def test_invalid_value_skips_feature_with_precise_warning(server):
    body = review(pods.pod(), namespace="bad-values")
    answer = answer_ok(server, body)
    assert "patch" not in answer["response"]
    warning = answer["response"]["warnings"][0]
    assert "podmedic.io/probe-period-seconds='often' is invalid" in warning
    assert "expected a whole number" in warning


def test_pod_annotation_invalid_value_and_unknown_key(server):
    body = review(pods.pod(annotations={"podmedic.io/startup-timeout": "forever", "podmedic.io/prob": "x"}))
    answer = answer_ok(server, body)
    warnings = "\n".join(answer["response"]["warnings"])
    assert "podmedic.io/startup-timeout='forever' is invalid: expected a duration" in warnings
    assert "unknown podmedic annotation ignored (podmedic.io/prob)" in warnings


def test_feature_switched_off_by_namespace_and_back_on_by_pod(server):
    assert "patch" not in answer_ok(server, review(pods.pod(), namespace="no-probes"))["response"]
    original = pods.pod(annotations={"podmedic.io/probes": "enabled"})
    assert patch_of(answer_ok(server, review(original, namespace="no-probes")))


def test_native_sidecar_gets_probes_plain_init_does_not(server):
    original = pods.pod(container(ports=[{"containerPort": 80}]), initContainers=[
        container("migrate", command=["migrate"], ports=[{"containerPort": 5000}]),
        container("proxy", restartPolicy="Always", ports=[{"containerPort": 15001}])])
    mutated = apply_checked(original, patch_of(answer_ok(server, review(original, namespace="probes-only"))))
    migrate, proxy = mutated["spec"]["initContainers"]
    assert "readinessProbe" not in migrate and "livenessProbe" not in migrate
    assert proxy["readinessProbe"]["tcpSocket"] == {"port": 15001}


def test_audit_line_and_annotations(server):
    body = review(pods.pod(), namespace="probes-only")
    answer = answer_ok(server, body)
    line = server.audit_for(body["request"]["uid"])
    for key in ("time", "uid", "namespace", "name", "generateName", "owner", "user", "operation", "dry_run",
                "decisions", "patch_ops", "latency_ms", "outcome"):
        assert key in line, key
    assert line["user"] == "alice" and line["outcome"] == "patched" and line["patch_ops"] == len(patch_of(answer))
    assert answer["response"]["auditAnnotations"]["podmedic"] == "injected: app=probes"


@pytest.mark.parametrize("body,content_type,message", [
    (b"{not json", "application/json", "not valid JSON"),
    # strict RFC 8259 (orjson): what Go's encoder never writes is not taken for a pod
    (b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": NaN}}',
     "application/json", "not valid JSON"),
    (b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "\\ud800"}}',
     "application/json", "not valid JSON"),
    (b"", "application/json", "empty body"),
    (b"[]", "application/json", "must be a JSON object"),
    (json.dumps({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {"uid": "1"}}),
     "application/json", "expected apiVersion admission.k8s.io/v1"),
    (json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "Pod", "request": {"uid": "1"}}),
     "application/json", "kind AdmissionReview"),
    (b"{}", "application/json", "kind AdmissionReview, got none none"),  # absent, not msgspec's 'UNSET'
    (json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}), "application/json",
     "no request"),
    (json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"kind": {}}}),
     "application/json", "request.uid"),
    (json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "1", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "operation": "CREATE",
        "namespace": "demo"}}), "application/json", "request.object"),
    (b"{}", "text/plain", "content type must be application/json"),
    (b"{}", "", "content type must be application/json"),
])
def test_malformed_input_gets_400_naming_the_problem(server, body, content_type, message):
    r = server.post(body, content_type=content_type)
    assert r.status_code == 400
    assert r.headers["Content-Type"].startswith("application/json")
    assert message in r.json()["message"]
    assert "Traceback" not in r.text


def test_body_over_limit_gets_400(server):
    big = b'{"pad": "' + b"x" * (3 * 1024 * 1024) + b'"}'
    r = server.post(big)
    assert r.status_code == 400 and "exceeds the limit" in r.json()["message"]


def test_health_ready_metrics(server):
    assert server.get("/healthz").json() == {"status": "ok"}
    ready = server.get("/readyz")
    assert ready.status_code == 200 and ready.json()["certificate"] and ready.json()["namespaces"]
    before = _metric(server, 'podmedic_reviews_total{outcome="patched"}')
    for _ in range(20):  # new connections land on both workers
        server.post(review(pods.pod()))
        server.session.close()
    text = server.get("/metrics").text
    assert _metric(server, 'podmedic_reviews_total{outcome="patched"}') == before + 20
    assert 'podmedic_decisions_total{feature="probes",reason="injected"}' in text
    assert "podmedic_review_duration_seconds_bucket" in text
    expiry = _metric(server, "podmedic_certificate_expiry_timestamp_seconds")
    assert expiry > 1.7e9


def _metric(server, name: str) -> float:
    text = server.get("/metrics").text
    match = re.search("^" + re.escape(name) + r" ([0-9.e+]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0

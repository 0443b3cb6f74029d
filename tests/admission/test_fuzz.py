"""Hostile and malformed input against the real TLS server (property-based, Hypothesis).

`make test` runs a fast sample; `make soak` sets PODMEDIC_FUZZ_EXAMPLES=10000 per property.
Invariants: never a 5xx, every 200 carries the request's uid, every patch applies (RFC 6902) to
the object as sent and yields a pod that passes the API rules and the Kubernetes 1.36 schema,
no hostPath outside the admin's roots, injected containers never privileged, no secret env value
in any log line, and injecting the injected pod adds nothing.
"""

from __future__ import annotations

import json
import os
import string
import uuid
from typing import Any

import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import pods
from tests.pods import apply_checked, patch_of
from webhook.engine import pod_level as delivery

EXAMPLES = int(os.environ.get("PODMEDIC_FUZZ_EXAMPLES", "400"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("PODMEDIC_FUZZ_RANDOM"),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])
SECRET = "s3cr3t-" + uuid.uuid4().hex  # must never appear in any log line
ROOTS = ("/mnt/cephfs/podmedic",)
PREFIX = "podmedic.io/"
NAMESPACES = ["demo", "supervised", "restricted", "tuned", "bad-values", "plain", "nowhere"]

dns_label = st.from_regex(r"\A[a-z]([a-z0-9-]{0,14}[a-z0-9])?\Z")
hostile = st.one_of(
    st.text(max_size=40), st.sampled_from(["..", "../../etc", "/", "/etc/passwd", "relative/path", "/var/log/../../x",
                                           "{\"a\": 1}", "[\"sh\", \"-c\", \"rm -rf /\"]", "- a\n- b", "a: b\nc: d",
                                           "enabled\n", " enabled", "ENABLED", "0", "-1", "99999999999", "1e9",
                                           "3m", "25h", "http", "pmctl", "$(PODMEDIC_POD_UID)", "\u202e\u0000x"]),
    st.text(alphabet=string.printable, min_size=200, max_size=5000),
)
annotation_keys = st.sampled_from(
    ["inject", "probes", "supervisor", "logs", "forensics", "probe-port", "readiness-path", "liveness-path",
     "readiness-command", "liveness-command", "startup-timeout", "probe-period-seconds", "entrypoint",
     "autorestart", "startsecs", "exitcodes", "stopsignal", "on-fatal", "max-hold", "restart-limit",
     "restart-window", "restart-backoff-max", "memwatch-interval", "memwatch-threshold", "log-path",
     "forensics-budget-seconds", "status", "host-path", "probe-port.app", "log-path.app", "entrypoint.app"])
good_values = st.sampled_from(["enabled", "disabled", "8080", "http", "/health", "3m", "5", "true", "unexpected",
                               "0,2", "TERM", "exit", "hold", "/var/log/app", "[\"/bin/app\"]", "sleep 1"])


def handler() -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        st.builds(lambda p: {"tcpSocket": {"port": p}}, st.integers(1, 65535)),
        st.builds(lambda p: {"httpGet": {"path": "/h", "port": p}}, st.integers(1, 65535)),
        st.builds(lambda c: {"exec": {"command": c}}, st.lists(st.text(min_size=1, max_size=10), min_size=1, max_size=3)),
    )


@st.composite
def container(draw: Any, name: str) -> dict[str, Any]:
    c: dict[str, Any] = {"name": name, "image": "registry.example/x:1"}
    if draw(st.booleans()):
        c["command"] = draw(st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=3))
    if draw(st.booleans()):
        c["args"] = draw(st.lists(st.text(max_size=20), max_size=3))
    ports = draw(st.lists(st.builds(lambda p, n, proto: {"containerPort": p, **({"name": n} if n else {}),
                                                          **({"protocol": proto} if proto else {})},
                                    st.integers(1, 65535), st.one_of(st.none(), st.sampled_from(["http", "metrics", "grpc"])),
                                    st.sampled_from([None, "TCP", "UDP"])), max_size=3, unique_by=lambda p: p.get("name") or id(p)))
    if ports:
        c["ports"] = ports
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        if draw(st.integers(0, 3)) == 0:
            c[probe] = draw(handler())
    if draw(st.integers(0, 2)) == 0:
        c["lifecycle"] = {"preStop": draw(st.one_of(handler(), st.just({"sleep": {"seconds": 2}})))}
    env = [{"name": "DB_PASSWORD", "value": SECRET}, {"name": "API_TOKEN", "value": SECRET}]
    if draw(st.booleans()):
        env.append({"name": draw(st.sampled_from(["PODMEDIC_POD_NAME", "PATH", "X"])), "value": "v"})
    c["env"] = env
    mounts = draw(st.lists(st.sampled_from(["/var/log/podmedic", "/podmedic", "/data", "/podmedic-state", "/logs"]),
                           max_size=2, unique=True))
    if mounts:
        c["volumeMounts"] = [{"name": f"vol{i}", "mountPath": m} for i, m in enumerate(mounts)]
    if draw(st.integers(0, 4)) == 0:
        c["securityContext"] = {"runAsNonRoot": True, "runAsUser": draw(st.integers(1, 65535))}
    return c


@st.composite
def pod(draw: Any) -> dict[str, Any]:
    names = draw(st.lists(dns_label, min_size=1, max_size=4, unique=True))
    containers = [draw(container(n)) for n in names]
    volumes = [{"name": m["name"], "emptyDir": {}} for c in containers for m in c.get("volumeMounts", [])]
    volumes = list({v["name"]: v for v in volumes}.values())
    if draw(st.integers(0, 5)) == 0:
        volumes.append({"name": draw(st.sampled_from(list(delivery.OUR_VOLUMES))), "emptyDir": {}})
    spec: dict[str, Any] = {"containers": containers}
    if volumes:
        spec["volumes"] = list({v["name"]: v for v in volumes}.values())
    if draw(st.booleans()):
        spec["terminationGracePeriodSeconds"] = draw(st.integers(0, 120))
    if draw(st.integers(0, 3)) == 0:
        spec["initContainers"] = [{"name": "init-" + names[0][:20], "image": "i:1",
                                   **({"restartPolicy": "Always"} if draw(st.booleans()) else {})}]
    metadata: dict[str, Any] = {"generateName": "web-"} if draw(st.booleans()) else {"name": "web"}
    annotations = draw(st.dictionaries(annotation_keys.map(lambda k: PREFIX + k), st.one_of(good_values, hostile),
                                       max_size=6))
    if annotations or draw(st.booleans()):
        metadata["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def check_answer(server: Any, body: dict[str, Any], original: dict[str, Any]) -> dict[str, Any] | None:
    r = server.post(body)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["response"]["uid"] == body["request"]["uid"]
    assert answer["response"]["allowed"] is True
    ops = patch_of(answer)
    if not ops:
        return None
    mutated = apply_checked(original, ops)
    for v in mutated["spec"].get("volumes", []):
        if "hostPath" in v:
            path = v["hostPath"]["path"]
            assert v["name"] not in delivery.OUR_VOLUMES or path in ROOTS, path
    ours = [c for c in mutated["spec"].get("initContainers", []) if c["name"] in delivery.OUR_CONTAINERS]
    for c in ours:
        sc = c["securityContext"]
        assert sc["privileged"] is False and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
    return mutated


@FUZZ
@given(p=pod(), namespace=st.sampled_from(NAMESPACES))
def test_valid_reviews_never_break_a_pod(server, p, namespace):
    mutated = check_answer(server, pods.review(p, namespace=namespace), p)
    if mutated is not None:
        again = server.post(pods.review(mutated, namespace=namespace)).json()
        assert "patch" not in again["response"], "injecting the injected pod must add nothing"


def _mangle(review: dict[str, Any], path: list[str], value: Any) -> dict[str, Any]:
    node = review
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[path[-1]] = value
    return review


junk = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20),
                 st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3))
paths = st.sampled_from([["apiVersion"], ["kind"], ["request"], ["request", "uid"], ["request", "kind"],
                         ["request", "kind", "kind"], ["request", "operation"], ["request", "namespace"],
                         ["request", "object"], ["request", "object", "metadata"], ["request", "object", "spec"],
                         ["request", "object", "spec", "containers"], ["request", "object", "metadata", "annotations"],
                         ["request", "userInfo"], ["request", "dryRun"], ["request", "subResource"]])


@FUZZ
@given(path=paths, value=junk, namespace=st.sampled_from(NAMESPACES))
def test_wrong_types_at_every_level(server, path, value, namespace):
    body = _mangle(pods.review(pods.controller_pod(), namespace=namespace), path, value)
    r = server.post(body)
    assert r.status_code in (200, 400), r.text
    assert r.headers["Content-Type"].startswith("application/json")
    if r.status_code == 200:
        assert r.json()["response"]["uid"] == body["request"]["uid"]
    else:
        assert r.json()["message"]


@FUZZ
@given(cut=st.integers(0, 4000), seed=st.binary(max_size=64))
def test_truncated_and_garbage_bodies(server, cut, seed):
    text = json.dumps(pods.review(pods.controller_pod()))
    for body in (text[:cut].encode(), seed, b"\xff\xfe" + seed):
        r = server.post(body)
        assert r.status_code in (200, 400)
        if r.status_code == 400:
            assert "message" in r.json()


def test_deep_nesting_duplicate_keys_nulls_and_huge_bodies(server):
    deep = '{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":' + "[" * 100000 + "]" * 100000 + "}"
    assert server.post(deep).status_code == 400
    dup = json.dumps(pods.review(pods.pod()))[:-1] + ', "request": null}'
    assert server.post(dup).status_code == 400
    nulls = pods.review(pods.pod())
    nulls["request"]["object"]["spec"]["containers"][0]["ports"] = None
    nulls["request"]["object"]["metadata"]["annotations"] = None
    r = server.post(nulls)
    assert r.status_code == 200 and r.json()["response"]["uid"] == nulls["request"]["uid"]
    check_answer(server, nulls, nulls["request"]["object"])
    huge = pods.review(pods.pod(annotations={"x": "y" * (3 * 1024 * 1024)}))
    assert server.post(huge).status_code == 400


def test_slow_and_half_closed_connections_do_not_hurt(server):
    import socket
    import ssl
    import time

    from webhook.server.tls import CLIENT_IO_TIMEOUT

    ctx = ssl.create_default_context(cafile=str(server.ca))
    host, port = server.url.removeprefix("https://").split(":")
    slow = [ctx.wrap_socket(socket.create_connection((host, int(port)), timeout=30), server_hostname=host)
            for _ in range(3)]
    for s in slow:  # headers, then a body that never comes
        s.sendall(b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
    silent = socket.create_connection((host, int(port)), timeout=30)  # never even starts TLS
    half = socket.create_connection((host, int(port)), timeout=30)
    half.shutdown(socket.SHUT_WR)
    for _ in range(10):  # everyone else is still answered
        r = requests.post(server.url + "/mutate", json=pods.review(pods.pod()), verify=str(server.ca), timeout=10)
        assert r.status_code == 200
    started = time.monotonic()
    for s in slow:  # the server gives up on stalled clients and frees the thread
        try:
            s.recv(1024)
        except (ssl.SSLError, OSError):
            pass
        assert time.monotonic() - started < CLIENT_IO_TIMEOUT + 10
    for s in (*slow, silent, half):
        s.close()


def test_a_trickling_client_is_cut_at_the_request_deadline(server):
    """A client that is never silent long enough for a read timeout (a byte every 0.5 s) still
    gets CLIENT_IO_TIMEOUT for the whole request, not for each read: it cannot hold a thread."""
    import socket
    import ssl
    import time

    from webhook.server.tls import CLIENT_IO_TIMEOUT

    ctx = ssl.create_default_context(cafile=str(server.ca))
    host, port = server.url.removeprefix("https://").split(":")
    s = ctx.wrap_socket(socket.create_connection((host, int(port)), timeout=30), server_hostname=host)
    s.sendall(b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n")
    s.settimeout(0.5)
    started, cut_after = time.monotonic(), None
    while cut_after is None and time.monotonic() - started < CLIENT_IO_TIMEOUT + 5:
        try:
            s.sendall(b" ")
            s.recv(1024)  # the server's close (or an answer) ends the loop; a timeout is a tick
        except TimeoutError:
            continue
        except OSError:  # includes ssl.SSLError: reset or abrupt close
            pass
        cut_after = time.monotonic() - started
    s.close()
    assert cut_after is not None and cut_after < CLIENT_IO_TIMEOUT + 1.5, cut_after


def test_no_secret_in_any_log_line_and_no_worker_crash(server):
    server.post(pods.review(pods.pod(pods.container(env=[{"name": "PASSWORD", "value": SECRET}]))))
    log = server.log.read_text(errors="replace")
    assert SECRET not in log
    assert "Traceback" not in log and "WORKER TIMEOUT" not in log and "Worker exited" not in log
    assert "Booting worker" in log and log.count("Booting worker") == server_workers(server)


def server_workers(server: Any) -> int:
    return 2  # podmedic serve's default; a restarted worker would boot a third time

"""The namespace source: files (standalone mode) and the list+watch cache against a real HTTP
API server (tests/fakekube.py) through the official client, including expiry, dropped watches
and outages. Waits poll with deadlines; backoffs and timeouts are shortened via the
constructor, and the convergence bound is asserted with the instance's own formula."""

from __future__ import annotations

import copy
import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from tests.conftest import ROOT, free_port
from tests.fakekube import FakeKube
from webhook.cli.config import load
from webhook.engine.decisions import Reason
from webhook.engine.namespace import Lookup, Namespace
from webhook.kube import reflector
from webhook.kube.namespaces import ARRIVAL_WAIT_SECONDS, FileSource, KubeSource, StaticSource, source_from_args
from webhook.kube.reflector import Reflector, backoff_delay

EXAMPLE = ROOT / "examples" / "namespaces.yaml"
ON = {"podmedic.io/inject": "enabled"}
FAST = {"watch_timeout": 1, "connect_timeout": 0.5, "backoff_initial": 0.05, "backoff_max": 0.4}


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> float:
    """Poll until condition() is truthy; return how long it took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout:.1f} s: {what}")
        time.sleep(0.01)
    return time.monotonic() - started


def annotations(lookup: Lookup) -> dict[str, str] | None:
    return dict(lookup.namespace.annotations) if lookup.namespace else None


# ------------------------------------------------------------------ files


def test_example_file_has_the_documented_namespaces() -> None:
    source = FileSource(EXAMPLE)
    source.start()
    assert source.ready()
    assert annotations(source.get("default")) == {}
    assert annotations(source.get("demo")) == ON
    assert annotations(source.get("demo-supervised")) == {**ON, "podmedic.io/supervisor": "enabled"}
    restricted = source.get("restricted-demo").namespace
    assert restricted and restricted.labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert annotations(source.get("opted-out")) == {"podmedic.io/inject": "disabled"}
    assert source.get("not-there") == Lookup(None, Reason.NAMESPACE_UNKNOWN)
    source.stop()


def test_example_file_opt_in_drives_the_engine() -> None:
    """The example's namespaces mean what its comments say, end to end through the engine."""
    from webhook import engine

    source = FileSource(EXAMPLE)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "app", "image": "nginx", "ports": [{"containerPort": 80}]}]}}
    config = load()
    assert engine.inject(copy.deepcopy(pod), source.get("demo"), config).ops
    for name, reason in [("default", Reason.NAMESPACE_NOT_ENABLED), ("opted-out", Reason.NAMESPACE_NOT_ENABLED),
                         ("not-there", Reason.NAMESPACE_UNKNOWN)]:
        outcome = engine.inject(copy.deepcopy(pod), source.get(name), config)
        assert outcome.ops == [] and outcome.report.decisions[0].reason is reason, name


@pytest.mark.parametrize("text", [
    "apiVersion: v1\nkind: Namespace\nmetadata: {name: a, annotations: {podmedic.io/inject: enabled}}\n",
    "---\nkind: Namespace\nmetadata: {name: a, annotations: {podmedic.io/inject: enabled}}\n---\n"
    "kind: Namespace\nmetadata: {name: b}\n---\n",
    '{"kind": "NamespaceList", "apiVersion": "v1", "metadata": {"resourceVersion": "9"}, "items": ['
    '{"metadata": {"name": "a", "annotations": {"podmedic.io/inject": "enabled"}}}, {"metadata": {"name": "b"}}]}',
], ids=["single", "stream", "namespacelist-json"])
def test_file_formats(tmp_path: Path, text: str) -> None:
    path = tmp_path / "ns.yaml"
    path.write_text(text)
    source = FileSource(path)
    assert annotations(source.get("a")) == ON
    assert source.get("c").reason is Reason.NAMESPACE_UNKNOWN


@pytest.mark.parametrize("text,message", [
    (None, "cannot read namespaces file"),
    ("items: [\n", "is not valid YAML"),
    ("", "holds no Namespace objects"),
    ("kind: Pod\nmetadata: {name: p}\n", "expected kind Namespace, PersistentVolumeClaim, LimitRange or a List, got 'Pod'"),
    ("kind: List\nitems: {a: b}\n", "items must be a list"),
    ("kind: List\nitems:\n- kind: Secret\n  metadata: {name: s}\n", "item 1: expected a Namespace object"),
    ("kind: Namespace\nmetadata: {labels: {}}\n", "a Namespace without metadata.name"),
    ("kind: Namespace\nmetadata: {name: a, annotations: {podmedic.io/probe-period-seconds: 7}}\n",
     "namespace a: annotations: 'podmedic.io/probe-period-seconds': values must be strings"),
    ("kind: Namespace\nmetadata: {name: a, labels: [x]}\n", "namespace a: labels: expected a mapping"),
    ("kind: Namespace\nmetadata: {name: a}\n---\nkind: Namespace\nmetadata: {name: a}\n", "namespace a is listed twice"),
], ids=["missing", "yaml", "empty", "wrong-kind", "items", "item-kind", "no-name", "unquoted", "labels", "duplicate"])
def test_bad_files_fail_at_construction_naming_the_file(tmp_path: Path, text: str | None, message: str) -> None:
    path = tmp_path / "ns.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ValueError) as info:
        FileSource(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_static_source_rejects_duplicates_and_answers_from_memory() -> None:
    with pytest.raises(ValueError, match="listed twice"):
        StaticSource([Namespace("a", {}, {}), Namespace("a", {}, {})])
    assert StaticSource([Namespace("a", ON, {})]).get("a") == Lookup(Namespace("a", ON, {}), None)


def test_file_mode_does_not_import_the_kubernetes_client() -> None:
    code = ("import sys; from webhook.kube.namespaces import source_from_args; "
            f"assert source_from_args({str(EXAMPLE)!r}, None).ready(); print('kubernetes' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


# ------------------------------------------------------------------ the API


@pytest.fixture
def local_kubeconfig(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kubeconfig-built clients honour $HTTPS_PROXY/$HTTP_PROXY: keep 127.0.0.1 direct."""
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1")


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    server = FakeKube().start()
    server.set_namespace("demo", ON, {"pod-security.kubernetes.io/enforce": "baseline"})
    server.set_namespace("plain")
    yield server
    server.stop()


@pytest.fixture
def source(kube: FakeKube) -> Iterator[KubeSource]:
    watched = KubeSource(kube.api_client(), **FAST)
    watched.start()
    wait_for(watched.ready, 5, "first list")
    yield watched
    watched.stop()


def watches(kube: FakeKube) -> int:
    return sum(1 for r in kube.requests if r.path == "/api/v1/namespaces" and r.watch)


def lists(kube: FakeKube) -> int:
    return sum(1 for r in kube.requests if r.path == "/api/v1/namespaces" and not r.watch)


def test_first_list_makes_it_ready(source: KubeSource) -> None:
    demo = source.get("demo").namespace
    assert demo and dict(demo.annotations) == ON and demo.labels["pod-security.kubernetes.io/enforce"] == "baseline"
    assert source.get("plain").namespace is not None
    assert source.last_sync is not None and source.relists == 0


def test_never_seen_namespace_is_unknown_and_not_injected(source: KubeSource) -> None:
    from webhook import engine

    lookup = source.get("never-created")
    assert lookup == Lookup(None, Reason.NAMESPACE_UNKNOWN)
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "app", "image": "nginx"}]}}
    outcome = engine.inject(pod, lookup, load())
    assert outcome.ops == [] and outcome.report.decisions[0].reason is Reason.NAMESPACE_UNKNOWN


def test_not_ready_until_the_api_answers_the_first_list(tmp_path: Path, local_kubeconfig: None) -> None:
    kube = FakeKube()
    kube.port = free_port()
    kube.set_namespace("demo", ON)
    source = source_from_args(None, str(kube.kubeconfig(tmp_path / "kubeconfig")))
    try:
        source.start()
        time.sleep(0.5)
        assert not source.ready()
        assert source.get("demo") == Lookup(None, Reason.NAMESPACE_SOURCE_NOT_SYNCED)
        kube.start()
        assert isinstance(source, KubeSource)
        wait_for(source.ready, source.convergence_bound + 1, "ready once the API is up")
        assert annotations(source.get("demo")) == ON
    finally:
        source.stop()
        kube.stop()


def test_kubeconfig_from_the_environment(kube: FakeKube, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        local_kubeconfig: None) -> None:
    monkeypatch.setenv("KUBECONFIG", str(kube.kubeconfig(tmp_path / "kubeconfig")))
    source = source_from_args(None, None)
    source.start()
    try:
        wait_for(source.ready, 5, "first list through $KUBECONFIG")
        assert annotations(source.get("demo")) == ON
    finally:
        source.stop()


def test_no_kubeconfig_outside_a_cluster_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kube/config
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ValueError, match="in-cluster configuration"):
        source_from_args(None, None)


BAD_CA = json.dumps({
    "apiVersion": "v1", "kind": "Config", "current-context": "c",
    "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1", "certificate-authority-data": "!!not-base64"}}],
    "users": [{"name": "u", "user": {"token": "t"}}], "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
})


@pytest.mark.parametrize("text", [None, "clusters: [\n", "kind: Config\n", "- a\n- b\n", "just text\n", BAD_CA],
                         ids=["missing", "yaml", "incomplete", "a-list", "a-string", "ca-not-base64"])
def test_bad_kubeconfig_is_a_clear_error(tmp_path: Path, text: str | None) -> None:
    path = tmp_path / "kubeconfig"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ValueError, match=f"cannot use the kubeconfig {path}"):
        source_from_args(None, str(path))


def test_watch_events_converge_without_relisting(kube: FakeKube, source: KubeSource) -> None:
    kube.set_namespace("fresh", ON)
    wait_for(lambda: annotations(source.get("fresh")) == ON, 2, "ADDED")
    kube.set_namespace("demo", {"podmedic.io/inject": "disabled"})
    wait_for(lambda: annotations(source.get("demo")) == {"podmedic.io/inject": "disabled"}, 2, "MODIFIED")
    kube.delete_namespace("fresh")
    wait_for(lambda: source.get("fresh").reason is Reason.NAMESPACE_UNKNOWN, 2, "DELETED")
    kube.set_namespace("fresh", {"podmedic.io/inject": "enabled", "podmedic.io/probes": "disabled"})
    wait_for(lambda: annotations(source.get("fresh")) == {**ON, "podmedic.io/probes": "disabled"}, 2, "recreated")
    assert lists(kube) == 1 and source.relists == 0


def test_steady_state_is_list_then_watches_only(kube: FakeKube, source: KubeSource) -> None:
    """No API call per review: thousands of lookups, and the log holds one list of namespaces
    and one of LimitRanges, plus the watches re-opened (from the bookmark's resourceVersion)
    each time the server ends one."""
    before = watches(kube)
    for _ in range(5000):
        assert source.get("demo").namespace is not None
    wait_for(lambda: watches(kube) >= before + 2, 5, "watch re-opened after its timeout")
    assert all(r.method == "GET" and r.path in ("/api/v1/namespaces", "/api/v1/limitranges") for r in kube.requests)
    assert lists(kube) == 1 and source.relists == 0
    assert sum(1 for r in kube.requests if r.path == "/api/v1/limitranges" and not r.watch) == 1
    last = [r for r in kube.requests if r.watch and r.path == "/api/v1/namespaces"][-1]
    assert last.query["allowWatchBookmarks"] == "true" and last.query["timeoutSeconds"] == "1"
    assert int(last.query["resourceVersion"]) == kube.resource_version


def test_expired_watch_relists_and_converges(kube: FakeKube) -> None:
    """A long watch (no bookmark can move its position meanwhile) is compacted past: 410 Gone."""
    source = KubeSource(kube.api_client(), **{**FAST, "watch_timeout": 60})
    source.start()
    try:
        wait_for(lambda: watches(kube) == 1, 5, "watching")
        kube.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "demo"}})
        kube.expire_before(kube.resource_version)  # past the namespace watch's position
        # (the LimitRanges' watch is expired too, and relists as well)
        # and as the source counts it: the fake server counts the request before the source has
        # read the answer (a CI run once saw lists == 2 and relists == 0)
        wait_for(lambda: lists(kube) == 2 and source.relists >= 1, source.convergence_bound, "relist after 410 Gone")
        kube.set_namespace("after", ON)
        wait_for(lambda: annotations(source.get("after")) == ON, 2, "events after the relist")
    finally:
        source.stop()


def test_dropped_watch_reconnects(kube: FakeKube, source: KubeSource) -> None:
    wait_for(lambda: watches(kube) >= 1, 2, "a watch is open")
    before = watches(kube)
    kube.drop_watches()
    wait_for(lambda: watches(kube) > before, source.convergence_bound, "watch re-opened")
    kube.set_namespace("later", ON)
    wait_for(lambda: annotations(source.get("later")) == ON, 2, "events on the new watch")


def test_outage_serves_the_cache_then_converges_within_the_bound(kube: FakeKube, source: KubeSource) -> None:
    kube.set_namespace("doomed", ON)
    wait_for(lambda: source.get("doomed").namespace is not None, 2, "doomed seen")
    kube.stop()
    # Meanwhile the cluster changes (another API server instance wrote to etcd).
    kube.set_namespace("demo", {"podmedic.io/inject": "disabled"})
    kube.delete_namespace("doomed")
    kube.set_namespace("born", ON)
    deadline = time.monotonic() + 1.5  # long enough for the backoff to reach its cap
    while time.monotonic() < deadline:
        assert source.ready()
        assert annotations(source.get("demo")) == ON  # stale, but answered
        assert source.get("doomed").namespace is not None
        assert source.get("born").reason is Reason.NAMESPACE_UNKNOWN
        time.sleep(0.05)
    kube.start()
    # The relist replaces the cache in one assignment: once it shows `demo` and `born` anew, `doomed`
    # is gone too (asked after, since get() waits a moment for a namespace it lacks).
    took = wait_for(lambda: annotations(source.get("demo")) == {"podmedic.io/inject": "disabled"}
                    and annotations(source.get("born")) == ON,
                    source.convergence_bound + 0.5, "converged after the outage")
    assert took <= source.convergence_bound and source.relists >= 1
    assert source.get("doomed").reason is Reason.NAMESPACE_UNKNOWN


def test_backoff_grows_with_jitter_up_to_its_cap() -> None:
    delays = [backoff_delay(n, 0.5, 5.0) for n in range(1, 40) for _ in range(20)]
    assert max(delays) <= 5.0 and len(set(delays)) > 100
    assert 0.25 <= backoff_delay(1, 0.5, 5.0) <= 0.5
    assert min(backoff_delay(30, 0.5, 5.0) for _ in range(50)) >= 2.5


class ListsButCannotWatch:
    """A CoreV1Api list method as the API server serves it to a ServiceAccount allowed to list
    namespaces but not to watch them (RBAC without the `watch` verb)."""

    def __init__(self) -> None:
        self.lists = 0

    def __call__(self, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException

        if kwargs.get("watch"):
            raise ApiException(status=403, reason="Forbidden: cannot watch namespaces")
        self.lists += 1
        return SimpleNamespace(data=json.dumps({"metadata": {"resourceVersion": "1"}, "items": []}))


class Ignore:
    def replace(self, items: list[dict[str, Any]]) -> None:
        pass

    def apply(self, kind: str, obj: dict[str, Any]) -> None:
        pass


def test_a_forbidden_watch_backs_off_instead_of_relisting_in_a_loop(caplog: pytest.LogCaptureFixture) -> None:
    api = ListsButCannotWatch()
    reflector = Reflector("namespaces", api, Ignore(), backoff_initial=0.05, backoff_max=0.4)
    with caplog.at_level(logging.DEBUG, logger="podmedic.namespaces"):
        reflector.start()
        time.sleep(2.0)
        reflector.stop()
    # Growing backoff: 0.05 + 0.1 + 0.2 + 0.4 + 0.4 ... (x 0.5-1 jitter) is at most 11 lists in
    # 2 s; reset after every list it was one every 0.025-0.05 s (40 and more).
    assert 3 <= api.lists <= 11, api.lists
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "HTTP 403" in warnings[0].getMessage()


class WatchClosingProxy:
    """Real HTTP on 127.0.0.1 standing in for a proxy or load balancer in front of the API
    server: lists are answered (an empty NamespaceList), every `watch=true` request gets a 200
    whose stream ends with no event after `hold` seconds (at once by default), or with `hold`
    None after the timeoutSeconds the watch asked for (as the API server ends a quiet watch)."""

    def __init__(self, hold: float | None = 0.0) -> None:
        self.counts = {"lists": 0, "watches": 0}
        counts = self.counts

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                query = dict(parse_qsl(urlsplit(self.path).query))
                if query.get("watch") == "true":
                    counts["watches"] += 1
                    time.sleep(float(query["timeoutSeconds"]) if hold is None else hold)
                    # headers and the stream's end (no event before it) in one write, as a proxy
                    # sends them (two writes would wait for the client's delayed ACK)
                    self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
                    return
                counts["lists"] += 1
                body = json.dumps({"kind": "NamespaceList", "apiVersion": "v1",
                                   "metadata": {"resourceVersion": "7"}, "items": []}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def list_namespace(self) -> Callable[..., Any]:
        from kubernetes import client

        host = f"http://127.0.0.1:{self.server.server_address[1]}"
        return client.CoreV1Api(client.ApiClient(client.Configuration(host=host))).list_namespace

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def run_reflector(proxy: WatchClosingProxy, seconds: float, **timing: Any) -> int:
    """Run a reflector against the proxy for `seconds`; returns how often last_sync moved."""
    syncs = []
    reflector = Reflector("namespaces", proxy.list_namespace(), Ignore(), on_sync=lambda: syncs.append(1), **timing)
    reflector.start()
    time.sleep(seconds)
    reflector.stop()
    return len(syncs)


def test_a_watch_a_proxy_ends_at_once_backs_off_instead_of_rewatching_in_a_loop(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """A watch ended with no event within a second of being opened (a proxy closing it): a
    failure (backoff, relist), and last_sync moves only with the lists. Counted as a normal
    end, it was re-opened at once, for ever: 700-odd watches in 3 s, the failure count reset and
    last_sync moved by each (the staleness metric fresh while nothing was watched). The
    threshold is raised to 4 s here (under the default timeout's half): a loaded machine may
    take a second to open a watch that the proxy ends at once."""
    monkeypatch.setattr(reflector, "EARLY_END_SECONDS", 4.0)
    proxy = WatchClosingProxy()
    try:
        with caplog.at_level(logging.DEBUG, logger="podmedic.namespaces"):
            syncs = run_reflector(proxy, 3.0, backoff_initial=0.05, backoff_max=0.4)
    finally:
        proxy.stop()
    lists, watches = proxy.counts["lists"], proxy.counts["watches"]
    # 0.05 + 0.1 + 0.2 + 0.4 + ... (x 0.5-1 jitter) is at most 18 rounds in 3 s
    assert 3 <= watches <= 18, (lists, watches)
    assert lists - watches in (0, 1) and syncs == lists, (lists, watches, syncs)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "no event" in warnings[0], warnings


def test_a_quiet_watch_ended_at_its_timeout_is_rewatched_without_a_relist(caplog: pytest.LogCaptureFixture) -> None:
    """The other side of the threshold: a watch with no event that lasted the timeout it asked
    for ended normally (the API server's end of a quiet watch): re-opened from its position."""
    proxy = WatchClosingProxy(hold=None)
    try:
        with caplog.at_level(logging.WARNING, logger="podmedic.namespaces"):
            syncs = run_reflector(proxy, 3.5, watch_timeout=1)
    finally:
        proxy.stop()
    assert proxy.counts["lists"] == 1 and proxy.counts["watches"] >= 3 and syncs >= 3, (proxy.counts, syncs)
    assert [r.getMessage() for r in caplog.records] == []


def test_a_proxy_ending_quiet_watches_after_seconds_is_rewatched_without_a_relist(
        caplog: pytest.LogCaptureFixture) -> None:
    """A proxy's idle timeout shorter than the watch's (here 1.5 s of 10): each watch is re-opened
    from its position, as at the API server's own end. Counted as an early end (under half the
    timeout, as first written), it relisted every round, with the backoff's gaps unwatched."""
    proxy = WatchClosingProxy(hold=1.5)
    try:
        with caplog.at_level(logging.WARNING, logger="podmedic.namespaces"):
            run_reflector(proxy, 5.0)
    finally:
        proxy.stop()
    assert proxy.counts["lists"] == 1 and proxy.counts["watches"] >= 2, proxy.counts
    assert [r.getMessage() for r in caplog.records] == []


def test_stop_ends_the_watch_thread(kube: FakeKube) -> None:
    source = KubeSource(kube.api_client(), **FAST)
    source.start()
    wait_for(lambda: watches(kube) >= 1, 5, "watching")
    started = time.monotonic()
    source.stop()
    assert time.monotonic() - started < 2
    count = len(kube.requests)
    time.sleep(1.5)  # longer than the watch timeout: a live thread would re-open it
    assert len(kube.requests) == count


# ------------------------------------------------------------------ fakekube's other resources


def test_fakekube_writes_behave_like_the_api_server(kube: FakeKube) -> None:
    """What later tests (e.g. `podmedic certs install`) rely on, through the official client."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    api_client = kube.api_client()
    core, admission = client.CoreV1Api(api_client), client.AdmissionregistrationV1Api(api_client)
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tls"}, "data": {"a": "YQ=="}}
    created = core.create_namespaced_secret("demo", secret)
    assert created.metadata.namespace == "demo" and created.metadata.uid
    for call, status in [(lambda: core.create_namespaced_secret("demo", secret), 409),
                         (lambda: core.create_namespaced_secret("missing", secret), 404),
                         (lambda: core.read_namespaced_secret("other", "demo"), 404),
                         (lambda: core.replace_namespaced_secret("tls", "demo", {**secret, "metadata": {
                             "name": "tls", "resourceVersion": "1"}}), 409)]:
        with pytest.raises(ApiException) as info:
            call()
        assert info.value.status == status
    core.patch_namespaced_secret("tls", "demo", {"data": {"b": "Yg=="}})
    core.patch_namespaced_secret("tls", "demo", [{"op": "remove", "path": "/data/a"}])
    assert core.read_namespaced_secret("tls", "demo").data == {"b": "Yg=="}
    assert kube.get("Secret", "tls", "demo")["data"] == {"b": "Yg=="}
    core.delete_namespaced_secret("tls", "demo")
    assert kube.get("Secret", "tls", "demo") is None

    config = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
              "metadata": {"name": "podmedic"}, "webhooks": []}
    admission.create_mutating_webhook_configuration(config)
    admission.patch_mutating_webhook_configuration("podmedic", {"metadata": {"labels": {"a": "b"}}})
    listed = admission.list_mutating_webhook_configuration()
    assert [c.metadata.labels for c in listed.items] == [{"a": "b"}]
    admission.delete_mutating_webhook_configuration("podmedic")
    assert admission.list_mutating_webhook_configuration().items == []
    methods = {r.method for r in kube.requests}
    assert methods == {"GET", "POST", "PUT", "PATCH", "DELETE"}


def test_a_wait_cut_short_by_its_deadline_does_not_stop_the_next_reviews_wait(kube: FakeKube,
                                                                            source: KubeSource) -> None:
    """A review with 5 ms of its deadline left waits 5 ms in vain; the next, with the whole wait,
    still waits, and finds the namespace the watch delivers 0.2 s later. A give-up after any wait
    had it skip its wait and let the pod through as namespace-unknown for 30 s."""
    assert source.get("fresh", wait=0.005).reason is Reason.NAMESPACE_UNKNOWN
    delivery = threading.Timer(0.2, kube.set_namespace, ("fresh", ON))
    delivery.start()
    try:
        found = source.get("fresh", wait=ARRIVAL_WAIT_SECONDS)
    finally:
        delivery.join()
    assert annotations(found) == ON, found


def test_a_namespace_that_never_comes_costs_one_window_whatever_each_review_may_wait(source: KubeSource) -> None:
    """Reviews with half a second each (reviewDeadlineSeconds 0.5): the first two wait, together
    ARRIVAL_WAIT_SECONDS from the first miss, the rest not at all. A give-up recorded only after
    a wait of the whole ARRIVAL_WAIT_SECONDS never came, and each review waited its half second."""
    started = time.monotonic()
    for _ in range(6):
        assert source.get("ghost", wait=0.5).reason is Reason.NAMESPACE_UNKNOWN
    assert time.monotonic() - started < ARRIVAL_WAIT_SECONDS + 0.3

"""A small but real Kubernetes API server for tests: real HTTP on 127.0.0.1, in-memory storage.

Why not mocks: podmedic talks to the API through the official `kubernetes` client (urllib3,
kubeconfig, chunked watch streams, Status objects); only a server on a socket exercises that
path, including the failures that matter (a watch dropped mid-stream, 410 Gone, an outage).
It speaks the parts of the protocol a client cares about:

- one cluster-wide, monotonically increasing resourceVersion (etcd's revision);
- GET (object or list), POST (201, 409 AlreadyExists), PUT (409 Conflict on a stale
  resourceVersion), PATCH (merge, strategic-merge treated as merge, JSON patch), DELETE, with
  errors as `Status` objects;
- watches (`?watch=true&resourceVersion=N`): events after N replayed from the history, then
  live, as newline-delimited JSON over chunked transfer; no/`0` resourceVersion starts with
  synthetic ADDED events; `timeoutSeconds` ends the stream cleanly, preceded by a BOOKMARK when
  `allowWatchBookmarks=true` (as the API server's watch cache does near the deadline); a watch
  whose position is older than the compacted history gets an `ERROR` event carrying a 410
  `Expired` Status, also mid-stream (what an etcd compaction does to an open watch).

Not modelled: authentication, admission, validation, label selectors (rejected with 400),
namespace finalization (a deleted Namespace disappears at once; its contents stay).

Test controls: `apply`/`delete`/`get` and the `set_namespace`/`delete_namespace` shorthands
(emit watch events like API writes), `expire_before(rv)`, `drop_watches()`, `stop()`/`start()`
on the same port, `requests` (the request log), `kubeconfig(path)` and `api_client()`.
"""

from __future__ import annotations

import copy
import json
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlsplit

import jsonpatch

# kind -> (group/version path, resource, namespaced). Resources outside this table work too
# through HTTP (their kind is taken from the created object), but not through `apply(obj)`.
KINDS: dict[str, tuple[str, str, bool]] = {
    "Namespace": ("api/v1", "namespaces", False),
    "Secret": ("api/v1", "secrets", True),
    "ConfigMap": ("api/v1", "configmaps", True),
    "Pod": ("api/v1", "pods", True),
    "ServiceAccount": ("api/v1", "serviceaccounts", True),
    "PersistentVolumeClaim": ("api/v1", "persistentvolumeclaims", True),
    "LimitRange": ("api/v1", "limitranges", True),
    "MutatingWebhookConfiguration": ("apis/admissionregistration.k8s.io/v1", "mutatingwebhookconfigurations", False),
    "ValidatingWebhookConfiguration": ("apis/admissionregistration.k8s.io/v1", "validatingwebhookconfigurations", False),
}
_KIND_OF = {(gv, resource): kind for kind, (gv, resource, _) in KINDS.items()}
DEFAULT_WATCH_TIMEOUT = 1800  # the API server picks 30-60 min when the client sets none


class Key(NamedTuple):
    """Where an object lives: ("api/v1", "secrets", "ns", "name"); namespace "" if cluster-scoped."""

    gv: str
    resource: str
    namespace: str
    name: str


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str
    query: dict[str, str]

    @property
    def watch(self) -> bool:
        return self.query.get("watch") in ("true", "1")


class ApiError(Exception):
    """An error answer; `status` is the Kubernetes Status object sent to the client."""

    def __init__(self, code: int, reason: str, message: str):
        super().__init__(message)
        self.status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                       "message": message, "reason": reason, "code": code}


def parse_path(path: str) -> tuple[Key, bool] | None:
    """URL path -> (key with name "" for a collection, namespace given in the URL), or None."""
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        gv, rest = "api/v1", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        gv, rest = "/".join(parts[:3]), parts[3:]
    else:
        return None
    namespace = ""
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    if len(rest) not in (1, 2):
        return None
    return Key(gv, rest[0], namespace, rest[1] if len(rest) == 2 else ""), bool(namespace)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = merge_patch(result.get(name), value)
    return result


@dataclass
class _Watch:
    collection: Key
    name: str  # fieldSelector metadata.name=..., or ""
    position: int  # the resourceVersion this watch has delivered up to
    index: int  # next entry of the event history to look at
    generation: int  # drop_watches()/stop() bump the server's generation
    deadline: float
    bookmarks: bool
    initial: list[dict[str, Any]] = field(default_factory=list)


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-connection is normal here (outages are the point)."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class FakeKube:
    """The server. Use as a context manager, or call start()/stop()."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._objects: dict[Key, dict[str, Any]] = {}
        self._events: list[tuple[int, str, Key, dict[str, Any]]] = []
        self._rv = 1
        self._expired_before = 0
        self._generation = 0
        self._log: list[LoggedRequest] = []
        self._connections: set[socket.socket] = set()
        self._httpd: ThreadingHTTPServer | None = None
        self.port = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> FakeKube:
        """Listen (again, on the same port after a stop()); the stored objects survive, like etcd."""
        httpd = _Server(("127.0.0.1", self.port), _Handler)
        httpd.daemon_threads = True
        httpd.kube = self  # type: ignore[attr-defined]
        self.port = httpd.server_address[1]
        self._httpd = httpd
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        """An API outage: stop listening and cut every open connection, watches included."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        with self._cond:
            self._generation += 1
            self._cond.notify_all()
            connections = list(self._connections)
        for conn in connections:
            _cut(conn)

    def __enter__(self) -> FakeKube:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kubeconfig(self, path: Path) -> Path:
        """Write a kubeconfig pointing at this server (JSON is valid YAML)."""
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": "fake-token"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
        }))
        return path

    def api_client(self) -> Any:
        """A `kubernetes.client.ApiClient` configured for this server."""
        from kubernetes import client

        configuration = client.Configuration(host=self.url, no_proxy="*")  # never via an $HTTP_PROXY
        return client.ApiClient(configuration)

    # ------------------------------------------------------------------ test controls
    @property
    def resource_version(self) -> int:
        with self._cond:
            return self._rv

    @property
    def requests(self) -> list[LoggedRequest]:
        with self._cond:
            return list(self._log)

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or replace an object of a kind in KINDS, as a client write would."""
        gv, resource, namespaced = KINDS[obj["kind"]]
        meta = obj["metadata"]
        key = Key(gv, resource, meta.get("namespace", "") if namespaced else "", meta["name"])
        with self._cond:
            old = self._objects.get(key)
            return self._commit("MODIFIED" if old else "ADDED", key, _with_metadata(obj, key, old))

    def delete(self, kind: str, name: str, namespace: str = "") -> None:
        gv, resource, _ = KINDS[kind]
        with self._cond:
            self._remove(Key(gv, resource, namespace, name))

    def get(self, kind: str, name: str, namespace: str = "") -> dict[str, Any] | None:
        gv, resource, _ = KINDS[kind]
        with self._cond:
            return copy.deepcopy(self._objects.get(Key(gv, resource, namespace, name)))

    def set_namespace(self, name: str, annotations: dict[str, str] | None = None,
                      labels: dict[str, str] | None = None) -> dict[str, Any]:
        return self.apply({"apiVersion": "v1", "kind": "Namespace",
                           "metadata": {"name": name, "annotations": annotations or {}, "labels": labels or {}}})

    def delete_namespace(self, name: str) -> None:
        self.delete("Namespace", name)

    def expire_before(self, rv: int) -> None:
        """Compact the history: watches positioned before `rv` (open or new) get 410 Expired."""
        with self._cond:
            self._expired_before = rv
            self._cond.notify_all()

    def drop_watches(self) -> None:
        """Cut every open watch connection abruptly (no terminating chunk)."""
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    # ------------------------------------------------------------------ storage (under _cond)
    def _commit(self, kind: str, key: Key, obj: dict[str, Any]) -> dict[str, Any]:
        self._rv += 1
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(self._rv)
        if kind == "DELETED":
            del self._objects[key]
        else:
            self._objects[key] = obj
        self._events.append((self._rv, kind, key, obj))
        self._cond.notify_all()
        return copy.deepcopy(obj)

    def _remove(self, key: Key) -> dict[str, Any]:
        if key not in self._objects:
            raise ApiError(404, "NotFound", f'{key.resource} "{key.name}" not found')
        return self._commit("DELETED", key, self._objects[key])

    def _existing(self, key: Key) -> dict[str, Any]:
        if key not in self._objects:
            raise ApiError(404, "NotFound", f'{key.resource} "{key.name}" not found')
        return self._objects[key]

    def _matching(self, collection: Key, name: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(obj) for key, obj in sorted(self._objects.items()) if _in(key, collection, name)]

    # ------------------------------------------------------------------ requests
    def _record(self, method: str, path: str, query: dict[str, str]) -> None:
        with self._cond:
            self._log.append(LoggedRequest(method, path, query))

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._cond:
            (self._connections.add if add else self._connections.discard)(conn)

    def handle(self, method: str, key: Key, namespaced: bool, query: dict[str, str],
               body: Any, content_type: str) -> tuple[int, dict[str, Any]]:
        """Everything but watches: (HTTP status, JSON body)."""
        if "labelSelector" in query:
            raise ApiError(400, "BadRequest", "fakekube does not implement labelSelector")
        with self._cond:
            if method == "GET" and not key.name:
                items = self._matching(key, _name_selector(query))
                kind = _KIND_OF.get((key.gv, key.resource), "")
                return 200, {"kind": kind + "List" if kind else "List", "apiVersion": _api_version(key.gv),
                             "metadata": {"resourceVersion": str(self._rv)}, "items": items}
            if method == "GET":
                return 200, copy.deepcopy(self._existing(key))
            if method == "POST" and not key.name:
                return 201, self._create(key, namespaced, body)
            if method == "PUT" and key.name:
                return 200, self._replace(key, body)
            if method == "PATCH" and key.name:
                return 200, self._patch(key, body, content_type)
            if method == "DELETE" and key.name:
                self._remove(key)
                return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                             "details": {"name": key.name, "kind": key.resource}}
        raise ApiError(405, "MethodNotAllowed", f"{method} is not supported on this path")

    def _create(self, collection: Key, namespaced: bool, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("metadata"), dict):
            raise ApiError(400, "BadRequest", "the body must be an object with metadata")
        meta = body["metadata"]
        name = meta.get("name") or (meta.get("generateName", "") + uuid.uuid4().hex[:5] if meta.get("generateName") else "")
        if not name:
            raise ApiError(422, "Invalid", "metadata.name: Required value")
        if namespaced and Key("api/v1", "namespaces", "", collection.namespace) not in self._objects:
            raise ApiError(404, "NotFound", f'namespaces "{collection.namespace}" not found')
        key = collection._replace(name=name)
        if key in self._objects:
            raise ApiError(409, "AlreadyExists", f'{key.resource} "{name}" already exists')
        body.setdefault("kind", _KIND_OF.get((key.gv, key.resource), ""))
        body.setdefault("apiVersion", _api_version(key.gv))
        return self._commit("ADDED", key, _with_metadata(body, key, None))

    def _replace(self, key: Key, body: Any) -> dict[str, Any]:
        old = self._existing(key)
        if not isinstance(body, dict) or (body.get("metadata") or {}).get("name") != key.name:
            raise ApiError(400, "BadRequest", "the body's metadata.name must match the URL")
        wanted = body["metadata"].get("resourceVersion")
        if wanted and wanted != old["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on {key.resource} "{key.name}": '
                           "the object has been modified; please apply your changes to the latest version and try again")
        return self._commit("MODIFIED", key, _with_metadata(body, key, old))

    def _patch(self, key: Key, patch: Any, content_type: str) -> dict[str, Any]:
        old = self._existing(key)
        if content_type in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            new = merge_patch(old, patch)
        elif content_type == "application/json-patch+json":
            try:
                new = jsonpatch.apply_patch(old, patch)
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
                raise ApiError(422, "Invalid", f"json patch: {exc}") from exc
        else:
            raise ApiError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format: {content_type}")
        return self._commit("MODIFIED", key, _with_metadata(new, key, old))

    # ------------------------------------------------------------------ watches
    def open_watch(self, collection: Key, query: dict[str, str]) -> _Watch:
        with self._cond:
            since = query.get("resourceVersion", "")
            watch = _Watch(collection, _name_selector(query), self._rv, len(self._events), self._generation,
                           time.monotonic() + float(query.get("timeoutSeconds", DEFAULT_WATCH_TIMEOUT)),
                           query.get("allowWatchBookmarks") in ("true", "1"))
            if since in ("", "0"):  # "start from now", with the current state as ADDED events
                watch.initial = [{"type": "ADDED", "object": obj} for obj in self._matching(collection, watch.name)]
            else:
                watch.position = int(since)
                watch.index = next((i for i, e in enumerate(self._events) if e[0] > watch.position), len(self._events))
            return watch

    def next_events(self, watch: _Watch) -> tuple[list[dict[str, Any]], str | None]:
        """Block until this watch has events or ends: (events, None) or (last events, why it
        ended: "timeout", "expired" or "dropped")."""
        if watch.initial:
            events, watch.initial = watch.initial, []
            return events, None
        with self._cond:
            while True:
                if watch.generation != self._generation:
                    return [], "dropped"
                if watch.position < self._expired_before:
                    return [{"type": "ERROR", "object": ApiError(
                        410, "Expired", f"too old resource version: {watch.position} ({self._expired_before})").status}], "expired"
                events = [{"type": kind, "object": copy.deepcopy(obj)}
                          for rv, kind, key, obj in self._events[watch.index:] if _in(key, watch.collection, watch.name)]
                watch.index = len(self._events)
                if events:
                    watch.position = int(events[-1]["object"]["metadata"]["resourceVersion"])
                    return events, None
                remaining = watch.deadline - time.monotonic()
                if remaining <= 0:
                    kind = _KIND_OF.get((watch.collection.gv, watch.collection.resource), "")
                    bookmark = {"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": _api_version(watch.collection.gv),
                                                               "metadata": {"resourceVersion": str(self._rv)}}}
                    return ([bookmark] if watch.bookmarks else []), "timeout"
                self._cond.wait(remaining)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked watches, as the real server

    def setup(self) -> None:
        super().setup()
        self.kube._track(self.connection, True)

    def finish(self) -> None:
        self.kube._track(self.connection, False)
        try:
            super().finish()
        except OSError:
            pass

    @property
    def kube(self) -> FakeKube:
        return self.server.kube  # type: ignore[attr-defined,no-any-return]

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the request log is `FakeKube.requests`."""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query))
        self.kube._record(method, url.path, query)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            parsed = parse_path(url.path)
            if parsed is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            key, namespaced = parsed
            if method == "GET" and not key.name and LoggedRequest(method, url.path, query).watch:
                self._stream(key, query)
                return
            body = json.loads(raw) if raw else None
            content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            status, answer = self.kube.handle(method, key, namespaced, query, body, content_type)
        except ApiError as exc:
            status, answer = exc.status["code"], exc.status
        except (ValueError, TypeError) as exc:
            status, answer = 400, ApiError(400, "BadRequest", str(exc)).status
        self._send_json(status, answer)

    def _send_json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, collection: Key, query: dict[str, str]) -> None:
        watch = self.kube.open_watch(collection, query)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        while True:
            events, ended = self.kube.next_events(watch)
            data = b"".join(json.dumps(e).encode() + b"\n" for e in events)
            if data:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
            if ended == "dropped":
                self.close_connection = True
                _cut(self.connection)
                return
            if ended:
                self.wfile.write(b"0\r\n\r\n")
                return


def _cut(conn: socket.socket) -> None:
    """Close a connection abruptly, as a crashed server or a broken network would."""
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _in(key: Key, collection: Key, name: str) -> bool:
    return (key.gv, key.resource) == (collection.gv, collection.resource) \
        and collection.namespace in ("", key.namespace) and name in ("", key.name)


def _name_selector(query: dict[str, str]) -> str:
    selector = query.get("fieldSelector", "")
    if selector and not selector.startswith("metadata.name="):
        raise ApiError(400, "BadRequest", "fakekube only implements fieldSelector=metadata.name=NAME")
    return selector.removeprefix("metadata.name=")


def _api_version(gv: str) -> str:
    return gv.removeprefix("api/").removeprefix("apis/")


def _with_metadata(obj: dict[str, Any], key: Key, old: dict[str, Any] | None) -> dict[str, Any]:
    """The server-owned metadata: name/namespace from the URL, uid and creation time kept."""
    obj = copy.deepcopy(obj)
    meta = obj.setdefault("metadata", {})
    meta["name"] = key.name
    if key.namespace:
        meta["namespace"] = key.namespace
    previous = (old or {}).get("metadata", {})
    meta["uid"] = previous.get("uid") or str(uuid.uuid4())
    meta["creationTimestamp"] = previous.get("creationTimestamp") or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return obj

"""A list+watch cache of one resource's raw objects (dicts as the API server sends them), kept
by a daemon thread with the namespace cache's algorithm and timing (kube/namespaces.py: a watch
re-opened from the last resourceVersion, a relist after any failure and after 410 Gone, capped
exponential backoff with jitter, the cache kept while the API is unreachable).

A relist replaces the dict in one assignment and events arrive in resourceVersion order, so a
reader's snapshot is always some consistent past state of the cluster, never a mix.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from webhook.kube.reflector import (
    BACKOFF_INITIAL_SECONDS, BACKOFF_MAX_SECONDS, CONNECT_TIMEOUT_SECONDS, READ_MARGIN_SECONDS,
    WATCH_TIMEOUT_SECONDS, _describe, backoff_delay,
)

log = logging.getLogger("podmedic.listwatch")

Obj = dict[str, Any]


class ListWatch:
    """`list_call` is a list function of the official client (e.g. CoreV1Api.list_pod_for_all_namespaces);
    objects are keyed by uid. `synced` once the first list is done; `last_sync` as in KubeSource."""

    def __init__(self, list_call: Callable[..., Any], what: str, *, watch_timeout: int = WATCH_TIMEOUT_SECONDS,
                 connect_timeout: float = CONNECT_TIMEOUT_SECONDS, backoff_initial: float = BACKOFF_INITIAL_SECONDS,
                 backoff_max: float = BACKOFF_MAX_SECONDS):
        self._list = list_call
        self._what = what
        self._watch_timeout = watch_timeout
        self._request_timeout = (connect_timeout, watch_timeout + READ_MARGIN_SECONDS)
        self._backoff = (backoff_initial, backoff_max)
        self._objects: dict[str, Obj] = {}
        self._failures = 0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._watch: Any = None
        self.synced = False
        self.last_sync: float | None = None

    def snapshot(self) -> list[Obj]:
        return list(self._objects.values())

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"podmedic-{self._what}", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._watch is not None:
            self._watch.stop()
        if self._thread is not None:
            self._thread.join(timeout=self._request_timeout[0] + 1)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                rv = self._relist()
                while not self._stopping.is_set():
                    rv = self._watch_from(rv)
            except Exception as exc:  # anything: keep the cache, back off, relist
                if self._stopping.is_set():
                    return
                self._failures += 1
                delay = backoff_delay(self._failures, *self._backoff)
                level = logging.WARNING if self._failures == 1 else logging.DEBUG
                log.log(level, "%s watch failed (%s), keeping the cache; relisting in %.1f s",
                        self._what, _describe(exc), delay)
                self._stopping.wait(delay)

    def _relist(self) -> str:
        response = self._list(_preload_content=False, _request_timeout=self._request_timeout)
        body = json.loads(response.data)
        self._objects = {item["metadata"]["uid"]: item for item in body["items"]}
        self.synced, self._failures, self.last_sync = True, 0, time.time()
        return str(body["metadata"]["resourceVersion"])

    def _watch_from(self, rv: str) -> str:
        from kubernetes import watch

        self._watch = watch.Watch()
        for event in self._watch.stream(self._list, resource_version=rv, allow_watch_bookmarks=True,
                                        timeout_seconds=self._watch_timeout, _request_timeout=self._request_timeout):
            obj = event["raw_object"]
            rv = str(obj["metadata"]["resourceVersion"])
            if event["type"] == "DELETED":
                self._objects.pop(obj["metadata"]["uid"], None)
            elif event["type"] in ("ADDED", "MODIFIED"):
                self._objects[obj["metadata"]["uid"]] = obj
            self.last_sync = time.time()
            if self._stopping.is_set():
                break
        self.last_sync = time.time()
        return rv

"""One list+watch loop (client-go's reflector): keeps a handler's in-memory view of one kind of
object current, with a daemon thread, so that admission never calls the API.

Watch timing. Each watch asks the API server to end it after WATCH_TIMEOUT_SECONDS and is
re-opened from the last resourceVersion (cheap: served from the API server's watch cache), so a
connection that died without a FIN (network partition) is noticed within READ_TIMEOUT_SECONDS.
After a failure the view is kept (stale while unreachable) and a relist is retried with capped
exponential backoff and jitter; so is a watch that ends with no event within a second (a proxy
closing every watch at once). While connected, a change is applied as soon as its event arrives
(milliseconds). Every failure, 410 Gone included, ends in a relist: the API server's
watch cache may not hold our resourceVersion any more after a reconnect, and a list is the one
way to learn about deletions missed meanwhile.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from webhook.kube.client import CONNECT_RETRIES

log = logging.getLogger("podmedic.namespaces")

WATCH_TIMEOUT_SECONDS = 10
READ_MARGIN_SECONDS = 5
READ_TIMEOUT_SECONDS = WATCH_TIMEOUT_SECONDS + READ_MARGIN_SECONDS
CONNECT_TIMEOUT_SECONDS = 2.0
BACKOFF_INITIAL_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 5.0
# A watch that ends with no event within a second of being opened is a failure (backoff and
# relist): a proxy or load balancer closing every streaming response at once (re-opened at once,
# it was a tight loop of watches). One that lasts longer is re-opened from its position, whoever
# ended it: the API server at the timeoutSeconds it was given, or an intermediary's idle timeout.
# The API server itself may end watches early too (a watch-cache re-initialisation, a graceful
# shutdown): one relist if within that second, none later. Half the timeout when that is shorter
# (the tests' short timeouts).
EARLY_END_SECONDS = 1.0


# Once the API server answers again, the view has converged (relisted: changed objects updated,
# deleted ones gone) within this bound, plus the list request's own duration: the attempt in
# flight fails within its connect timeout, the next one starts within the capped backoff. An
# outage is noticed at once when the connection is closed or refused (API server restart), and
# within READ_TIMEOUT_SECONDS when it silently dies.
def convergence_bound(backoff_max: float, connect_timeout: float) -> float:
    return backoff_max + (1 + CONNECT_RETRIES) * connect_timeout


CONVERGENCE_BOUND_SECONDS = convergence_bound(BACKOFF_MAX_SECONDS, CONNECT_TIMEOUT_SECONDS)  # 7 s


class Handler(Protocol):
    """What a reflector feeds: a whole list (replace the view in one step), then single events."""

    def replace(self, items: list[dict[str, Any]]) -> None: ...

    def apply(self, kind: str, obj: dict[str, Any]) -> None:
        """kind: ADDED, MODIFIED or DELETED (bookmarks only move the position)."""


class Reflector:
    """List, then watch from the list's resourceVersion, for ever; `list_call` is a CoreV1Api
    list method (the same one serves the watch), `selector` its fieldSelector.

    State for metrics and health: `synced` (the first list is done; never False again), `last_sync` (time.time()
    when the view was last known current: a list, an event, a watch ended normally; None before
    the first list) and `relists` (lists after the first: expiries and reconnects). `on_sync()` is
    called whenever last_sync moves.
    """

    def __init__(self, what: str, list_call: Callable[..., Any], handler: Handler, *, selector: str | None = None,
                 watch_timeout: int = WATCH_TIMEOUT_SECONDS, connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
                 backoff_initial: float = BACKOFF_INITIAL_SECONDS, backoff_max: float = BACKOFF_MAX_SECONDS,
                 on_sync: Callable[[], None] | None = None):
        self._what = what
        self._list = list_call
        self._handler = handler
        self._selector = {"field_selector": selector} if selector else {}
        self._watch_timeout = watch_timeout
        self._request_timeout = (connect_timeout, watch_timeout + READ_MARGIN_SECONDS)
        self._backoff = (backoff_initial, backoff_max)
        self._failures = 0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._watch: Any = None  # the open kubernetes.watch.Watch, so stop() can cut it
        self.synced = False
        self.last_sync: float | None = None
        self._on_sync = on_sync
        self.relists = 0

    @property
    def convergence_bound(self) -> float:
        """Seconds after the API answers again within which the view has relisted."""
        return convergence_bound(self._backoff[1], self._request_timeout[0])

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"podmedic-{self._what}", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        watch = self._watch
        if watch is not None:
            watch.stop()
        if self._thread is not None:
            self._thread.join(timeout=self._request_timeout[0] + 1)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                rv = self._relist()
                while not self._stopping.is_set():
                    rv = self._watch_from(rv)
            except Exception as exc:  # anything: keep the view, back off, relist
                if self._stopping.is_set():
                    return
                self._failures += 1
                delay = backoff_delay(self._failures, *self._backoff)
                level = logging.WARNING if self._failures == 1 else logging.DEBUG
                log.log(level, "%s watch failed (%s), serving the cached %s; relisting in %.1f s",
                        self._what, _describe(exc), self._what, delay)
                self._stopping.wait(delay)

    def _relist(self) -> str:
        response = self._list(_preload_content=False, _request_timeout=self._request_timeout, **self._selector)
        body = json.loads(response.data)
        if self.synced:  # counted before the view changes: whoever sees the new view sees the count
            self.relists += 1
        self._handler.replace(body["items"])
        # The failure count (the backoff) is not reset here but once a watch works: when LIST is
        # allowed and WATCH is not (RBAC missing `watch`), every round lists fine and then fails,
        # and resetting here relisted several times a second, for ever, warning each time.
        self.synced = True
        self._synced_now()
        return str(body["metadata"]["resourceVersion"])

    def _watch_works(self) -> None:
        """A watch delivered an event or ended normally: the next failure starts a new backoff."""
        if self._failures:
            log.info("%s watch working again after %d failed attempt(s)", self._what, self._failures)
            self._failures = 0

    def _watch_from(self, rv: str) -> str:
        """One watch, until the API server ends it after watch_timeout; returns the new position.
        An ERROR event (410 Gone), a broken connection or an early end with no event raises."""
        from kubernetes import watch

        self._watch = watch.Watch()
        opened, delivered = time.monotonic(), False
        for event in self._watch.stream(self._list, resource_version=rv, allow_watch_bookmarks=True,
                                        timeout_seconds=self._watch_timeout, _request_timeout=self._request_timeout,
                                        **self._selector):
            delivered = True
            obj = event["raw_object"]
            rv = str(obj["metadata"]["resourceVersion"])
            if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                self._handler.apply(event["type"], obj)
            self._synced_now()
            self._watch_works()
            if self._stopping.is_set():
                break
        lasted = time.monotonic() - opened
        if not delivered and lasted < min(EARLY_END_SECONDS, self._watch_timeout / 2):
            raise WatchEndedEarly(f"ended after {lasted:.1f} s with no event, asked for {self._watch_timeout} s")
        self._synced_now()
        self._watch_works()
        return rv

    def _synced_now(self) -> None:
        """The view is current: move last_sync and tell `on_sync` (the server sets its gauge from
        it, in every worker, instead of only in the one that happens to serve /metrics)."""
        self.last_sync = time.time()
        if self._on_sync is not None:
            self._on_sync()


class WatchEndedEarly(Exception):
    """A watch ended normally within EARLY_END_SECONDS of being opened, having delivered nothing."""


def backoff_delay(failures: int, initial: float, cap: float) -> float:
    """Capped exponential backoff with jitter (0.5-1x, so replicas do not relist in step); never
    above the cap, which CONVERGENCE_BOUND_SECONDS relies on."""
    return min(cap, initial * 2.0 ** (failures - 1)) * random.uniform(0.5, 1.0)


def _describe(exc: Exception) -> str:
    status = getattr(exc, "status", None)
    if status == 410:
        return "410 Gone: resourceVersion expired"
    if isinstance(exc, WatchEndedEarly):
        return str(exc)
    return f"HTTP {status}" if status else type(exc).__name__

"""Connection balancing over gunicorn workers (webhook.server.balancing, webhook.server.gunicorn.QueueTimedWorker).

The table's rule is checked directly; the real server is checked the way the API server uses
it: a burst of keep-alive TLS connections, counted per worker from /proc. Without balancing,
gthread's shared listening socket lands most of a burst on one worker (16+0 in most runs here).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests import pods, procs
from tests.conftest import RunningServer, start_server, stop_server
from webhook.server.balancing import STALE_AFTER, ConnectionTable

BURST = 16


def test_the_least_loaded_worker_accepts_and_ties_accept_together():
    table = ConnectionTable(slots=4)
    table.publish(0, pid=100, connections=3, now=10.0)
    table.publish(1, pid=101, connections=2, now=10.0)
    assert not table.may_accept(0, 3, now=10.0)  # a live peer holds fewer
    assert table.may_accept(1, 2, now=10.0)
    table.publish(1, pid=101, connections=3, now=10.0)
    assert table.may_accept(0, 3, now=10.0) and table.may_accept(1, 3, now=10.0)


def test_stale_or_departed_peers_hold_nobody_back():
    table = ConnectionTable(slots=2)
    table.publish(0, pid=100, connections=5, now=10.0)
    table.publish(1, pid=101, connections=0, now=10.0)
    assert not table.may_accept(0, 5, now=10.0 + STALE_AFTER / 2)
    assert table.may_accept(0, 5, now=10.0 + STALE_AFTER)  # peer 1 stopped publishing: stuck or dead
    table.publish(1, pid=101, connections=0, now=20.0)
    table.clear(1)
    assert table.may_accept(0, 5, now=20.0)


def test_slots_are_handed_out_once_and_survive_fork():
    table = ConnectionTable(slots=2)
    assert table.free_slot([]) == 0
    assert table.free_slot([0, None]) == 1
    assert table.free_slot([0, 1]) is None  # the worker then runs unbalanced, never refused
    pid = os.fork()
    if pid == 0:  # the child writes, the parent must see it: the table is shared memory
        table.publish(1, pid=os.getpid(), connections=7)
        os._exit(0)
    os.waitpid(pid, 0)
    assert not table.may_accept(0, 8)


# ---------------------------------------------------------------------------------------------
# The real server


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory, certs_dir: Path) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("balance"), certs_dir, "--workers", "2")
    yield running
    stop_server(running)


def _open(server: RunningServer, context: ssl.SSLContext, start: threading.Barrier) -> http.client.HTTPSConnection:
    """One kept-alive connection that has been served once (so a worker surely holds it)."""
    parts = urlsplit(server.url)
    conn = http.client.HTTPSConnection(parts.hostname, parts.port, context=context, timeout=10)
    start.wait(timeout=10)
    conn.request("GET", "/healthz")
    response = conn.getresponse()
    response.read()
    assert response.status == 200
    return conn


@contextmanager
def burst(server: RunningServer, count: int = BURST) -> Iterator[list[int]]:
    """Open `count` connections at once; yield the connections each worker then holds (any
    connection held before, such as the fixture's /readyz session, is counted too)."""
    before = sum(held(server))
    context = ssl.create_default_context(cafile=str(server.ca))
    start = threading.Barrier(count)
    with ExitStack() as stack, ThreadPoolExecutor(count) as pool:
        for conn in pool.map(lambda _: _open(server, context, start), range(count)):
            stack.callback(conn.close)
        split = held(server)
        assert sum(split) == before + count
        yield split
    _wait_until_closed(server, before)


def abandon(server: RunningServer, count: int) -> None:
    """Send a review and drop the connection (a reset) before the answer: what the API server
    does when a call outlives its timeoutSeconds."""
    context = ssl.create_default_context(cafile=str(server.ca))
    parts = urlsplit(server.url)
    body = json.dumps(pods.review(pods.pod()))
    for _ in range(count):
        conn = http.client.HTTPSConnection(parts.hostname, parts.port, context=context, timeout=10)
        conn.request("POST", "/mutate", body, {"Content-Type": "application/json"})
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()


def held(server: RunningServer) -> list[int]:
    return procs.connections_per_worker(server.process.pid, urlsplit(server.url).port or 443)


def _wait_until_closed(server: RunningServer, remaining: int) -> None:
    deadline = time.monotonic() + 10
    while sum(held(server)) > remaining and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)  # and the workers have counted the closes


def _wait_for_both_workers(server: RunningServer) -> None:
    """/readyz answers as soon as one worker has loaded the app; the other may still be
    importing, and a burst before it publishes lands on the first."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with burst(server, 4) as split:
            if len(split) == 2 and min(split) > 0:
                return
    raise AssertionError("the second worker never took a connection")


def test_a_burst_of_connections_splits_evenly_and_stays_even_after_reconnects(two_workers):
    """Five bursts in a row, each split within one connection (without balancing, most of
    them are not). Between bursts, abandoned reviews: gunicorn 27.0.1 counts such a close
    twice, and a count below zero would make that worker take the whole next burst."""
    _wait_for_both_workers(two_workers)
    idle = sum(held(two_workers))
    splits = []
    for _ in range(5):
        with burst(two_workers) as split:
            splits.append(split)
        abandon(two_workers, 6)
        _wait_until_closed(two_workers, idle)
    assert all(len(s) == 2 and s[0] - s[1] <= 1 for s in splits), splits

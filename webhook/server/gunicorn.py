"""The Flask app under gunicorn, over TLS only (`podmedic serve`).

Why these gunicorn settings (measured with `make bench`, docs on the benchmark):
- gthread workers keep connections alive; the API server reuses its connections, so sync
  workers (one TLS handshake per review) would cost several times the latency.
- the app is built in each worker (no preload): every worker owns its namespace watch. The
  certificate reloader is made by the master and refreshed before each fork, so a worker
  started while the files hold a broken pair inherits the last pair that loaded.
- gunicorn calls the `ssl_context` hook for every accepted connection; it returns the worker's
  CertificateReloader context, so a rotated Secret is served to new handshakes without restart.
- 2 threads per worker, not more: a review is pure CPU under the GIL, so threads add no
  throughput, and every extra one waits its turn for the GIL while holding a request
  (measured with `make bench`: 4 threads doubled p99 at saturation). The second thread keeps
  one slow client from stalling its worker's other connections.
- connections are balanced over the workers (server.balancing), since gthread keeps a kept-alive
  connection on the worker that accepted it and a burst otherwise lands on one worker.
- the garbage collector is tuned once the app is built (settle_heap()): a large pod decodes into
  thousands of objects that reference counting frees when the review ends; the default
  collector would walk them several times per review, and the whole heap now and then.
"""

from __future__ import annotations

import argparse
import errno
import gc
import os
import select
import selectors
import ssl
import time
from functools import partial
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.workers.gthread import TConn, ThreadWorker

from webhook.engine.config import GlobalConfig
from webhook.kube.namespaces import source_from_args
from webhook.server import deadline
from webhook.server.balancing import ConnectionTable
from webhook.server.tls import CertificateReloader, configure_handshake_timeout, handshake_timeout

_reloader: CertificateReloader | None = None  # made by the master (Server.__init__), inherited at fork
_draining = False  # set when this worker got SIGTERM: /readyz turns false while it drains
_connections: ConnectionTable | None = None  # made by the master before it forks (Server.__init__)
BALANCE_RECHECK = 0.01  # seconds between looks at the peers while held back (see QueueTimedWorker)
BALANCE_MAX_WAIT = 0.05  # longest a connection may wait in the listen queue for a held-back worker's peers


def _ssl_context(conf: Any, default_factory: Any) -> ssl.SSLContext:
    assert _reloader is not None  # load() runs in the worker before it serves
    return _reloader.context()


def _pre_fork(server: Any, worker: Any) -> None:
    """In the master: give the new worker a free slot of the connection table, and the newest
    usable certificate pair. A worker that loaded its own from the files would have none while
    they hold a broken pair (a rotation half done) and fail every handshake it accepts; the
    master's reloader keeps the last pair that loaded, as a running worker's does."""
    assert _connections is not None and _reloader is not None
    _reloader.refresh()
    worker.podmedic_slot = _connections.free_slot(getattr(w, "podmedic_slot", None) for w in server.WORKERS.values())


def _child_exit(server: Any, worker: Any) -> None:
    """In the master: drop the dead worker's live gauges and free its connection slot. Only
    prometheus_client is imported here, never webhook.server.metrics: declaring the metrics
    would give the master value files of its own, and the master never dies, so its initial 0
    would stay the minimum of the namespace-sync gauge (`livemin`) for the life of the server."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
    if _connections is not None and worker.podmedic_slot is not None:
        _connections.clear(worker.podmedic_slot)


class QueueTimedWorker(ThreadWorker):
    """gthread, plus two things:
    - a timestamp per queued request so the app can tell how long it waited (see deadline.py).
      Keep-alive connections are re-queued for every request, so the stamp is per request;
    - connection balancing (see server.balancing). gthread's loop calls `notify()`, then accepts while
      `nr_conns < worker_connections`, then polls. So `notify` publishes this worker's count and
      reads the peers'; while a live peer holds fewer connections, `worker_connections` reads
      as "full" and the poll is cut short, so that this worker looks again within
      BALANCE_RECHECK seconds instead of sleeping through the rest of a burst of connections.
      Connections left waiting in the listen queue for BALANCE_MAX_WAIT are taken anyway:
      whatever the peers do, balancing delays no connection by more than that.
    """

    podmedic_slot: int | None = None  # this worker's row of _connections, set by _pre_fork in the master
    _held_back = False
    _waiting_since: float | None = None

    def _row(self) -> tuple[ConnectionTable, int] | None:
        """The table and this worker's row in it, when the master had a free one for it."""
        if _connections is None or self.podmedic_slot is None:
            return None
        return _connections, self.podmedic_slot

    @property
    def worker_connections(self) -> int:
        return 0 if self._held_back else self._connection_limit

    @worker_connections.setter
    def worker_connections(self, limit: int) -> None:
        self._connection_limit = limit

    def notify(self) -> None:
        super().notify()
        self._publish()
        row = self._row()
        if row:
            table, slot = row
            held = self.alive and not table.may_accept(slot, self.nr_conns)
            if not held:
                self._waiting_since = None
            self._held_back = held and not self._left_waiting()

    def accept(self, listener: Any) -> None:
        """Accept into the poller, not onto a request thread: gthread hands a new connection
        to a thread at once, which then waits up to 5 s for its first byte (and, over TLS,
        blocks in the handshake), so a few silent connections held every thread and stalled
        every review. Here a thread is taken only once the client has sent something, and a
        connection that sends nothing is closed after tls.HANDSHAKE_TIMEOUT by gthread's
        murder_pending (pending_conns stays sorted by timeout: gthread adds to it only when
        handle() gives up waiting for a first byte, which it never does for these)."""
        try:
            sock, client = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = TConn(self.cfg, sock, client, listener.getsockname())  # made non-blocking
        conn.timeout = time.monotonic() + handshake_timeout()
        self.pending_conns.append(conn)
        self.poller.register(sock, selectors.EVENT_READ, partial(self.on_pending_socket_readable, conn))
        self._publish()  # at once: a peer deciding during the same burst must see it

    def finish_request(self, conn: Any, fs: Any) -> None:
        """gunicorn 27.0.1 counts some closes twice: when a client went away mid-request (the
        API server giving up on a call), finish_request's graceful close raises on the dead
        socket and its error path decrements `nr_conns` a second time. The count drifts below
        zero and balancing would read it; one finished request closes at most one connection."""
        before = self.nr_conns
        super().finish_request(conn, fs)
        self.nr_conns = max(self.nr_conns, before - 1)

    def wait_for_and_dispatch_events(self, timeout: float | None) -> None:
        if self._held_back:
            timeout = BALANCE_RECHECK if timeout is None else min(timeout, BALANCE_RECHECK)
        super().wait_for_and_dispatch_events(timeout)

    def _left_waiting(self) -> bool:
        """Has the listen queue stayed non-empty for BALANCE_MAX_WAIT while this worker held
        back? Then the peers are not taking the connections (busy, or not polling) and this
        worker takes them: balancing must never leave a connection waiting."""
        if not select.select(self.sockets, [], [], 0)[0]:
            self._waiting_since = None
            return False
        now = time.monotonic()
        if self._waiting_since is None:
            self._waiting_since = now
        return now - self._waiting_since >= BALANCE_MAX_WAIT

    def _publish(self) -> None:
        row = self._row()
        if row and self.alive:
            table, slot = row
            table.publish(slot, os.getpid(), self.nr_conns)  # self.pid, typed str: "[booting]" until forked

    def enqueue_req(self, conn: Any) -> None:
        conn.podmedic_enqueued_at = time.monotonic()
        super().enqueue_req(conn)

    def handle(self, conn: Any) -> Any:
        deadline.mark_start(getattr(conn, "podmedic_enqueued_at", None))
        return super().handle(conn)

    def handle_exit(self, sig: int, frame: Any) -> None:
        """SIGTERM: readiness turns false first, then gunicorn drains in-flight requests (and
        answers requests on kept-alive connections with `Connection: close`)."""
        global _draining
        _draining = True
        row = self._row()
        if row:
            table, slot = row
            table.clear(slot)  # accepts no more: peers must not wait for it
        super().handle_exit(sig, frame)


class Server(BaseApplication):
    """A gunicorn application configured from `podmedic serve` flags, not from a file."""

    def __init__(self, args: argparse.Namespace, config: GlobalConfig):
        global _connections, _reloader
        self.args = args
        self.podmedic_config = config
        _connections = ConnectionTable(slots=2 * args.workers)  # a HUP's new workers overlap the old
        _reloader = CertificateReloader(args.tls_cert_file, args.tls_private_key_file,
                                        check_interval=args.cert_reload_interval)
        super().__init__()

    def load_config(self) -> None:
        a = self.args
        settings = {
            "bind": [a.bind],
            "reuse_port": a.reuse_port,
            "workers": a.workers,
            "threads": a.threads,
            "worker_class": "webhook.server.gunicorn.QueueTimedWorker",
            "keepalive": 75,  # longer than the API server's idle connection reuse
            "timeout": 30,
            "graceful_timeout": a.graceful_timeout,
            "certfile": a.tls_cert_file,
            "keyfile": a.tls_private_key_file,
            "ssl_context": _ssl_context,
            "pre_fork": _pre_fork,
            "child_exit": _child_exit,
            "accesslog": None,
            "errorlog": "-",
            "loglevel": "info",
            "proc_name": "podmedic",
            # gunicorn 27's control socket lives at a host-wide path that a read-only home
            # cannot hold and that concurrent servers would share.
            "control_socket_disable": True,
        }
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from webhook.server import metrics
        from webhook.server.app import create_app

        def expiry_gauge(reloader: CertificateReloader) -> None:
            if reloader.not_after is not None:  # None until a pair has loaded
                metrics.CERT_EXPIRY.set(reloader.not_after.timestamp())

        a = self.args
        configure_handshake_timeout(a.handshake_timeout)
        assert _reloader is not None  # the master's, as it was at fork (Server.__init__, _pre_fork)
        _reloader.on_reload = expiry_gauge  # set in the worker: metrics are never declared in the master
        expiry_gauge(_reloader)
        namespaces = source_from_args(a.namespaces_file, a.kubeconfig, self.podmedic_config.logs.watched_claim)
        namespaces.start()
        app = create_app(self.podmedic_config, namespaces, _reloader, draining=lambda: _draining)
        settle_heap()
        return app


# Objects allocated (net) before the youngest generation is collected. A review of an 89 KB,
# 20-container pod holds about 5 000 at once: above that, its objects are freed by reference
# counting before a collection ever sees them. Cycles still get collected, just less often.
GC_YOUNG_THRESHOLD = 20_000


def settle_heap() -> None:
    """Once per worker, after the app is built: move everything loaded so far (Flask, the
    engine, a kubernetes client) out of the collector's reach (gc.freeze: never collected, never
    walked again), so a full collection walks only what reviews left behind, and raise the
    youngest generation's threshold above what one review allocates. Measured with `make bench`
    (docs/benchmark.md): the large pod's p99 and CPU per review."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)

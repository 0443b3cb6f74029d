"""A small HTTPS server for one process's /metrics (the quarantine controller's), following its
certificate files without a restart.

prometheus_client's `start_http_server(certfile=, keyfile=)` wraps the listening socket once, with
a context loaded at start: it presented that pair until the process restarted (the Secret's pair
is renewed in place, docs/certificates.md), and `accept()` on a wrapped listening socket runs
the TLS handshake in the server's one accept thread, so a client that connected and never sent
a ClientHello stalled every later scrape. Here `accept()` returns the plain socket and each
connection's thread does its handshake with `CertificateReloader.context()` (the webhook's
reloader and TLS settings, webhook.server.tls), bounded by its handshake timeout: the
handshake and the request's first bytes within `handshake_timeout()`, the request within
CLIENT_IO_TIMEOUT (tls._TimedSSLSocket).
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import REGISTRY, make_wsgi_app
from prometheus_client.registry import CollectorRegistry

from webhook.server.tls import CertificateReloader

log = logging.getLogger("podmedic.metrics")


class _QuietHandler(WSGIRequestHandler):
    """No access log: a scrape every few seconds would fill it."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
        pass


class MetricsServer(ThreadingMixIn, WSGIServer):
    """/metrics over TLS with the reloader's newest pair; `serve_forever()` in a thread of its own."""

    daemon_threads = True  # a connection in flight does not keep the process from exiting
    block_on_close = False

    def __init__(self, host: str, port: int, reloader: CertificateReloader,
                 registry: CollectorRegistry = REGISTRY) -> None:
        # The address family of the host given (an IPv6 literal binds AF_INET6), as prometheus_client does.
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                      flags=socket.AI_PASSIVE)[0]
        self.address_family = family
        self.reloader = reloader
        super().__init__((str(address[0]), port), _QuietHandler)
        self.set_app(make_wsgi_app(registry))

    def finish_request(self, request: Any, client_address: Any) -> None:
        """In the connection's own thread: the handshake, then the one request (HTTP/1.0)."""
        try:
            tls = self.reloader.context().wrap_socket(request, server_side=True)  # handshakes, bounded
        except (OSError, ssl.SSLError) as exc:  # a stalled or failed handshake, no pair loaded
            log.debug("TLS handshake with %s failed: %s", client_address[0], exc)
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            tls.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that stalled or went away mid-request is not the server's error: no traceback."""
        log.debug("request from %s failed", client_address[0], exc_info=True)


def serve_metrics(host: str, port: int, reloader: CertificateReloader) -> MetricsServer:
    """Bind (OSError if the address is taken) and serve the default registry in a daemon thread."""
    server = MetricsServer(host, port, reloader)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server

"""The server's TLS context, following its certificate files without a restart.

gunicorn calls its `ssl_context` hook for every accepted connection (gunicorn/sock.py,
`ssl_wrap_socket`); podmedic's hook returns `CertificateReloader.context()`. The reloader hands
out one cached `SSLContext` and, at most once per `check_interval`, re-reads the certificate and
key and compares a SHA-256 digest of their content with the one it loaded:

- content, not mtimes or inotify: the kubelet updates a mounted Secret by writing a new
  timestamped directory and atomically renaming the `..data` symlink onto it
  (`tls.crt -> ..data/tls.crt`). The files the server opened never change, their mtimes are those
  of the new directory, and inotify watches on `tls.crt` see no event at all (the watched path is
  a symlink whose target changes two levels up). Reading two small files every few seconds is
  cheap and sees every kind of update: Secret swaps, `podmedic certs init`'s atomic renames,
  a plain `cp`.
- a change only becomes the served pair when it loads completely: a half-written file or a key
  that does not match the certificate (a non-atomic writer replacing the two files one after
  the other) is logged once and the previous context keeps serving; the next interval tries
  again, so the pair is taken as soon as it is whole.
- a context is immutable once built, so swapping the reference is the whole update: a
  connection keeps the context it was accepted with (established connections and requests in
  flight are untouched), and each new handshake gets the newest pair.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import select
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding

from webhook.pki.x509 import CertError, parse_chain

log = logging.getLogger("podmedic.tls")

# TLS 1.2 suites with forward secrecy and AEAD only (no CBC, no static RSA, no DHE); TLS 1.3
# suites are all of that already and are not affected by this string. Both ECDSA and RSA
# serving keys work, so a certificate from cert-manager (RSA by default) is served as well.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


# Seconds a client gets for sending one request.
# gunicorn's gthread worker reads headers and body in blocking mode with no timeout, so a client
# that stalls mid-request -- or trickles a byte now and then -- would hold a worker thread for
# ever; the API server sends a review in milliseconds and gives up after its timeoutSeconds (at
# most 30) anyway.
CLIENT_IO_TIMEOUT = 5.0

# Seconds a new connection gets to complete its TLS handshake: waiting for its first byte (in
# the worker's poller, webhook.server.gunicorn) and then the handshake itself (on a request
# thread, as a whole: CPython's _ssl holds one deadline for a blocking handshake), and its first
# request's first bytes, in the same budget (_TimedSSLSocket.do_handshake). Much shorter
# than CLIENT_IO_TIMEOUT because the threads are few (2 per worker): a peer that connects and
# then stalls mid-handshake holds one of them for this long, and a handful of such peers must not
# push the API server's reviews past its timeoutSeconds. A client on the same network sends its
# ClientHello in microseconds and the handshake is one round trip. `podmedic serve
# --handshake-timeout` overrides it.
HANDSHAKE_TIMEOUT = 1.0
_TIGHTEN_AFTER = 1.0  # seconds into a request before each read is held to the time left


class _TimedSSLSocket(ssl.SSLSocket):
    """An SSLSocket whose "blocking" mode is blocking with a deadline: gunicorn switches
    kept-alive sockets between non-blocking (polling) and blocking (handling one request) with
    setblocking(), and runs the handshake on a socket it made blocking. Each switch to blocking
    starts a CLIENT_IO_TIMEOUT budget for receiving that request (the handshake and the first
    request's first bytes share a shorter handshake_timeout before it); once a request has taken
    longer than _TIGHTEN_AFTER (never, for the API server), every read may
    only wait for what is left of it. Until then no read pays for the bookkeeping. Writing the
    answer is not checked against the deadline (the app answers a request it could not read
    with a 400); it keeps the socket's timeout, which after a slow request is what the last
    read left, and a client that does not read its answer is cut after that."""

    _deadline = 0.0
    handshake_timeout = HANDSHAKE_TIMEOUT  # set per worker by configure_handshake_timeout()

    def setblocking(self, flag: bool) -> None:
        self._deadline = time.monotonic() + CLIENT_IO_TIMEOUT if flag else 0.0
        self.settimeout(CLIENT_IO_TIMEOUT if flag else 0.0)

    def do_handshake(self, block: bool = False) -> None:
        """The handshake and then the first request's first bytes get handshake_timeout in all;
        the request's own budget starts when they arrive. A client sends its request as soon as
        the handshake is done (over TLS 1.3 with its Finished, over 1.2 one round trip later):
        one that stayed silent after it held a request thread for CLIENT_IO_TIMEOUT, so four such
        connections stalled every review of a 2 x 2 server for 5 s."""
        until = time.monotonic() + self.handshake_timeout
        self.settimeout(self.handshake_timeout)
        try:
            super().do_handshake(block)
        except TimeoutError as exc:
            # As an end of stream (gunicorn closes quietly), not an OSError that it logs with a
            # traceback: a peer that gives up mid-handshake is not the server's error.
            raise ssl.SSLEOFError(ssl.SSL_ERROR_EOF, f"no TLS handshake within {self.handshake_timeout:g}s") from exc
        # OpenSSL reads record by record: the request's first record is still in the kernel's
        # buffer, where poll sees it (select.select would fail past FD_SETSIZE descriptors).
        waiting = select.poll()
        waiting.register(self, select.POLLIN)
        if not waiting.poll(max(0.0, until - time.monotonic()) * 1000):
            raise _stalled(f"no request within {self.handshake_timeout:g}s of the TLS handshake's start")
        self.setblocking(True)

    def _hold_to_deadline(self) -> None:
        if self._deadline:
            left = self._deadline - time.monotonic()
            if left < CLIENT_IO_TIMEOUT - _TIGHTEN_AFTER:
                if left <= 0:
                    raise _stalled(f"client took longer than {CLIENT_IO_TIMEOUT:g}s for one request")
                self.settimeout(left)

    def _silent(self) -> ssl.SSLEOFError:
        """A read that timed out, as recv() and recv_into() report it: an end of stream (_stalled)."""
        return _stalled(f"client sent nothing for {self.gettimeout() or 0:.3g}s mid-request")

    def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
        self._hold_to_deadline()
        try:
            return super().recv(buflen, flags)
        except TimeoutError as exc:
            raise self._silent() from exc

    def recv_into(self, buffer: Any, nbytes: int | None = None, flags: int = 0) -> int:
        self._hold_to_deadline()
        try:
            return super().recv_into(buffer, nbytes, flags)
        except TimeoutError as exc:
            raise self._silent() from exc

    def send(self, data: Any, flags: int = 0) -> int:
        """sendall() writes through this: a client that stopped reading its answers."""
        try:
            return super().send(data, flags)
        except TimeoutError as exc:
            raise _stalled(f"client read nothing for {self.gettimeout() or 0:.3g}s") from exc


def _stalled(message: str) -> ssl.SSLEOFError:
    """A client that stalled past its deadline, as an end of stream: gunicorn then closes the
    connection quietly, as it does for a stalled handshake. A TimeoutError (an OSError with no
    errno) it would log as `[ERROR] Socket error processing request.` with a traceback, once per
    stalled connection. The app, reading a body, still answers it with a 400 (an OSError)."""
    return ssl.SSLEOFError(ssl.SSL_ERROR_EOF, message)


def configure_handshake_timeout(seconds: float) -> None:
    """Set the handshake timeout of every server socket made from now on (see HANDSHAKE_TIMEOUT)."""
    _TimedSSLSocket.handshake_timeout = seconds


def handshake_timeout() -> float:
    """The handshake timeout in force (the worker also bounds the wait for a first byte with it)."""
    return _TimedSSLSocket.handshake_timeout


def _digest(cert_pem: bytes, key_pem: bytes) -> bytes:
    return hashlib.sha256(cert_pem + b"\0" + key_pem).digest()


def served_certificate(context: ssl.SSLContext) -> bytes:
    """The leaf (DER) that a handshake with `context` presents, from a handshake in memory: an
    SSLContext does not say which certificate load_cert_chain() read from the files."""
    client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_context.check_hostname, client_context.verify_mode = False, ssl.CERT_NONE
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_context.wrap_bio(to_client, to_server)
    server = context.wrap_bio(to_server, to_client, server_side=True)
    for _ in range(10):  # TLS 1.3 completes in two round trips
        try:
            client.do_handshake()
        except ssl.SSLWantReadError:
            try:
                server.do_handshake()
            except ssl.SSLWantReadError:
                pass
            continue
        der = client.getpeercert(binary_form=True)
        if der is not None:
            return der
        break
    raise ssl.SSLError("no certificate presented in a handshake with the loaded pair")


class CertificateUnavailable(ssl.SSLEOFError):
    """No usable certificate has been loaded yet: the handshake cannot be served.

    An end of stream, as a stalled handshake is (_TimedSSLSocket.do_handshake): gunicorn then
    closes the connection quietly. Any other SSLError from its `ssl_context` hook makes it
    answer the ClientHello with a plaintext HTTP 403 and a warning per connection; clients
    report that as a server that does not speak TLS at all, and the reloader has already
    logged why there is no certificate."""

    def __init__(self, message: str) -> None:
        super().__init__(ssl.SSL_ERROR_EOF, message)


def server_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A server context: TLS 1.2 or newer, modern suites, no client certificate requested
    (the API server authenticates to webhooks only when configured to, and podmedic does not
    authorize by client identity)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    context.verify_mode = ssl.CERT_NONE
    context.sslsocket_class = _TimedSSLSocket
    context.load_cert_chain(cert_file, key_file, password=_no_passphrase)
    return context


def _no_passphrase() -> bytes:
    """Called by OpenSSL for an encrypted key only. Without it OpenSSL asks for a passphrase on
    the terminal, where the reloader would wait for good while it holds its lock (`make run`), and
    in a pod fails with a bare EINVAL."""
    raise CertError("the key is encrypted; podmedic needs an unencrypted key")


class CertificateReloader:
    """The current server `SSLContext` for a certificate/key pair that may be replaced on disk.

    Thread-safe: gthread workers call `context()` from several threads. Only one of them
    re-reads the files when the interval has passed; the others keep handshaking with the
    current context instead of queueing behind file I/O.

    `on_reload(reloader)` is called after each newly loaded pair (the server sets the expiry
    gauge from `not_after`); `loaded` is False until a first pair has loaded, `valid` (for
    /readyz) also once the served certificate has expired. A pair outside its validity period
    is never loaded (as a broken one: the previous pair keeps serving).
    """

    def __init__(self, cert_file: str | os.PathLike[str], key_file: str | os.PathLike[str],
                 check_interval: float = 5.0,
                 on_reload: Callable[[CertificateReloader], None] | None = None) -> None:
        self.cert_file = os.fspath(cert_file)
        self.key_file = os.fspath(key_file)
        self.check_interval = check_interval
        self.not_after: dt.datetime | None = None
        self.on_reload = on_reload
        self._lock = threading.Lock()
        self._context: ssl.SSLContext | None = None
        self._loaded_digest = b""
        self._next_check = 0.0
        self._last_warning = ""
        self.refresh()

    @property
    def loaded(self) -> bool:
        return self._context is not None

    @property
    def problem(self) -> str:
        """Why the newest pair on disk is not the one served ('' once it is): the message logged."""
        return self._last_warning

    @property
    def valid(self) -> bool:
        """A pair is loaded and its certificate has not expired since (for /readyz: clients
        refuse an expired certificate, so the pod cannot serve the API server)."""
        return self.not_after is not None and dt.datetime.now(dt.timezone.utc) < self.not_after

    def context(self) -> ssl.SSLContext:
        """The context for a new connection: the newest pair that loaded completely."""
        if time.monotonic() >= self._next_check:
            self.refresh()
        context = self._context
        if context is None:
            raise CertificateUnavailable(f"no usable certificate loaded from {self.cert_file}")
        return context

    def refresh(self) -> None:
        """Check the files now if the interval has passed.

        `context()` does this on every new connection, which is enough for what is served. But
        the API server keeps its connections alive, so handshakes can be rare: calling this from
        /metrics and /readyz too keeps `not_after` (the expiry gauge) and `loaded` following the
        files when no handshake happens.
        """
        # Block only while there is nothing to serve; otherwise let one thread do the check.
        if not self._lock.acquire(blocking=self._context is None):
            return
        try:
            if time.monotonic() >= self._next_check:
                self._load_if_changed()
                self._next_check = time.monotonic() + self.check_interval
        finally:
            self._lock.release()

    def _read(self) -> tuple[bytes, bytes]:
        with open(self.cert_file, "rb") as cert, open(self.key_file, "rb") as key:
            return cert.read(), key.read()

    def _load_if_changed(self) -> None:
        try:
            cert_pem, key_pem = self._read()
            digest = _digest(cert_pem, key_pem)
            if digest == self._loaded_digest:
                return
            cert = parse_chain(cert_pem, self.cert_file)[0]
            not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
            now = dt.datetime.now(dt.timezone.utc)
            if not not_before <= now < not_after:  # every client would refuse it
                raise CertError(f"{self.cert_file} is valid from {not_before.isoformat()} to "
                                f"{not_after.isoformat()}, not now")
            context = server_context(self.cert_file, self.key_file)
            if served_certificate(context) != cert.public_bytes(Encoding.DER):
                # load_cert_chain opened the files again and a rotation landed in between: this
                # context holds a pair that was never checked (it may be expired). The next
                # check reads the files again.
                return
        except (OSError, ssl.SSLError, CertError) as exc:
            self._warn(f"cannot load {self.cert_file} / {self.key_file}: {exc}; "
                       + ("keeping the previous certificate" if self.loaded else "no certificate to serve yet"))
            return
        self._context, self._loaded_digest, self.not_after = context, digest, not_after
        self._last_warning = ""
        log.info("serving certificate %s (not after %s)", self.cert_file, not_after.isoformat())
        if self.on_reload is not None:
            try:
                self.on_reload(self)
            except Exception:  # a metrics hook must not stop the certificate from being served
                log.exception("certificate on_reload callback failed")

    def _warn(self, message: str) -> None:
        """Log a failure once, not every interval while the same broken pair stays on disk."""
        if message != self._last_warning:
            log.warning("%s", message)
            self._last_warning = message

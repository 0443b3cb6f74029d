"""Certificate reloading, proven on a real gunicorn (gthread, TLS) whose `ssl_context` hook
returns `CertificateReloader.context()` -- as `podmedic serve` does -- with the certificate
directory laid out and swapped the way the kubelet updates a mounted Secret."""

from __future__ import annotations

import datetime as dt
import http.client
import ipaddress
import logging
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from tests.conftest import ROOT, free_port, podmedic
from webhook.cli.config import load
from webhook.kube.namespaces import StaticSource
from webhook.pki import local
from webhook.pki import x509 as certs
from webhook.server.app import create_app
from webhook.server.tls import CertificateReloader, CertificateUnavailable, served_certificate

INTERVAL = 0.3
LOCALHOST = [ipaddress.ip_address("127.0.0.1")]


@dataclass
class Pair:
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes

    @property
    def der(self) -> bytes:
        return ssl.PEM_cert_to_DER_cert(self.cert_pem.decode())


def new_pair(days: int = 30) -> Pair:
    """A serving pair for 127.0.0.1 from a CA of its own."""
    ca, ca_key = certs.generate_ca(days=days + 1)
    cert, key = certs.issue_serving_cert(ca, ca_key, [], LOCALHOST, days=days)
    return Pair(certs.cert_pem(ca), certs.cert_pem(cert), certs.key_pem(key))


class SecretDir:
    """A directory updated like a mounted Secret: `tls.crt -> ..data/tls.crt`, and an update
    writes `..<version>/` and renames a new `..data` symlink over the old one (atomic)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.versions = 0
        path.mkdir()

    def publish(self, cert_pem: bytes, key_pem: bytes) -> None:
        self.versions += 1
        version = self.path / f"..v{self.versions}"
        version.mkdir()
        (version / "tls.crt").write_bytes(cert_pem)
        (version / "tls.key").write_bytes(key_pem)
        tmp = self.path / "..data_tmp"
        tmp.symlink_to(version.name)
        os.rename(tmp, self.path / "..data")
        for name in ("tls.crt", "tls.key"):
            if not (self.path / name).is_symlink():
                (self.path / name).symlink_to(f"..data/{name}")

    @property
    def cert(self) -> Path:
        return self.path / "tls.crt"

    @property
    def key(self) -> Path:
        return self.path / "tls.key"


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


# -- the reloader in-process ---------------------------------------------------------------

def test_loads_the_pair_and_reports_expiry(tmp_path: Path) -> None:
    secret = SecretDir(tmp_path / "secret")
    pair = new_pair(days=42)
    secret.publish(pair.cert_pem, pair.key_pem)
    reloads: list[CertificateReloader] = []
    reloader = CertificateReloader(secret.cert, secret.key, check_interval=INTERVAL, on_reload=reloads.append)
    assert reloader.loaded and reloads == [reloader]
    assert reloader.not_after == local.load_cert(secret.cert).not_valid_after_utc
    assert isinstance(reloader.context(), ssl.SSLContext)


def test_same_content_under_a_new_file_is_not_a_reload(tmp_path: Path) -> None:
    """The digest, not the file identity or mtime, decides: a Secret re-synced with
    unchanged data keeps the context (and its TLS session cache)."""
    secret = SecretDir(tmp_path / "secret")
    pair = new_pair()
    secret.publish(pair.cert_pem, pair.key_pem)
    reloads: list[CertificateReloader] = []
    reloader = CertificateReloader(secret.cert, secret.key, check_interval=INTERVAL, on_reload=reloads.append)
    first = reloader.context()
    secret.publish(pair.cert_pem, pair.key_pem)
    time.sleep(INTERVAL * 2)
    assert reloader.context() is first and len(reloads) == 1


def test_refresh_follows_the_files_without_a_handshake(tmp_path: Path) -> None:
    secret = SecretDir(tmp_path / "secret")
    first, second = new_pair(days=10), new_pair(days=20)
    secret.publish(first.cert_pem, first.key_pem)
    reloader = CertificateReloader(secret.cert, secret.key, check_interval=INTERVAL)
    secret.publish(second.cert_pem, second.key_pem)
    reloader.refresh()  # within the interval: no check yet
    assert reloader.not_after == _not_after(first)
    time.sleep(INTERVAL)
    reloader.refresh()
    assert reloader.not_after == _not_after(second)


def test_starts_unloaded_and_serves_once_a_pair_appears(tmp_path: Path) -> None:
    secret = SecretDir(tmp_path / "secret")
    pair = new_pair()
    secret.publish(pair.cert_pem[:100], pair.key_pem)
    reloader = CertificateReloader(secret.cert, secret.key, check_interval=INTERVAL)
    assert not reloader.loaded and reloader.not_after is None
    with pytest.raises(CertificateUnavailable, match="no usable certificate"):
        reloader.context()
    secret.publish(pair.cert_pem, pair.key_pem)
    wait_for(lambda: _loads(reloader), 5, "the pair to load")
    assert reloader.not_after == local.load_cert(secret.cert).not_valid_after_utc


def pair_expiring_in(seconds: float) -> Pair:
    """A pair issued (backdated) for one day that ends `seconds` from now."""
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1, seconds=-seconds)
    ca, ca_key = certs.generate_ca(days=2, now=now)
    cert, key = certs.issue_serving_cert(ca, ca_key, [], LOCALHOST, days=1, now=now)
    return Pair(certs.cert_pem(ca), certs.cert_pem(cert), certs.key_pem(key))


def test_an_expired_pair_is_not_rotated_in(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """As `podmedic certs init --days 0` would write: clients would refuse it, keep the previous."""
    secret = SecretDir(tmp_path / "secret")
    good, expired = new_pair(), pair_expiring_in(-60)
    secret.publish(good.cert_pem, good.key_pem)
    reloader = CertificateReloader(secret.cert, secret.key, check_interval=INTERVAL)
    first = reloader.context()
    secret.publish(expired.cert_pem, expired.key_pem)
    time.sleep(INTERVAL * 2)
    with caplog.at_level(logging.WARNING, logger="podmedic.tls"):
        assert reloader.context() is first
    assert reloader.not_after == _not_after(good) and reloader.valid
    assert any("not now" in r.getMessage() and "keeping the previous" in r.getMessage() for r in caplog.records)


def test_an_encrypted_key_is_refused_with_its_reason_and_never_prompts(tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    """OpenSSL asks for the passphrase of an encrypted key on the terminal (the reloader waited
    there for good, holding its lock) or, without one, failed with a bare EINVAL."""
    secret = SecretDir(tmp_path / "secret")
    good, other = new_pair(), new_pair()
    secret.publish(good.cert_pem, good.key_pem)
    reloader = CertificateReloader(secret.cert, secret.key, check_interval=INTERVAL)
    first = reloader.context()
    key = serialization.load_pem_private_key(other.key_pem, password=None)
    encrypted = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.BestAvailableEncryption(b"secret"))
    secret.publish(other.cert_pem, encrypted)
    time.sleep(INTERVAL * 2)
    with caplog.at_level(logging.WARNING, logger="podmedic.tls"):
        assert reloader.context() is first
    assert any("the key is encrypted" in r.getMessage() and "keeping the previous" in r.getMessage()
               for r in caplog.records), [r.getMessage() for r in caplog.records]


def test_the_quarantine_controllers_metrics_refuse_an_encrypted_key_with_its_reason(tmp_path: Path) -> None:
    """Its /metrics server (prometheus_client) loads the pair itself: OpenSSL asked for the
    passphrase on the terminal and waited there, or, without one, failed with a bare EINVAL."""
    pair = new_pair()
    key = serialization.load_pem_private_key(pair.key_pem, password=None)
    (tmp_path / "tls.crt").write_bytes(pair.cert_pem)
    (tmp_path / "tls.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.BestAvailableEncryption(b"secret")))
    (tmp_path / "kubeconfig").write_text(
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n"
        "current-context: x\n")
    done = podmedic("quarantine", "--kubeconfig", str(tmp_path / "kubeconfig"), "--metrics-bind",
                    f"127.0.0.1:{free_port()}", "--tls-cert-file", str(tmp_path / "tls.crt"),
                    "--tls-private-key-file", str(tmp_path / "tls.key"), stdin=subprocess.DEVNULL)
    assert done.returncode == 1 and "the key is encrypted" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_valid_turns_false_once_the_served_certificate_expires(tmp_path: Path) -> None:
    secret = SecretDir(tmp_path / "secret")
    pair = pair_expiring_in(1.0)
    secret.publish(pair.cert_pem, pair.key_pem)
    reloader = CertificateReloader(secret.cert, secret.key, check_interval=INTERVAL)
    client = create_app(load(), StaticSource([]), reloader).test_client()
    assert reloader.valid and client.get("/readyz").json["certificate"] is True
    wait_for(lambda: not reloader.valid, 3, "the certificate to expire")
    assert reloader.loaded  # still served: nothing better to serve
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json["certificate"] is False


def test_a_failing_on_reload_callback_does_not_stop_serving(tmp_path: Path) -> None:
    secret = SecretDir(tmp_path / "secret")
    pair = new_pair()
    secret.publish(pair.cert_pem, pair.key_pem)

    def broken_metric(reloader: CertificateReloader) -> None:
        raise RuntimeError("metrics backend down")

    reloader = CertificateReloader(secret.cert, secret.key, check_interval=INTERVAL, on_reload=broken_metric)
    assert reloader.loaded and isinstance(reloader.context(), ssl.SSLContext)


def test_a_stalled_read_does_not_stall_other_handshakes(tmp_path: Path) -> None:
    """One thread checks the files; while its read hangs (here: a FIFO nobody writes), the
    other threads keep getting the current context instead of queueing on the lock."""
    pair = new_pair()
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_bytes(pair.cert_pem)
    key.write_bytes(pair.key_pem)
    reloader = CertificateReloader(cert, key, check_interval=0.05)
    current = reloader.context()
    os.mkfifo(tmp_path / "fifo")
    os.replace(tmp_path / "fifo", cert)
    time.sleep(0.1)
    checker = threading.Thread(target=reloader.context, daemon=True)
    checker.start()
    try:
        wait_for(reloader._lock.locked, 5, "the checking thread to block on the FIFO")  # noqa: SLF001
        answered: list[ssl.SSLContext] = []
        other = threading.Thread(target=lambda: answered.append(reloader.context()), daemon=True)
        other.start()
        other.join(1)
        assert answered == [current]
    finally:
        fd = os.open(cert, os.O_WRONLY | os.O_NONBLOCK)  # the checker is its reader: release it
        os.write(fd, pair.cert_pem)
        os.close(fd)
        checker.join(5)
        (tmp_path / "regular").write_bytes(pair.cert_pem)
        os.replace(tmp_path / "regular", cert)  # no FIFO left for a later check to block on
    assert not checker.is_alive() and reloader.context() is current


def _loads(reloader: CertificateReloader) -> bool:
    try:
        reloader.context()
    except CertificateUnavailable:
        return False
    return reloader.loaded


def test_many_threads_during_rotations_always_get_a_context(tmp_path: Path) -> None:
    secret = SecretDir(tmp_path / "secret")
    pairs = [new_pair(days=10 + i) for i in range(6)]
    secret.publish(pairs[0].cert_pem, pairs[0].key_pem)
    reloader = CertificateReloader(secret.cert, secret.key, check_interval=0.01)
    errors: list[BaseException] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            try:
                assert isinstance(reloader.context(), ssl.SSLContext)
            except BaseException as exc:  # noqa: BLE001 -- any failure is the finding
                errors.append(exc)
                return

    threads = [threading.Thread(target=hammer, daemon=True) for _ in range(8)]
    for t in threads:
        t.start()
    try:
        for pair in pairs[1:]:
            time.sleep(0.05)
            secret.publish(pair.cert_pem, pair.key_pem)
        wait_for(lambda: reloader.not_after == _not_after(pairs[-1]), 5, "the last pair")
    finally:
        stop.set()
        for t in threads:
            t.join(5)
    assert errors == []


def test_a_pair_that_changes_while_it_loads_is_never_served_unchecked(tmp_path: Path) -> None:
    """The validity check reads the files once and load_cert_chain() opens them again: a
    rotation landing in between must not put a pair on the wire that was never checked (here
    an expired one, which every client refuses, while /readyz still reads the checked pair's
    expiry and says ready)."""
    secret = SecretDir(tmp_path / "secret")
    good, other, expired = new_pair(), new_pair(days=20), pair_expiring_in(-60)
    secret.publish(good.cert_pem, good.key_pem)
    reloader = CertificateReloader(secret.cert, secret.key, check_interval=0)
    stop = threading.Event()

    def rotate() -> None:
        while not stop.is_set():
            for pair in (other, expired, good, expired):
                secret.publish(pair.cert_pem, pair.key_pem)

    rotator = threading.Thread(target=rotate, daemon=True)
    rotator.start()
    try:
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            assert served_certificate(reloader.context()) != expired.der, "serving the expired pair"
    finally:
        stop.set()
        rotator.join(5)


def _not_after(pair: Pair) -> object:
    return certs.parse_chain(pair.cert_pem, "pair")[0].not_valid_after_utc


# -- a real gunicorn -------------------------------------------------------------------------

GUNICORN_CONF = """\
from webhook.server.tls import CertificateReloader

bind = "127.0.0.1:{port}"
workers = 1
worker_class = "gthread"
threads = 4
keepalive = 60
control_socket_disable = True  # gunicorn 27 would otherwise share ~/.gunicorn/gunicorn.ctl with any other gunicorn
certfile = "{cert}"
keyfile = "{key}"
_reloader = CertificateReloader(certfile, keyfile, check_interval={interval})


def ssl_context(conf, default_ssl_context_factory):
    return _reloader.context()
"""

WSGI_APP = """\
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]
"""


@dataclass
class Gunicorn:
    port: int
    secret: SecretDir
    log: Path

    def served_der(self) -> bytes:
        """The certificate a new handshake presents (no verification: we compare bytes)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return self.handshake(context)

    def handshake(self, context: ssl.SSLContext) -> bytes:
        """Connect, complete a handshake, return the peer certificate (DER) and close."""
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            return tls.getpeercert(binary_form=True) or b""

    def serves(self, pair: Pair) -> bool:
        return self.served_der() == pair.der


@pytest.fixture(scope="module")
def first_pair() -> Pair:
    return new_pair()


@pytest.fixture(scope="module")
def gunicorn(tmp_path_factory: pytest.TempPathFactory, first_pair: Pair) -> Iterator[Gunicorn]:
    tmp = tmp_path_factory.mktemp("gunicorn")
    secret = SecretDir(tmp / "secret")
    secret.publish(first_pair.cert_pem, first_pair.key_pem)
    port = free_port()
    (tmp / "gunicorn.conf.py").write_text(GUNICORN_CONF.format(port=port, cert=secret.cert, key=secret.key,
                                                               interval=INTERVAL))
    (tmp / "tinyapp.py").write_text(WSGI_APP)
    log = tmp / "gunicorn.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(tmp / "gunicorn.conf.py"),
                                 "--chdir", str(tmp), "tinyapp:app"], stdout=out, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
    server = Gunicorn(port, secret, log)

    def up() -> bool:
        assert proc.poll() is None, log.read_text()
        try:
            return server.serves(first_pair)
        except OSError:
            return False

    try:
        wait_for(up, 30, "gunicorn to serve TLS")
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def verifying_context(*pairs: Pair) -> ssl.SSLContext:
    """A client that trusts only these CAs and checks the IP SAN, as the API server does."""
    return ssl.create_default_context(cadata="".join(p.ca_pem.decode() for p in pairs))


def get(conn: http.client.HTTPSConnection) -> bytes:
    conn.request("GET", "/")
    response = conn.getresponse()
    assert response.status == 200
    return response.read()


def test_rotation_through_a_secret_swap(gunicorn: Gunicorn, first_pair: Pair) -> None:
    new = new_pair()
    # A keep-alive connection opened before the swap.
    kept = http.client.HTTPSConnection("127.0.0.1", gunicorn.port, timeout=5,
                                       context=verifying_context(first_pair, new))
    assert get(kept) == b"ok"
    kept_socket = kept.sock
    with pytest.raises(ssl.SSLCertVerificationError):
        gunicorn.handshake(verifying_context(new))

    swapped = time.monotonic()
    gunicorn.secret.publish(new.cert_pem, new.key_pem)
    wait_for(lambda: gunicorn.serves(new), 3, "the new certificate on new handshakes")
    assert time.monotonic() - swapped < INTERVAL + 1.5
    gunicorn.handshake(verifying_context(new))  # the new chain verifies for IP:127.0.0.1

    # The old connection goes on with its old session, undisturbed.
    assert get(kept) == b"ok" and get(kept) == b"ok"
    assert kept.sock is kept_socket
    assert kept_socket.getpeercert(binary_form=True) == first_pair.der
    kept.close()

    # Broken updates are not picked up: a half-written certificate, then a key of another pair.
    other = new_pair()
    for cert_pem, key_pem in ((other.cert_pem[: len(other.cert_pem) // 2], other.key_pem),
                              (other.cert_pem, new.key_pem)):
        gunicorn.secret.publish(cert_pem, key_pem)
        watch_until = time.monotonic() + INTERVAL * 4  # handshakes all along: a check each interval
        while time.monotonic() < watch_until:
            assert gunicorn.serves(new)
            time.sleep(0.05)
    log = gunicorn.log.read_text()
    assert log.count("keeping the previous certificate") == 2, log  # once per broken pair, not per check
    assert "KEY_VALUES_MISMATCH" in log or "key values mismatch" in log, log

    # ... and the next whole pair is taken: the reloader kept trying.
    gunicorn.secret.publish(other.cert_pem, other.key_pem)
    wait_for(lambda: gunicorn.serves(other), 3, "the repaired pair")


def client_context(low: ssl.TLSVersion, high: ssl.TLSVersion, ciphers: str | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if ciphers:
        context.set_ciphers(ciphers)
    context.minimum_version, context.maximum_version = low, high
    return context


V = ssl.TLSVersion


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
@pytest.mark.parametrize("low, high, ciphers, expected", [
    (V.TLSv1, V.TLSv1, "DEFAULT:@SECLEVEL=0", "ALERT_PROTOCOL_VERSION"),
    (V.TLSv1_1, V.TLSv1_1, "DEFAULT:@SECLEVEL=0", "ALERT_PROTOCOL_VERSION"),
    # TLS 1.2 with only CBC suites: refused, AEAD suites only.
    (V.TLSv1_2, V.TLSv1_2, "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384", "ALERT_HANDSHAKE_FAILURE"),
    (V.TLSv1_2, V.TLSv1_2, "ECDHE-ECDSA-AES128-GCM-SHA256", "TLSv1.2"),
    (V.TLSv1_2, V.TLSv1_2, "ECDHE-ECDSA-CHACHA20-POLY1305", "TLSv1.2"),
    (V.TLSv1_2, V.MAXIMUM_SUPPORTED, None, "TLSv1.3"),
], ids=["tls1.0", "tls1.1", "tls1.2-cbc", "tls1.2-gcm", "tls1.2-chacha", "tls1.3"])
def test_protocol_versions_and_suites(gunicorn: Gunicorn, low: ssl.TLSVersion, high: ssl.TLSVersion,
                                      ciphers: str | None, expected: str) -> None:
    context = client_context(low, high, ciphers)
    if expected.startswith("TLSv"):
        raw = socket.create_connection(("127.0.0.1", gunicorn.port), timeout=5)
        with context.wrap_socket(raw) as tls:
            assert tls.version() == expected
        return
    # The client does offer the old protocol (it is the server's alert that ends the handshake,
    # not a client that could not say hello).
    with pytest.raises(ssl.SSLError, match=expected):
        gunicorn.handshake(context)


# -- podmedic serve before a usable pair exists ------------------------------------------------

def answer_to_a_client_hello(port: int) -> bytes:
    """The raw bytes the server sends back to a ClientHello, until it closes or resets the
    connection (no TLS client state on this side, so a plaintext answer shows as what it is)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_context(V.TLSv1_2, V.MAXIMUM_SUPPORTED).wrap_bio(incoming, outgoing)
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        raw.sendall(outgoing.read())
        try:
            while chunk := raw.recv(65536):
                answer += chunk
        except ConnectionResetError:  # closed with our ClientHello unread: a close all the same
            pass
    return answer


def test_serve_without_a_usable_pair_closes_handshakes_then_serves_the_first_one(tmp_path: Path) -> None:
    """Started on an expired pair (a Secret whose renewal failed), `podmedic serve` has nothing
    to present: it must end each handshake at once, in TLS terms -- not answer a TLS ClientHello
    with a plaintext HTTP 400 (which clients report as "not TLS at all") and a warning per
    connection -- and serve the first usable pair that appears, without a restart."""
    secret = SecretDir(tmp_path / "secret")
    expired, good = pair_expiring_in(-60), new_pair()
    secret.publish(expired.cert_pem, expired.key_pem)
    port, log = free_port(), tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "webhook.cli", "serve", "--bind", f"127.0.0.1:{port}",
                                 "--tls-cert-file", str(secret.cert), "--tls-private-key-file", str(secret.key),
                                 "--cert-reload-interval", str(INTERVAL),
                                 "--namespaces-file", str(ROOT / "tests" / "data" / "namespaces.yaml")],
                                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                env={k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"})
    try:
        wait_for(lambda: "Booting worker" in log.read_text(), 30, "the workers to start")
        for _ in range(3):
            assert proc.poll() is None, log.read_text()
            assert answer_to_a_client_hello(port) == b""
        secret.publish(good.cert_pem, good.key_pem)
        server = Gunicorn(port, secret, log)

        def serves_good() -> bool:
            try:
                return server.serves(good)
            except OSError:  # still closed: the reloader has not looked again yet
                return False

        wait_for(serves_good, 5, "the first usable pair")
        time.sleep(INTERVAL * 2)  # the other worker may have looked just before the pair came: its next look takes it
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=verifying_context(good))
        conn.request("GET", "/readyz")
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    text = log.read_text()
    assert "no certificate to serve yet" in text and "Invalid request" not in text, text

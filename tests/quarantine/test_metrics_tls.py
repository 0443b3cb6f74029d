"""The quarantine controller's /metrics over TLS, on the real `podmedic quarantine` process, with
its certificate directory laid out and swapped the way the kubelet updates a mounted Secret.

No API server is needed for what is proven here: the metrics server starts before the controller
reaches one, and the controller keeps retrying an unreachable one (its passes are proven against
the real kube-apiserver in test_cluster.py, whose metrics assertions go through this server)."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port
from tests.server.test_tls import (INTERVAL, Pair, SecretDir, client_context, new_pair, pair_expiring_in,
                                   verifying_context, wait_for)

UNREACHABLE_KUBECONFIG = (
    "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
    "users: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n"
    "current-context: x\n")


@dataclass
class Metrics:
    """One `podmedic quarantine --metrics-bind` process."""
    port: int
    secret: SecretDir
    log: Path
    process: subprocess.Popen[bytes]

    def served_der(self) -> bytes:
        """The certificate a new handshake presents (no verification: the bytes are compared)."""
        context = client_context(ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.MAXIMUM_SUPPORTED)
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as raw:
            with context.wrap_socket(raw) as tls:
                return tls.getpeercert(binary_form=True) or b""

    def serves(self, pair: Pair) -> bool:
        assert self.process.poll() is None, self.log.read_text()
        return self.served_der() == pair.der

    def scrape(self, *trusted: Pair) -> str:
        """GET /metrics as Prometheus does: verifying the chain and the IP SAN."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as raw:
            with verifying_context(*trusted).wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                answer = b""
                while chunk := tls.recv(65536):
                    answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200"), head
        return body.decode()


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[[Pair], Metrics]]:
    started: list[Metrics] = []
    (tmp_path / "kubeconfig").write_text(UNREACHABLE_KUBECONFIG)

    def run(first: Pair) -> Metrics:
        secret = SecretDir(tmp_path / f"secret{len(started)}")
        secret.publish(first.cert_pem, first.key_pem)
        port, log = free_port(), tmp_path / f"quarantine{len(started)}.log"
        env = {**os.environ, "PODMEDIC_CERT_RELOAD_INTERVAL": str(INTERVAL)}
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "webhook.cli", "quarantine", "--kubeconfig", str(tmp_path / "kubeconfig"),
                 "--metrics-bind", f"127.0.0.1:{port}", "--tls-cert-file", str(secret.cert),
                 "--tls-private-key-file", str(secret.key)],
                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        metrics = Metrics(port, secret, log, process)
        started.append(metrics)

        def up() -> bool:
            try:
                return metrics.serves(first)
            except OSError:
                return False

        wait_for(up, 120, "/metrics to serve TLS")  # imports take long on a loaded machine
        return metrics

    yield run
    for metrics in started:
        metrics.process.send_signal(signal.SIGTERM)
        try:
            metrics.process.wait(20)
        except subprocess.TimeoutExpired:
            metrics.process.kill()
            metrics.process.wait(5)


def test_a_rotated_secret_is_served_without_a_restart(start: Callable[[Pair], Metrics]) -> None:
    """The Secret's pair is renewed in place (at two thirds of its life, at once on a CA
    rotation): after the old one expires, a controller that kept it failed every scrape."""
    first, renewed = new_pair(), new_pair()
    metrics = start(first)
    assert "podmedic_quarantine_leader" in metrics.scrape(first)
    with pytest.raises(ssl.SSLCertVerificationError):
        metrics.scrape(renewed)

    metrics.secret.publish(renewed.cert_pem, renewed.key_pem)
    wait_for(lambda: metrics.serves(renewed), 10, "the renewed certificate on new handshakes")
    assert "podmedic_quarantine_leader" in metrics.scrape(renewed)  # verifies for IP:127.0.0.1
    assert metrics.process.poll() is None


def test_an_expired_or_broken_pair_keeps_the_previous_one(start: Callable[[Pair], Metrics]) -> None:
    first, renewed, last = new_pair(), new_pair(), new_pair()
    metrics = start(first)
    metrics.secret.publish(renewed.cert_pem, renewed.key_pem)
    wait_for(lambda: metrics.serves(renewed), 10, "the renewed certificate")

    expired = pair_expiring_in(-60)
    for cert_pem, key_pem in ((expired.cert_pem, expired.key_pem),              # clients would refuse it
                              (last.cert_pem[: len(last.cert_pem) // 2], last.key_pem),  # half written
                              (last.cert_pem, renewed.key_pem)):                # another pair's key
        metrics.secret.publish(cert_pem, key_pem)
        watch_until = time.monotonic() + INTERVAL * 4  # handshakes all along: a check each interval
        while time.monotonic() < watch_until:
            assert metrics.serves(renewed)
            time.sleep(0.05)
        metrics.scrape(renewed)
    log = metrics.log.read_text()
    assert log.count("keeping the previous certificate") == 3, log  # once per broken pair, not per check

    metrics.secret.publish(last.cert_pem, last.key_pem)
    wait_for(lambda: metrics.serves(last), 10, "the next whole pair")


def closed_by_server(sock: socket.socket) -> bool:
    """The server ended the connection (an end of stream, with or without TLS close_notify, or a
    reset); a TimeoutError (the socket's 30 s) means it kept it."""
    try:
        return sock.recv(1) == b""
    except (ssl.SSLEOFError, ConnectionResetError):
        return True


def test_a_client_that_never_says_hello_does_not_stall_a_scrape(start: Callable[[Pair], Metrics]) -> None:
    """A TCP client that connects and sends nothing (or stops after its handshake) must not hold
    the server: the handshake happened in the one accept thread, so every later scrape waited."""
    pair = new_pair()
    metrics = start(pair)
    silent = socket.create_connection(("127.0.0.1", metrics.port), timeout=30)
    handshaken = client_context(ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.MAXIMUM_SUPPORTED).wrap_socket(
        socket.create_connection(("127.0.0.1", metrics.port), timeout=30))
    try:
        for _ in range(3):
            assert "podmedic_quarantine_leader" in metrics.scrape(pair)
        # ... and the server ends both in the end (the handshake timeout), rather than keeping a thread each.
        assert closed_by_server(silent) and closed_by_server(handshaken)
    finally:
        silent.close()
        handshaken.close()


@pytest.mark.parametrize("low, high, ciphers, expected", [
    (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384",
     "ALERT_HANDSHAKE_FAILURE"),
    (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-GCM-SHA256", "TLSv1.2"),
    (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.MAXIMUM_SUPPORTED, None, "TLSv1.3"),
], ids=["tls1.2-cbc", "tls1.2-gcm", "tls1.3"])
def test_the_webhooks_protocols_and_suites(start: Callable[[Pair], Metrics], low: ssl.TLSVersion,
                                           high: ssl.TLSVersion, ciphers: str | None, expected: str) -> None:
    """The same settings as the webhook's server (webhook.server.tls.server_context): TLS 1.2
    with AEAD suites only, or TLS 1.3."""
    metrics = start(new_pair())
    context = client_context(low, high, ciphers)
    with socket.create_connection(("127.0.0.1", metrics.port), timeout=5) as raw:
        if not expected.startswith("TLSv"):
            with pytest.raises(ssl.SSLError, match=expected):
                context.wrap_socket(raw)
            return
        with context.wrap_socket(raw) as tls:
            assert tls.version() == expected


def test_plain_http_is_not_served(start: Callable[[Pair], Metrics]) -> None:
    metrics = start(new_pair())
    with socket.create_connection(("127.0.0.1", metrics.port), timeout=5) as raw:
        raw.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = b""
        try:
            while chunk := raw.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
    assert b"podmedic_quarantine" not in answer and not answer.startswith(b"HTTP/"), answer

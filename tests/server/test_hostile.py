"""Hostile or broken clients against the real served app (gunicorn, TLS, loopback): each gets a
clear 4xx or is cut off, never a 5xx or a traceback, and none of them delays the API server's
reviews."""

from __future__ import annotations

import json
import socket
import ssl

import pytest

from tests.conftest import RunningServer

HEAD = b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"


def exchange(server: RunningServer, raw: bytes, timeout: float = 10.0) -> bytes:
    """Send raw bytes over one TLS connection; everything the server answers until it closes."""
    host, port = server.url.removeprefix("https://").split(":")
    context = ssl.create_default_context(cafile=str(server.ca))
    with socket.create_connection((host, int(port)), timeout=timeout) as plain, \
            context.wrap_socket(plain, server_hostname=host) as conn:
        conn.sendall(raw)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
        return answer


@pytest.mark.parametrize("body, error", [
    (b"zz\r\nabc\r\n0\r\n\r\n", "InvalidChunkSize"),
    (b"5\r\n{\"a\":1}\r\n0\r\n\r\n", "ChunkMissingTerminator"),
])
def test_a_malformed_chunked_body_is_one_400_then_the_connection_closes(server: RunningServer, body: bytes,
                                                                     error: str) -> None:
    answer = exchange(server, HEAD + body)
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), answer[:300]
    assert answer.count(b"HTTP/1.1 ") == 1
    assert error in json.loads(payload)["message"]
    audited = [line for line in server.audit_lines() if error in str(line.get("error"))]
    assert audited and audited[-1]["outcome"] == "bad-request"
    assert "Traceback" not in server.log.read_text(errors="replace")

"""Shared fixtures: dev certificates from the real CLI and the real server (gunicorn, TLS)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


def podmedic(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run the real CLI as a user would."""
    return subprocess.run([sys.executable, "-m", "webhook.cli", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=120, **kwargs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def certs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("certs")
    done = podmedic("certs", "init", "--out", str(out), "--host", "127.0.0.1", "--host", "localhost")
    assert done.returncode == 0, done.stderr + done.stdout
    return out


@dataclass
class RunningServer:
    url: str
    ca: Path
    process: subprocess.Popen[bytes]
    log: Path
    session: requests.Session

    def post(self, body: Any, content_type: str = "application/json") -> requests.Response:
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        return self.session.post(self.url + "/mutate", data=data, headers={"Content-Type": content_type},
                                 timeout=10)

    def get(self, path: str) -> requests.Response:
        return self.session.get(self.url + path, timeout=10)

    def audit_lines(self) -> list[dict[str, Any]]:
        lines = []
        # Complete lines only (a worker may be writing the last one), split on "\n" only: an audit
        # line may carry U+2028 or U+0085 from a hostile review (unescaped in JSON), where
        # str.splitlines() would cut it.
        for line in self.log.read_text(errors="replace").split("\n")[:-1]:
            if line.startswith("{") and '"audit":"podmedic"' in line:
                lines.append(json.loads(line))
        return lines

    def audit_for(self, uid: str, timeout: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.audit_lines():
                if line.get("uid") == uid:
                    return line
            time.sleep(0.05)
        raise AssertionError(f"no audit line for {uid}")


def start_server(tmp: Path, certs: Path, *extra: str, env: dict[str, str] | None = None,
                 port: int | None = None, ca: Path | None = None) -> RunningServer:
    """Start `podmedic serve` exactly as the image does (on a free port unless given); wait
    until /readyz answers 200."""
    port = port or free_port()
    log = tmp / f"server-{port}-{time.monotonic_ns()}.log"
    args = ["serve", "--bind", f"127.0.0.1:{port}", "--tls-cert-file", str(certs / "tls.crt"),
            "--tls-private-key-file", str(certs / "tls.key"), *extra]
    if "--namespaces-file" not in extra and "--kubeconfig" not in extra:
        args += ["--namespaces-file", str(DATA / "namespaces.yaml")]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "webhook.cli", *args], cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT, env=full_env, start_new_session=True)
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would override `verify`; no proxies for 127.0.0.1
    ca = ca or certs / "ca.crt"
    session.verify = str(ca)
    server = RunningServer(f"https://127.0.0.1:{port}", ca, proc, log, session)
    try:
        _wait_ready(server)
    except BaseException:
        stop_server(server)  # never leak a server process, whatever went wrong
        raise
    return server


def _wait_ready(server: RunningServer) -> None:
    deadline = time.monotonic() + 30
    while True:
        if server.process.poll() is not None:
            raise AssertionError("server exited:\n" + server.log.read_text())
        try:
            if server.get("/readyz").status_code == 200:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("server not ready in 30 s:\n" + server.log.read_text())
        time.sleep(0.1)


def stop_server(server: RunningServer) -> None:
    server.session.close()
    if server.process.poll() is None:
        os.killpg(server.process.pid, signal.SIGTERM)
        try:
            server.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait(10)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, certs_dir: Path) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("server"), certs_dir)
    yield running
    stop_server(running)

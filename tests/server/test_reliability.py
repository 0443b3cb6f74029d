"""Reliability of the real server under load: certificate rotation, graceful restart, a rolling
restart of two replicas behind one address, and overload. Fast versions run in `make test`;
`make soak` runs the same with PODMEDIC_SOAK_SECONDS (default 4 here, 60 in `make soak`)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from tests import pods
from tests.conftest import free_port, podmedic, start_server, stop_server

SECONDS = float(os.environ.get("PODMEDIC_SOAK_SECONDS", "4"))
BODY = json.dumps(pods.review(pods.controller_pod()))


def secret_dir(base: Path, source: Path, version: str) -> None:
    """Lay out certificate files as the kubelet mounts a Secret: tls.crt -> ..data/tls.crt,
    ..data -> ..<version>; an update swaps the ..data symlink atomically."""
    versioned = base / f"..{version}"
    versioned.mkdir()
    for name in ("tls.crt", "tls.key"):
        shutil.copy(source / name, versioned / name)
    tmp = base / "..data_tmp"
    tmp.symlink_to(versioned.name)
    os.replace(tmp, base / "..data")
    for name in ("tls.crt", "tls.key"):
        if not (base / name).is_symlink():
            (base / name).symlink_to(f"..data/{name}")


def new_pki(tmp: Path, name: str, days: int) -> Path:
    out = tmp / name
    done = podmedic("certs", "init", "--out", str(out), "--host", "127.0.0.1", "--days", str(days))
    assert done.returncode == 0, done.stderr + done.stdout
    return out


def peer_fingerprint(url: str, cafile: str) -> str:
    host, port = url.removeprefix("https://").split(":")
    ctx = ssl.create_default_context(cafile=cafile)
    with socket.create_connection((host, int(port)), timeout=5) as raw, ctx.wrap_socket(raw, server_hostname=host) as s:
        return hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest()


class Load:
    """A steady load over keep-alive connections from several threads; counts every outcome.
    A request that fails on a reused connection before any response byte is retried once on a
    new connection, as Go's HTTP client (the API server's) does."""

    def __init__(self, url: str, cafile: str, threads: int = 4, rate: float = 100.0):
        self.url, self.cafile, self.threads, self.interval = url, cafile, threads, threads / rate
        self.ok = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _post(self, session: requests.Session) -> requests.Response:
        try:
            return session.post(self.url + "/mutate", data=BODY, headers={"Content-Type": "application/json"},
                                timeout=10)
        except requests.ConnectionError:
            session.close()
            return session.post(self.url + "/mutate", data=BODY, headers={"Content-Type": "application/json"},
                                timeout=10)

    def _run(self) -> None:
        session = requests.Session()
        session.trust_env = False  # REQUESTS_CA_BUNDLE would override `verify`
        session.verify = self.cafile
        deadline = time.monotonic() + 300  # bounded even if stop() is never called
        while not self._stop.is_set() and time.monotonic() < deadline:
            started = time.monotonic()
            try:
                r = self._post(session)
                good = r.status_code == 200 and "patch" in r.json()["response"]
                with self._lock:
                    if good:
                        self.ok += 1
                    else:
                        self.failures.append(f"{r.status_code} {r.text[:200]}")
            except Exception as exc:  # every failure is counted, none is hidden
                with self._lock:
                    self.failures.append(repr(exc)[:200])
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def __enter__(self) -> "Load":
        for w in self._workers:
            w.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        for w in self._workers:
            w.join(30)


def metric(url: str, cafile: str, name: str) -> float:
    text = requests.get(url + "/metrics", verify=cafile, timeout=5).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def test_certificate_rotation_under_load(tmp_path):
    first, second = new_pki(tmp_path, "a", 90), new_pki(tmp_path, "b", 200)
    bundle = tmp_path / "bundle.pem"  # the API server's caBundle holds both CAs during the overlap
    bundle.write_bytes((first / "ca.crt").read_bytes() + (second / "ca.crt").read_bytes())
    mounted = tmp_path / "secret"
    mounted.mkdir()
    secret_dir(mounted, first, "v1")
    server = start_server(tmp_path, mounted, "--cert-reload-interval", "0.5", ca=bundle)
    try:
        old = peer_fingerprint(server.url, str(bundle))
        old_expiry = metric(server.url, str(bundle), "podmedic_certificate_expiry_timestamp_seconds")
        with Load(server.url, str(bundle)) as load:
            time.sleep(SECONDS / 2)
            secret_dir(mounted, second, "v2")
            swapped = time.monotonic()
            while peer_fingerprint(server.url, str(bundle)) == old:
                assert time.monotonic() - swapped < 5, "new handshakes still get the old certificate"
                time.sleep(0.1)
            took = time.monotonic() - swapped
            time.sleep(SECONDS / 2)
        assert load.failures == [] and load.ok > 50, (load.failures[:5], load.ok)
        assert took < 0.5 + 1.5  # reload interval plus scheduling slack
        for _ in range(20):  # every worker has reloaded by now: all handshakes see the new pair
            assert peer_fingerprint(server.url, str(second / "ca.crt"))
        new_expiry = metric(server.url, str(bundle), "podmedic_certificate_expiry_timestamp_seconds")
        assert new_expiry > old_expiry + 100 * 86400
    finally:
        stop_server(server)


def test_graceful_shutdown_answers_everything_and_turns_unready_first(tmp_path, certs_dir):
    server = start_server(tmp_path, certs_dir, "--graceful-timeout", "5")
    keep = requests.Session()
    keep.trust_env = False
    keep.verify = str(server.ca)
    assert keep.get(server.url + "/readyz").status_code == 200  # a kept-alive connection
    with Load(server.url, str(server.ca), threads=4, rate=200) as load:
        time.sleep(SECONDS / 2)
        os.killpg(server.process.pid, signal.SIGTERM)
        stopped = time.monotonic()
        ready = keep.get(server.url + "/readyz")
        server.process.wait(10)
        exited = time.monotonic() - stopped
    answered_unready = ready.status_code == 503 and ready.json()["serving"] is False
    assert answered_unready, ready.text
    assert exited < 5 + 2
    # Requests sent after the listener closed fail to connect: those were never accepted.
    accepted_failures = [f for f in load.failures if "Connection refused" not in f and "Max retries" not in f]
    assert accepted_failures == [], accepted_failures[:5]
    assert load.ok > 20


def test_rolling_restart_of_two_replicas_behind_one_address_loses_nothing(tmp_path, certs_dir):
    port = free_port()
    flags = ("--reuse-port", "--graceful-timeout", "5")
    a = start_server(tmp_path, certs_dir, *flags, port=port)
    b = start_server(tmp_path, certs_dir, *flags, port=port)
    try:
        with Load(a.url, str(a.ca), threads=4, rate=200) as load:
            for _ in range(2):  # replace each replica in turn, under load
                time.sleep(SECONDS / 3)
                stop_server(a)  # SIGTERM: unready, drain, exit
                a, b = b, start_server(tmp_path, certs_dir, *flags, port=port)
            time.sleep(SECONDS / 3)
        assert load.failures == [], load.failures[:5]
        assert load.ok > 50
    finally:
        stop_server(a)
        stop_server(b)


@pytest.mark.skipif(not shutil.which("wrk"), reason="wrk is not installed (apt-get install wrk; .ci/run does)")
def test_overload_answers_within_deadline_and_memory_stays_bounded(tmp_path, certs_dir):
    config = tmp_path / "config.yaml"
    config.write_text("reviewDeadlineSeconds: 0.05\n")  # a tight deadline, so overload trips it
    server = start_server(tmp_path, certs_dir, "--config", str(config))
    script = tmp_path / "post.lua"
    script.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                      f"wrk.body = [[{BODY}]]\n"
                      "done = function(summary, latency, requests)\n"
                      '  io.write(string.format("ERRORS %d %d %d %d\\n", summary.errors.connect, summary.errors.read, '
                      "summary.errors.status, summary.errors.timeout))\n"
                      '  io.write(string.format("MAXLAT %d\\n", latency.max))\nend\n')
    try:
        peak_rss = 0
        proc = subprocess.Popen(["wrk", "-t2", "-c256", f"-d{max(3, int(SECONDS))}s", "--timeout", "5s", "-s",
                                 str(script), server.url + "/mutate"], stdout=subprocess.PIPE, text=True)
        while proc.poll() is None:
            peak_rss = max(peak_rss, rss_of_tree(server.process.pid))
            time.sleep(0.2)
        out = proc.stdout.read()
        errors = [int(x) for x in out.split("ERRORS ")[1].split()[:4]]
        assert errors == [0, 0, 0, 0], out
        assert int(out.split("MAXLAT ")[1].split()[0]) < 5_000_000, out  # microseconds: under timeoutSeconds
        assert peak_rss < 400 * 1024 * 1024, peak_rss
        text = requests.get(server.url + "/metrics", verify=str(server.ca), timeout=5).text
        assert 'podmedic_reviews_total{outcome="deadline-exceeded"}' in text
        assert server.process.poll() is None
        assert "Traceback" not in server.log.read_text(errors="replace")
        late = [l for l in server.audit_lines() if l.get("outcome") == "deadline-exceeded"]
        assert late and late[0]["decisions"][0]["reason"] == "deadline-exceeded"
    finally:
        stop_server(server)


def rss_of_tree(pid: int) -> int:
    """Total RSS of a process and its children (gunicorn master + workers), from /proc."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().split()
            if int(entry) == pid or int(stat[3]) == pid:
                total += int(stat[23]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    return total


def test_a_worker_restarted_while_the_pair_on_disk_is_broken_keeps_serving(tmp_path, certs_dir):
    """A crashed (or OOM-killed) worker is replaced while the files hold a key that does not
    match the certificate (a rotation half done): the new worker must serve the pair the server
    was serving, not fail every handshake it accepts."""
    certs = tmp_path / "certs"
    shutil.copytree(certs_dir, certs)
    other = new_pki(tmp_path, "other", days=30)
    server = start_server(tmp_path, certs, "--cert-reload-interval", "0.2")
    try:
        master = server.process.pid
        shutil.copy(other / "tls.crt", certs / "tls.crt")  # the new certificate, the old key
        time.sleep(1)
        worker = int(subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout.split()[0])
        os.kill(worker, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while server.log.read_text().count("Booting worker") < 3:
            assert time.monotonic() < deadline, "no worker booted after the kill"
            time.sleep(0.1)
        time.sleep(1)  # the new worker built its app and is accepting
        failures = []
        for _ in range(20):  # new connections: both workers accept some
            with requests.Session() as session:
                session.trust_env, session.verify = False, str(server.ca)
                try:
                    assert session.get(server.url + "/readyz", timeout=5).status_code == 200
                except requests.RequestException as exc:
                    failures.append(type(exc).__name__)
        assert failures == []
    finally:
        stop_server(server)

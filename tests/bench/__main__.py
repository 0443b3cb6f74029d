"""`make bench`: podmedic's /mutate under load, against the floor of its own stack.

What is measured, and why this way (docs/benchmark.md has the results):
- the real server, started as `podmedic serve` starts it (production gunicorn settings, TLS,
  audit line on; stdout goes to a file, since the audit write is part of a review's cost), and
  the floor (tests/bench/floor.py: Flask + gunicorn gthread that only decodes the review and
  answers a fixed patch) run side by side; every cell alternates between them, so both see the
  same machine. Absolute figures on shared cores vary two-fold between runs; the ratio to the
  floor measured in the same run is the figure to judge.
- closed-loop saturation with wrk over TLS keep-alive at several connection counts: requests/s,
  p50, p99. At saturation p99 mostly measures queueing, so latency is also measured at a fixed
  offered load (a busy cluster's pod creation rate) by an open-loop client that times each
  request from its scheduled send time (no coordinated omission).
- five bodies: a small pod, a typical controller-made pod (~6 KB with managedFields) and a
  large one (~85 KB, 20 containers), the last two also "varied": a label value changes on every
  request, so every review is a new pod template and podmedic's per-template memo never hits
  (StatefulSet pods, Jobs, many workloads interleaved; a controller's burst repeats one
  template, which is what the plain cells measure). Each must get a non-empty patch from the
  real server before anything is measured: a benchmark of a no-op is worthless.
- total RSS (gunicorn master + workers), the largest worker's RSS, and how the keep-alive
  connections landed on the workers (gthread keeps a connection on the worker that accepted
  it; an uneven split halves the throughput of a run).

Results: a table on stdout, one PASS/FAIL line per target (TARGETS: throughput ratios, p99 at
the fixed rate, RSS per worker), and build/bench.json. Throughput is the best of the runs of a
cell (default 2 per server; other processes on the cores only ever slow a run down), latency
and CPU their median. Exit status 0 whether or not the targets are met (it is a report);
non-zero only when the benchmark could not run.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import itertools
import json
import os
import platform
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests import pods, procs
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent.parent
WRK_SCRIPT = Path(__file__).resolve().parent / "wrk.lua"
NAMESPACES = Path(__file__).resolve().parent / "namespaces.yaml"  # "bench": every feature on
NAMESPACE = "bench"

# Replaced on every request by both load generators (this module's fixed-rate client, wrk.lua):
SEQ_MARK = b"SEQ0000000000"  # in the varied bodies: a label value, a new template each time
TOKEN_MARK = b"kube-api-access-abcde"  # the ServiceAccount token volume: random per pod, as for real
WORKERS, THREADS = 2, 2  # podmedic serve's defaults, given explicitly to both servers
FIXED_RATE_CONNS = 8  # connections of the fixed-rate client: far more than ever in flight
READY_TIMEOUT = 30.0
BOOT_SETTLE = 2.0  # seconds after the first /readyz: the other workers are still importing the app
RUN_SETTLE = 0.5  # seconds between runs: the server notices the previous run's closed connections


# ---------------------------------------------------------------------------------------------
# Bodies


def fields_v1(obj: Any) -> dict[str, Any]:
    """The FieldsV1 set the API server records in managedFields for `obj`: a manager owns every
    field it wrote, so managedFields mirror the whole spec (about half of a real pod's bytes)."""
    if isinstance(obj, dict):
        return {f"f:{key}": fields_v1(value) for key, value in obj.items()}
    if isinstance(obj, list) and obj and all(isinstance(item, dict) for item in obj):
        owned: dict[str, Any] = {}
        for item in obj:
            key = "name" if "name" in item else next(iter(item))
            owned[f'k:{{"{key}":{json.dumps(item[key])}}}'] = {".": {}, **fields_v1(item)}
        return owned
    return {}


def _api_defaults(pod: dict[str, Any]) -> dict[str, Any]:
    """What the API server's defaulting adds before mutating admission: the fields every real
    pod carries, which a webhook has to read past."""
    spec = pod["spec"]
    spec.update({"dnsPolicy": "ClusterFirst", "enableServiceLinks": True, "preemptionPolicy": "PreemptLowerPriority",
                 "priority": 0, "restartPolicy": "Always", "schedulerName": "default-scheduler",
                 "securityContext": {}, "terminationGracePeriodSeconds": 30,
                 "tolerations": [{"key": f"node.kubernetes.io/{taint}", "operator": "Exists", "effect": "NoExecute",
                                  "tolerationSeconds": 300} for taint in ("not-ready", "unreachable")]})
    for c in spec["containers"]:
        c.update({"imagePullPolicy": "IfNotPresent", "terminationMessagePath": "/dev/termination-log",
                  "terminationMessagePolicy": "File"})
    return pod


def _controller_made(spec_pod: dict[str, Any]) -> dict[str, Any]:
    """`spec_pod` as a ReplicaSet creates it: the metadata of pods.controller_pod(), the API
    server's defaults, and managedFields covering the whole template."""
    pod = _api_defaults(spec_pod)
    template = pods.controller_pod()
    pod["metadata"] = template["metadata"]
    pod["spec"]["serviceAccountName"] = "default"
    pod["spec"].setdefault("volumes", []).extend(template["spec"]["volumes"])
    owned = {"metadata": {k: v for k, v in pod["metadata"].items() if k in ("generateName", "labels", "ownerReferences")},
             "spec": pod["spec"]}
    pod["metadata"]["managedFields"] = [{**template["metadata"]["managedFields"][0], "fieldsV1": fields_v1(owned)}]
    return pod


def _service_container(name: str, index: int, env_count: int) -> dict[str, Any]:
    token_mount = pods.controller_pod()["spec"]["containers"][0]["volumeMounts"][0]
    return pods.container(
        name, command=["/app/server"], args=[f"--port={8080 + index}", "--log-format=json"],
        ports=[{"name": f"http-{index}", "containerPort": 8080 + index, "protocol": "TCP"},
               {"name": f"metrics-{index}", "containerPort": 9090 + index, "protocol": "TCP"}],
        env=[{"name": f"{name.upper().replace('-', '_')}_SETTING_{j}", "value": f"value-{index}-{j}-of-some-length"}
             for j in range(env_count)],
        resources={"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
        volumeMounts=[token_mount, {"name": "config", "mountPath": f"/etc/{name}", "readOnly": True}])


def typical_pod() -> dict[str, Any]:
    """A Deployment's pod: one service container with a few env vars, ~6 KB as a review."""
    return _controller_made(pods.pod(_service_container("web", 0, 12), name=None,
                                     volumes=[{"name": "config", "configMap": {"name": "web-config"}}]))


def large_pod() -> dict[str, Any]:
    """20 containers with env, ports and mounts: ~85 KB as a review, the size that shows what
    per-field Python work costs."""
    return _controller_made(pods.pod(*(_service_container(f"svc-{i}", i, 21) for i in range(20)), name=None,
                                     volumes=[{"name": "config", "configMap": {"name": "svc-config"}}]))


def varied(pod: dict[str, Any]) -> dict[str, Any]:
    """`pod` with a label whose value (SEQ_MARK) the load generators replace on every request:
    each review is a new template, so podmedic's plan memo never hits (its worst case, and what
    StatefulSets, Jobs, CronJobs and many interleaved workloads send). (In the plain bodies only
    the token volume's name changes, as between a ReplicaSet's pods.)"""
    pod["metadata"]["labels"]["podmedic-bench/seq"] = SEQ_MARK.decode()
    return pod


BODY_NAMES = ("small", "typical", "typical-varied", "large", "large-varied")


def bodies() -> dict[str, bytes]:
    """The reviews to measure, by name, as the API server sends them (compact JSON)."""
    made = {"small": pods.pod(), "typical": typical_pod(), "typical-varied": varied(typical_pod()),
            "large": large_pod(), "large-varied": varied(large_pod())}
    return {name: json.dumps(pods.review(pod, namespace=NAMESPACE), separators=(",", ":")).encode()
            for name, pod in made.items()}


def token_volume(n: int) -> bytes:
    """The n-th token volume name: kube-api-access- and 5 characters, as the plugin makes them."""
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    return b"kube-api-access-" + "".join(digits[n // 36 ** k % 36] for k in range(5)).encode()


RUNS = itertools.count()  # numbers every load generator's run: SEQ_MARK values never repeat across runs


def sequenced(body: bytes) -> Iterator[bytes]:
    """`body` as sent each time: a fresh token volume name and a fresh SEQ_MARK value in each
    (unique to this run too: a value sent in an earlier run could be answered from the memo)."""
    run = next(RUNS)
    for i in itertools.count():
        yield body.replace(TOKEN_MARK, token_volume(i)).replace(SEQ_MARK, f"r{run}-f{i}".encode())


def wrk_env(body: bytes) -> dict[str, str]:
    """What wrk.lua replaces per request in this body, and the run's number (BENCH_RUN)."""
    marks = {"BENCH_SEQ_MARK": SEQ_MARK, "BENCH_TOKEN_MARK": TOKEN_MARK}
    return {**os.environ, "BENCH_RUN": str(next(RUNS)),
            **{name: mark.decode() for name, mark in marks.items() if mark in body}}


# ---------------------------------------------------------------------------------------------
# Servers


@dataclass
class Server:
    """A running gunicorn (master = `process`) serving /mutate on 127.0.0.1:`port`."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    context: ssl.SSLContext

    def connection(self) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection("127.0.0.1", self.port, context=self.context, timeout=10)

    def processes(self) -> list[int]:
        """The gunicorn master and its workers."""
        return [self.process.pid, *procs.children(self.process.pid)]


def connections_per_worker(server: Server) -> list[int]:
    """How many established client connections each worker holds right now."""
    return procs.connections_per_worker(server.process.pid, server.port)


def _wait_ready(server: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            break
        conn = server.connection()
        try:
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                time.sleep(BOOT_SETTLE)
                return
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.2)
    tail = server.log.read_text(errors="replace")[-3000:]
    raise SystemExit(f"bench: {server.name} did not become ready within {timeout:.0f}s; its log ends:\n{tail}")


@contextmanager
def running(name: str, command: list[str], port: int, workdir: Path, context: ssl.SSLContext,
            env: dict[str, str] | None = None) -> Iterator[Server]:
    """Start a server (stdout, where the audit goes, to a file; stderr to another), wait for
    /readyz, stop it with SIGTERM afterwards."""
    stdout, log = workdir / f"{name}.stdout", workdir / f"{name}.log"
    with open(stdout, "wb") as out, open(log, "wb") as err:
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=err, env={**os.environ, **(env or {})})
    server = Server(name, port, process, log, context)
    try:
        _wait_ready(server, READY_TIMEOUT)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def podmedic_command(port: int, certs: Path) -> list[str]:
    return [sys.executable, "-m", "webhook.cli", "serve", "--bind", f"127.0.0.1:{port}",
            "--tls-cert-file", str(certs / "tls.crt"), "--tls-private-key-file", str(certs / "tls.key"),
            "--namespaces-file", str(NAMESPACES), "--workers", str(WORKERS), "--threads", str(THREADS)]


def floor_command(port: int, certs: Path) -> list[str]:
    return [sys.executable, "-m", "tests.bench.floor", "--bind", f"127.0.0.1:{port}",
            "--tls-cert-file", str(certs / "tls.crt"), "--tls-private-key-file", str(certs / "tls.key"),
            "--workers", str(WORKERS), "--threads", str(THREADS)]


# ---------------------------------------------------------------------------------------------
# Checking the answers


def post(conn: http.client.HTTPSConnection, body: bytes) -> tuple[int, bytes]:
    conn.request("POST", "/mutate", body, {"Content-Type": "application/json"})
    response = conn.getresponse()
    return response.status, response.read()


def patch_ops(server: Server, body: bytes) -> int:
    """Number of patch operations the server answers `body` with; SystemExit unless it is a
    200 allowing the pod with a non-empty patch."""
    conn = server.connection()
    try:
        status, raw = post(conn, body)
    finally:
        conn.close()
    problem = f"bench: {server.name} answered HTTP {status}: {raw[:500]!r}"
    if status != 200:
        raise SystemExit(problem)
    response = json.loads(raw).get("response") or {}
    ops = json.loads(base64.b64decode(response["patch"])) if "patch" in response else []
    if not response.get("allowed") or not ops:
        raise SystemExit(problem + " (no patch: the benchmark would measure a no-op)")
    return len(ops)


# ---------------------------------------------------------------------------------------------
# Load


@dataclass
class Run:
    """One measurement of one server."""

    rps: float
    p50_ms: float
    p99_ms: float
    cpu_ms: float  # server CPU time (all its processes) per answered review
    requests: int
    errors: int
    rss_bytes: int = 0
    worker_rss_bytes: int = 0  # the largest worker's
    conns_per_worker: list[int] = field(default_factory=list)


def wrk(server: Server, body_file: Path, conns: int, seconds: int) -> Run:
    """Closed loop: `conns` keep-alive TLS connections each sending the next review as soon as
    the previous answer arrived. RSS and the connection split are sampled mid-run.

    Each run opens its connections in one burst, right after the previous run closed as many:
    a server still counting those (it sees the closes a few milliseconds later) would spread
    the new burst by stale counts, which an API server's long-lived connection pool never
    makes it do. So every run starts after RUN_SETTLE, for both servers alike."""
    time.sleep(RUN_SETTLE)
    command = ["wrk", f"-t{min(conns, 2)}", f"-c{conns}", f"-d{seconds}s", "-s", str(WRK_SCRIPT),
               f"https://127.0.0.1:{server.port}/mutate", "--", str(body_file)]
    pids = server.processes()
    cpu = procs.cpu_seconds(pids)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=wrk_env(body_file.read_bytes()))
    try:
        time.sleep(seconds / 2)
        rss, split, worker_rss = procs.rss_bytes(pids), connections_per_worker(server), largest_worker_rss(server)
        out, err = process.communicate(timeout=seconds + 30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    cpu = procs.cpu_seconds(pids) - cpu
    line = next((line for line in out.splitlines() if line.startswith("BENCH-JSON ")), None)
    if process.returncode != 0 or line is None:
        raise SystemExit(f"bench: wrk failed ({process.returncode}): {err or out}")
    figures = json.loads(line.removeprefix("BENCH-JSON "))
    return Run(rps=figures["requests"] / (figures["duration_us"] / 1e6), p50_ms=figures["p50_us"] / 1000,
               p99_ms=figures["p99_us"] / 1000, cpu_ms=cpu * 1000 / max(1, figures["requests"]),
               requests=figures["requests"],
               errors=sum(figures["errors"].values()), rss_bytes=rss, worker_rss_bytes=worker_rss,
               conns_per_worker=split)


def largest_worker_rss(server: Server) -> int:
    """RSS of the largest worker (the gunicorn master is left out: it serves nothing)."""
    return max((procs.rss_bytes([pid]) for pid in procs.children(server.process.pid)), default=0)


def percentile(ordered: Sequence[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def fixed_rate(server: Server, body: bytes, rate: float, seconds: float) -> Run:
    """Open loop: requests scheduled every 1/rate s over FIXED_RATE_CONNS keep-alive
    connections, each timed from its scheduled send time, so a stall shows in the latency of
    every request it delayed. The client is Python (http.client) on the same cores as the
    server: it adds a few tenths of a millisecond per request, to both servers alike (compare the
    floor at 1 connection under wrk with the floor at the fixed rate)."""
    total, counter, lock = int(rate * seconds), itertools.count(), threading.Lock()
    sent = sequenced(body)
    latencies: list[float] = []
    failures: list[str] = []
    start = [0.0]
    ready = threading.Barrier(FIXED_RATE_CONNS, action=lambda: start.__setitem__(0, time.perf_counter() + 0.05))

    def client() -> None:
        conn = server.connection()
        try:
            # Handshake and a first review before the clock starts. Not a bare connect(): a
            # gthread worker blocks a thread on a new connection until its first request, so
            # idle fresh connections could take every thread while others wait to handshake.
            with lock:
                first = next(sent)
            post(conn, first)
            ready.wait(timeout=30)
            while (i := next(counter)) < total:
                with lock:
                    this = next(sent)
                due = start[0] + i / rate
                time.sleep(max(0.0, due - time.perf_counter()))
                status, _ = post(conn, this)
                took = time.perf_counter() - due
                with lock:
                    latencies.append(took)
                    if status != 200:
                        failures.append(f"HTTP {status}")
        except (OSError, http.client.HTTPException, threading.BrokenBarrierError) as exc:
            ready.abort()
            with lock:
                failures.append(repr(exc))
        finally:
            conn.close()

    pids = server.processes()
    cpu = procs.cpu_seconds(pids)
    threads = [threading.Thread(target=client, daemon=True) for _ in range(FIXED_RATE_CONNS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 60)
    elapsed, cpu = time.perf_counter() - start[0], procs.cpu_seconds(pids) - cpu
    ordered = sorted(latencies)
    if not ordered:
        raise SystemExit(f"bench: no answer from {server.name} at a fixed rate: {failures[:3]}")
    return Run(rps=len(ordered) / elapsed, p50_ms=percentile(ordered, 50) * 1000, p99_ms=percentile(ordered, 99) * 1000,
               cpu_ms=cpu * 1000 / len(ordered), requests=len(ordered), errors=len(failures) + total - len(ordered),
               rss_bytes=procs.rss_bytes(pids), worker_rss_bytes=largest_worker_rss(server))


# ---------------------------------------------------------------------------------------------
# Results


@dataclass
class Cell:
    """One pod size at one load: runs of both servers, alternated."""

    pod: str
    load: str  # "16 conns" or "200 req/s"
    conns: int | None
    runs: dict[str, list[Run]] = field(default_factory=lambda: {"podmedic": [], "floor": []})

    def median(self, server: str, figure: str) -> float:
        return statistics.median(getattr(run, figure) for run in self.runs[server])

    def best_rps(self, server: str) -> float:
        """The best run: other processes on the shared cores only ever slow a run down."""
        return max(run.rps for run in self.runs[server])

    def ratio(self) -> float:
        return self.best_rps("podmedic") / self.best_rps("floor")

    def worker_rss(self) -> int:
        return max(run.worker_rss_bytes for run in self.runs["podmedic"])

    def cpu_ratio(self) -> float:
        """The floor's CPU per review over podmedic's: the throughput ratio both would reach if
        nothing but their own CPU limited them (steadier than req/s, which swings with the
        connection split and the load generator's share of the cores)."""
        return self.median("floor", "cpu_ms") / self.median("podmedic", "cpu_ms")

    def summary(self) -> dict[str, Any]:
        figures = {server: {**{figure: self.median(server, figure) for figure in ("rps", "p50_ms", "p99_ms", "cpu_ms")},
                            "best_rps": self.best_rps(server), "rss_bytes": max(r.rss_bytes for r in runs),
                            "worker_rss_bytes": max(r.worker_rss_bytes for r in runs),
                            "errors": sum(r.errors for r in runs),
                            "runs": [asdict(r) for r in runs]}
                   for server, runs in self.runs.items()}
        ratio = self.ratio() if self.conns is not None else None  # at a fixed rate both serve the same rate
        return {"pod": self.pod, "load": self.load, "conns": self.conns, "ratio": ratio, "cpu_ratio": self.cpu_ratio(),
                **figures}


def _mb(n: int) -> str:
    return f"{n / 2**20:.0f} MB"


def _split(runs: list[Run]) -> str:
    return " ".join("+".join(map(str, r.conns_per_worker)) for r in runs) or "-"


SERVER_COLUMNS = [("p50", 8), ("p99", 8), ("CPU/review", 10), ("RSS", 6), ("conns/worker", 17)]
COLUMNS = [("pod", 14), ("load", 9), ("podmedic req/s", 14), *SERVER_COLUMNS[:3], ("RSS", 6), ("worker RSS", 10),
           SERVER_COLUMNS[4], ("floor req/s", 11), *SERVER_COLUMNS, ("ratio", 5)]


def _line(values: Sequence[str]) -> str:
    """A Markdown table row, padded so it also reads as a table in a terminal."""
    return "| " + " | ".join(f"{v:>{w}}" for v, (_, w) in zip(values, COLUMNS)) + " |"


def header() -> str:
    return _line([t for t, _ in COLUMNS]) + "\n" + _line(["-" * w for _, w in COLUMNS])


def row(cell: Cell) -> str:
    values = [cell.pod, cell.load]
    for server, runs in cell.runs.items():
        errors = sum(r.errors for r in runs)
        values += [f"{cell.best_rps(server):.0f}" + (f" ({errors} errors)" if errors else ""),
                   f"{cell.median(server, 'p50_ms'):.1f} ms", f"{cell.median(server, 'p99_ms'):.1f} ms",
                   f"{cell.median(server, 'cpu_ms'):.2f} ms", _mb(max(r.rss_bytes for r in runs))]
        if server == "podmedic":
            values.append(_mb(cell.worker_rss()))
        values.append(_split(runs))
    values.append(f"{cell.ratio():.0%}" if cell.conns is not None else "-")
    return _line(values)


def busiest_share(runs: list[Run]) -> float:
    """Mean share of the connections held by the busiest worker (1.0: one worker had them all)."""
    return statistics.mean(max(r.conns_per_worker) / max(1, sum(r.conns_per_worker)) for r in runs)


@dataclass(frozen=True)
class Target:
    """One figure podmedic must reach, judged against the floor measured in the same run."""

    what: str
    pod: str | None    # None: the largest value over every cell
    conns: int | None  # None: the fixed-rate cell
    figure: str        # "ratio" (at least), "p99_ms" or "worker_rss_mb" (at most)
    limit: float

    def figure_of(self, cells: list[Cell]) -> float | None:
        """The measured figure, or None when its cell was not measured (--pods, --concurrencies)."""
        if self.figure == "worker_rss_mb":
            return max((c.worker_rss() / 2**20 for c in cells), default=None)
        cell = next((c for c in cells if c.pod == self.pod and c.conns == self.conns), None)
        if cell is None:
            return None
        return cell.ratio() if self.figure == "ratio" else cell.median("podmedic", self.figure)

    def met(self, value: float) -> bool:
        return value >= self.limit if self.figure == "ratio" else value <= self.limit

    def show(self, value: float) -> str:
        return {"ratio": f"{value:.2f}x", "p99_ms": f"{value:.1f} ms", "worker_rss_mb": f"{value:.0f} MB"}[self.figure]


TARGET_CONNS = 16
TARGETS = (
    Target("throughput, typical pod, one template", "typical", TARGET_CONNS, "ratio", 0.70),
    Target("p99, typical pod, one template", "typical", TARGET_CONNS, "p99_ms", 10.0),
    Target("throughput, typical pod, every pod new", "typical-varied", TARGET_CONNS, "ratio", 0.70),
    Target("throughput, large pod, every pod new", "large-varied", TARGET_CONNS, "ratio", 0.70),
    Target("p99 at the fixed rate, typical pod, every pod new", "typical-varied", None, "p99_ms", 5.0),
    Target("p99 at the fixed rate, large pod, every pod new", "large-varied", None, "p99_ms", 15.0),
    Target("RSS per worker (the largest, any cell)", None, None, "worker_rss_mb", 60.0),
)


def verdict(cells: list[Cell]) -> tuple[list[dict[str, Any]], str]:
    """Each target met or not (None: not measured), and the lines that say so."""
    results, lines = [], []
    for target in TARGETS:
        value = target.figure_of(cells)
        passed = None if value is None else target.met(value)
        bound = f"{'>=' if target.figure == 'ratio' else '<='} {target.show(target.limit)}"
        shown = "not measured" if value is None else target.show(value)
        lines.append(f"{'-' if passed is None else 'PASS' if passed else 'FAIL':>4}  {target.what}: {shown} (need {bound})")
        results.append({**asdict(target), "value": value, "passed": passed})
    for cell in cells:
        if cell.conns == TARGET_CONNS and cell.pod in {t.pod for t in TARGETS if t.figure == "ratio"}:
            shares = {server: busiest_share(runs) for server, runs in cell.runs.items()}
            lines.append(f"      {cell.pod}, {cell.load}: CPU per review {cell.median('podmedic', 'cpu_ms'):.2f} ms, "
                         f"the floor's {cell.median('floor', 'cpu_ms'):.2f} ms ({cell.cpu_ratio():.2f}x)")
            if abs(shares["podmedic"] - shares["floor"]) > 0.2:
                lines.append(f"      caution: the connections split differently over the workers (busiest worker held "
                             f"{shares['podmedic']:.0%} of podmedic's, {shares['floor']:.0%} of the floor's): the "
                             "throughput ratio is partly luck (CPU per review depends on it less)")
    return results, "targets (ratios: podmedic's best run over the floor's, same run):\n" + "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The run


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="about a minute: shorter cells, one run each")
    p.add_argument("--certs", type=Path, default=ROOT / "certs", help="ca.crt, tls.crt, tls.key (make certs)")
    p.add_argument("--concurrencies", type=lambda s: [int(x) for x in s.split(",")],
                   help="connections of the closed-loop cells (default 1,16,64; quick 16)")
    p.add_argument("--pods", type=lambda s: s.split(","),
                   default=["small", "typical", "typical-varied", "large", "large-varied"])
    p.add_argument("--seconds", type=int, help="per wrk run (default 3, quick 2)")
    p.add_argument("--repeat", type=int, help="runs per server and cell, alternated (default 2, quick 1)")
    p.add_argument("--rate", type=float, default=200.0, help="offered load of the fixed-rate cells, req/s")
    p.add_argument("--rate-seconds", type=float, help="per fixed-rate run (default 5, quick 3)")
    p.add_argument("--json", type=Path, default=ROOT / "build" / "bench.json")
    args = p.parse_args(argv)
    args.concurrencies = args.concurrencies or ([TARGET_CONNS] if args.quick else [1, TARGET_CONNS, 64])
    args.seconds = args.seconds or (2 if args.quick else 3)
    args.repeat = args.repeat or (1 if args.quick else 2)
    args.rate_seconds = args.rate_seconds or (3.0 if args.quick else 5.0)
    unknown = set(args.pods) - set(BODY_NAMES)
    if unknown:
        p.error(f"unknown pods: {', '.join(sorted(unknown))} (known: {', '.join(BODY_NAMES)})")
    return args


def alternated(servers: Sequence[Server], repeat: int) -> Iterator[Server]:
    """Both servers `repeat` times, the order flipped each round so neither always goes first."""
    for i in range(repeat):
        yield from (servers if i % 2 == 0 else list(reversed(servers)))


def measure(servers: Sequence[Server], reviews: dict[str, Path], args: argparse.Namespace) -> list[Cell]:
    cells = []
    for pod, body_file in reviews.items():
        for conns in args.concurrencies:
            cell = Cell(pod, f"{conns} conns", conns)
            for server in alternated(servers, args.repeat):
                cell.runs[server.name].append(wrk(server, body_file, conns, args.seconds))
            print(row(cell), flush=True)
            cells.append(cell)
        cell = Cell(pod, f"{args.rate:.0f} req/s", None)
        for server in alternated(servers, 1):
            cell.runs[server.name].append(fixed_rate(server, body_file.read_bytes(), args.rate, args.rate_seconds))
        print(row(cell), flush=True)
        cells.append(cell)
    return cells


def environment() -> dict[str, Any]:
    wrk_version = subprocess.run(["wrk", "-v"], check=False, capture_output=True, text=True).stdout.split("\n")[0]
    return {"cpus": os.cpu_count(), "usable_cpus": len(os.sched_getaffinity(0)), "python": platform.python_version(),
            "wrk": wrk_version.strip(), "openssl": ssl.OPENSSL_VERSION, "workers": WORKERS, "threads": THREADS}


def audit_lines(stdout: Path) -> tuple[int, int]:
    """Audit records podmedic wrote (proof the audit was on for every measured review), and how
    many of them say the plan came from the memo."""
    count = cached = 0
    marker, hit = b'"audit":"podmedic"', b'"cached":true'
    with open(stdout, "rb") as f:
        for line in f:
            if marker in line:
                count += 1
                cached += hit in line
    return count, cached


def preflight(args: argparse.Namespace) -> str | None:
    if shutil.which("wrk") is None:
        return "bench: wrk not found (apt-get install wrk)"
    missing = [name for name in ("ca.crt", "tls.crt", "tls.key") if not (args.certs / name).exists()]
    return f"bench: {', '.join(missing)} missing in {args.certs} (make certs)" if missing else None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    problem = preflight(args)
    if problem:
        print(problem)
        return 2
    context = ssl.create_default_context(cafile=str(args.certs / "ca.crt"))
    made = bodies()
    with tempfile.TemporaryDirectory(prefix="podmedic-bench-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        (work / "metrics").mkdir()
        reviews = {}
        for pod in args.pods:
            reviews[pod] = work / f"{pod}.json"
            reviews[pod].write_bytes(made[pod])
        servers = []
        for name, command, env in (("podmedic", podmedic_command, {"PROMETHEUS_MULTIPROC_DIR": str(work / "metrics")}),
                                   ("floor", floor_command, {})):
            port = free_port()
            servers.append(stack.enter_context(running(name, command(port, args.certs), port, work, context, env)))
        ops = {pod: patch_ops(servers[0], made[pod]) for pod in args.pods}
        for pod in args.pods:
            patch_ops(servers[1], made[pod])
        print("bodies: " + ", ".join(f"{pod} {len(made[pod]) / 1024:.1f} KB ({ops[pod]} patch ops)" for pod in args.pods))
        print(f"{WORKERS} workers x {THREADS} threads (gthread), TLS keep-alive, {os.cpu_count()} CPUs shared with the "
              f"load generator; {args.seconds:g} s per run, {args.repeat} run(s) per server and cell, medians\n")
        for server in servers:  # first requests pay imports and caches
            wrk(server, reviews[args.pods[0]], TARGET_CONNS, 1)
        print(header(), flush=True)
        cells = measure(servers, reviews, args)
        audited, cached = audit_lines(work / "podmedic.stdout")
    targets, line = verdict(cells)
    print(f"\naudit lines written by podmedic (to a file): {audited}, of which {cached} answered from the plan memo")
    print(line)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "environment": environment(), "seconds": args.seconds, "repeat": args.repeat, "rate": args.rate,
        "bodies": {pod: {"bytes": len(made[pod]), "patch_ops": ops[pod]} for pod in args.pods},
        "audit_lines": audited, "memo_hits": cached, "cells": [cell.summary() for cell in cells],
        "targets": targets,
    }, indent=2) + "\n")
    print(f"results: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

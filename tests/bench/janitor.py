"""`make bench-janitor`: one janitor run over 100 000 pod log directories, its time and memory.

A root on tmpfs (the filesystem's own speed is not what is measured) holds N directories
`<ns>_<pod>_<uid>/app/app.log`, spread over 100 namespaces; the pod LIST (faked: the API's time is
the API server's) holds half of their UIDs. Three runs, each in a fresh process so that the peak
RSS is the run's own: dry-run (every dead tree measured, nothing deleted), a deleting run (the
50 000 dead trees removed), and a second deleting run (nothing left to delete: the steady state
of a 15-minute CronJob). Every run must account for every directory, or the benchmark fails: a
benchmark of a no-op is worthless. Prints a table; exit 0 (a report).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

NAMESPACES = 100


def populate(root: Path, count: int) -> list[dict[str, str]]:
    """The trees, and the metadata of the pods still alive (every second one)."""
    live = []
    for i in range(count):
        ns, pod, uid = f"team-{i % NAMESPACES}", f"web-{i}", str(uuid.uuid4())
        app = root / f"{ns}_{pod}_{uid}" / "app"
        app.mkdir(parents=True)
        (app / "app.log").write_bytes(b"x" * 100)
        if i % 2 == 0:
            live.append({"uid": uid, "namespace": ns, "name": pod})
    return live


def one_run(root: str, pods_file: str, delete: bool) -> dict[str, object]:
    """In this process: one janitor run, its wall time, the process's peak RSS, the counts."""
    from webhook.cli.config import load
    from webhook.janitor.run import Sources, run

    config = load()
    logs = config.logs
    config = replace(config, logs=replace(logs, host_root=root, namespace_roots={},
                                          janitor=replace(logs.janitor, min_retention=1)))
    pods = json.loads(Path(pods_file).read_text())
    namespaces = [{"name": f"team-{i}", "annotations": {"podmedic.io/log-retention": "1s"}} for i in range(NAMESPACES)]
    lines = 0

    def audit(_: dict[str, object]) -> None:
        nonlocal lines
        lines += 1

    started = time.perf_counter()
    tally = run(config, Sources(lambda: pods, lambda: namespaces), audit, dry_run=not delete,
                clock=lambda: time.time() + 10)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "outcomes": {k: v for k, v in sorted(_by_outcome(tally).items())}, "audit_lines": lines}


def _by_outcome(tally: object) -> dict[str, int]:
    out: dict[str, int] = {}
    for (_, outcome), n in tally.directories.items():  # type: ignore[attr-defined]
        out[outcome] = out.get(outcome, 0) + n
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--directories", type=int, default=100_000)
    parser.add_argument("--one-run", nargs=3, metavar=("ROOT", "PODS", "DELETE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_run:
        print(json.dumps(one_run(args.one_run[0], args.one_run[1], args.one_run[2] == "1")))
        return 0
    base = Path(tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    try:
        root = base / "logs"
        root.mkdir()
        t = time.perf_counter()
        live = populate(root, args.directories)
        print(f"populated {args.directories} directories in {time.perf_counter() - t:.1f} s (tmpfs)")
        pods = base / "pods.json"
        pods.write_text(json.dumps(live))
        time.sleep(1.1)  # past the 1 s retention
        n, alive, dead = args.directories, len(live), args.directories - len(live)
        expected = [{"kept": alive, "would-delete": dead}, {"kept": alive, "deleted": dead}, {"kept": alive}]
        print(f"{'run':<22}{'seconds':>9}{'peak RSS MB':>13}  outcomes")
        for name, delete, want in zip(("dry-run", "delete", "steady state"), ("0", "1", "1"), expected):
            done = subprocess.run([sys.executable, "-m", "tests.bench.janitor", "--one-run", str(root), str(pods),
                                   delete], capture_output=True, text=True, check=True)
            result = json.loads(done.stdout)
            print(f"{name:<22}{result['seconds']:>9.2f}{result['rss_mb']:>13.0f}  {result['outcomes']}")
            if result["outcomes"] != want:
                print(f"FAIL: {name} accounted for {result['outcomes']}, expected {want} of {n}")
                return 1
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`podmedic logs ...`: the lifecycle of the per-pod log directories. `logs janitor` deletes dead
pods' directories after their retention (webhook.janitor does the work; docs/logs.md);
`logs provision` prints a namespace's log claim for the pvc backend (webhook/cli/provision.py).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path
from typing import Any, Literal

from webhook.cli import provision
from webhook.cli.config import load
from webhook.cli.env import env, env_kubeconfig, path, whole
from webhook.engine.config import ConfigError
from webhook.janitor import tree
from webhook.janitor.run import Sources, Tally, run
from webhook.server.audit import emit

# Errors that make the run fail (the Job shows Failed); a tree left for the next run does not.
# metrics-failed: the metrics file is the run's only observer, so figures it could not write must
# fail the Job (its failure alerts) rather than leave Prometheus its stale ones, unnoticed.
FATAL_ERRORS = frozenset({"list-failed", "root-unusable", "error", "record-failed", "metrics-failed"})


def register(sub: Any) -> None:
    p = sub.add_parser("logs", help="the per-pod log directories' lifecycle (janitor) and claims (provision)")
    commands = p.add_subparsers(dest="logs_command", metavar="COMMAND", required=True)
    _register_janitor(commands)
    provision.register(commands)


def _register_janitor(commands: Any) -> None:
    j = commands.add_parser(
        "janitor", help="delete dead pods' log directories after their retention (a CronJob's job)",
        description="One sweep of the configured log roots: directories of pods that no longer exist "
        "(one complete LIST of pods) are deleted after their namespace's podmedic.io/log-retention, "
        "unless pinned. One JSON audit line per directory. --config, --kubeconfig and --metrics-file "
        "have an environment equivalent in brackets; --dry-run, --delete and --page-size have none.")
    j.add_argument("--config", type=path("PODMEDIC_CONFIG"), default=env("PODMEDIC_CONFIG"),
                   help="global configuration YAML (log roots, logs.janitor) [PODMEDIC_CONFIG]")
    j.add_argument("--kubeconfig", type=path(), default=env_kubeconfig(),
                   help="kubeconfig; default $KUBECONFIG, else ~/.kube/config, else in-cluster")
    mode = j.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", dest="dry_run", action="store_true", default=None,
                      help="only report what would be deleted (default: logs.janitor.dryRun)")
    mode.add_argument("--delete", dest="dry_run", action="store_false",
                      help="delete, whatever logs.janitor.dryRun says")
    j.add_argument("--metrics-file", type=path("PODMEDIC_METRICS_FILE"), default=env("PODMEDIC_METRICS_FILE"),
                   help="write the run's metrics there (Prometheus text format) [PODMEDIC_METRICS_FILE]")
    j.add_argument("--page-size", type=whole(1), default=500,
                   help="objects per LIST page, at least 1, default %(default)s")
    j.set_defaults(func=janitor)


def janitor(args: argparse.Namespace) -> int:
    try:
        config = load(args.config)
    except ConfigError as exc:
        return _fail(str(exc))
    started = time.monotonic()
    dry_run = config.logs.janitor.dry_run if args.dry_run is None else args.dry_run
    try:
        tally = run(config, _sources(args), emit, dry_run=dry_run)
    except tree.Unsafe as exc:
        return _fail(str(exc))
    if args.metrics_file:
        # Imported here: building the parser must not import prometheus_client (`serve` sets its
        # multiprocess directory first, and the library picks its value class at import).
        from webhook.janitor.metrics import render

        if not _write_metrics(Path(args.metrics_file), render(tally, time.monotonic() - started, time.time())):
            tally.errors["metrics-failed"] += 1  # before the summary, which closes the run's lines
    _summary(tally, dry_run)
    return 1 if FATAL_ERRORS & set(tally.errors) else 0


def _fail(message: str) -> int:
    """On stderr: stdout is the run's JSON lines (docs/logs.md), which a plain line would break."""
    print(f"podmedic logs janitor: {message}", file=sys.stderr)
    return 1


def _sources(args: argparse.Namespace) -> Sources:
    """The API's pods and namespaces, each one complete LIST (raises when it cannot be had)."""
    from webhook.kube.client import kube_api_client
    from webhook.kube.lists import list_metadata

    def listing(kind: Literal["pods", "namespaces"]) -> Any:
        return lambda: list_metadata(kube_api_client(args.kubeconfig), kind, args.page_size)

    return Sources(pods=listing("pods"), namespaces=listing("namespaces"))


def _summary(tally: Tally, dry_run: bool) -> None:
    by_outcome: dict[str, int] = {}
    for (_, outcome), count in tally.directories.items():
        by_outcome[outcome] = by_outcome.get(outcome, 0) + count
    emit({"event": "janitor-summary", "dryRun": dry_run, "directories": by_outcome,
          "bytes": {o: sum(b for (_, out), b in tally.bytes.items() if out == o) for o in by_outcome},
          "errors": dict(tally.errors)})


def _write_metrics(path: Path, text: bytes) -> bool:
    """Atomically, so a collector never reads half a file. False, said on stderr, when not written."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(text)
        tmp.replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):  # half written (a full disk), or not renamed: no collector's to read
            tmp.unlink()
        _fail(f"cannot write metrics to {path}: {exc.strerror or exc}")
        return False
    return True

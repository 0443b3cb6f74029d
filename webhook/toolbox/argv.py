"""The commands the engine puts into pods to run the toolbox: the supervisor's argv prefix, the
forensics preStop and the pmctl probes. Pure: the engine imports this, nothing here touches a file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

TOOLBOX_MOUNT = "/podmedic"


SUPERVISOR_OPTIONS = ("autorestart", "startsecs", "startretries", "exitcodes", "stopsignal", "stopwaitsecs",
                      "on-fatal", "max-hold", "restart-limit", "restart-window", "restart-backoff-max",
                      "memwatch-interval", "memwatch-threshold")
# The wrapper's and the collector's flag for a container whose termination message is its log's
# tail on an error (terminationMessagePolicy FallbackToLogsOnError): the kubelet takes the tail
# only while the termination-message file is empty, so neither may write a summary there.
NO_TERMINATION_LOG = "--termination-log=off"


def supervise_flags(options: Mapping[str, str], exit_bundles: tuple[str, int] | None = None) -> tuple[str, ...]:
    """The wrapper's flags (supervise_command). Apart from the rest of the argv because they
    depend on settings alone: the engine renders them once per pod, not for each of its
    containers (13 options and a set check: 3.4 % of a 20-container pod's review when built per
    container).

    exit_bundles: (log directory, budget seconds) where the wrapper has the collector write a
    bundle on every unexpected exit of the app; None: no bundles."""
    unknown = set(options) - set(SUPERVISOR_OPTIONS)
    if unknown:
        raise ValueError(f"unknown supervisor options: {', '.join(sorted(unknown))}")
    flags = [f"--{key}={options[key]}" for key in SUPERVISOR_OPTIONS if key in options]
    if exit_bundles:
        flags += [f"--forensics-out={exit_bundles[0]}", f"--forensics-budget={exit_bundles[1]}"]
    return tuple(flags)


def supervise_command(mount: str = TOOLBOX_MOUNT, *, name: str, flags: Sequence[str], app: Sequence[str]) -> list[str]:
    """The argv the container runs: tini as PID 1, then the wrapper with its rendered flags
    (supervise_flags), then `--` and the app's command `app`.

    sigreset (exec with every signal at its default action, none blocked) sits between tini and
    the shell: a POSIX shell cannot trap a signal that was ignored when it started, and a runtime
    or a parent shell (nohup, a background job) may hand over HUP, INT or QUIT ignored -- then
    HUP would never be forwarded and INT would never stop the app.

    Every flag is one `--key=value` word: a wrapper older than the webhook (toolbox.image behind
    an upgrade) skips one it does not know, and a value in a word of its own would not be skipped."""
    return [f"{mount}/bin/tini", "-s", "--", f"{mount}/bin/sigreset", f"{mount}/bin/busybox", "sh", f"{mount}/supervise",
            "--name", name, *flags, "--", *app]


def forensics_argv(mount: str = TOOLBOX_MOUNT, *, name: str, out_dir: str | None, budget_seconds: int,
                   redact: Sequence[str] = (), termination_log: bool = True) -> list[str]:
    """The exec preStop command; without out_dir the summary goes to the termination message,
    unless termination_log is False (NO_TERMINATION_LOG). redact: redact_flags() for a container
    with Secret-sourced variables."""
    argv = [f"{mount}/bin/busybox", "sh", f"{mount}/forensics", "--name", name, "--budget", str(budget_seconds)]
    if out_dir:
        argv += ["--out", out_dir]
    if not termination_log:
        argv.append(NO_TERMINATION_LOG)
    return argv + list(redact)


def redact_flags(names: Sequence[str], prefixes: Sequence[str], plain: Sequence[str]) -> tuple[str, ...]:
    """The collector's flags (and the wrapper's, which hands them on) naming the variables whose
    values come from Secrets: --redact-env= the names, --redact-env-prefix= the prefixes (an
    empty one: every name), --plain-env= the names exempt from the prefixes. Each list is joined
    by "=", the one character a variable name cannot hold (since Kubernetes 1.30 any other
    printable one, "," and spaces too): one argument per list, whatever the names."""
    flags = [f"--redact-env={'='.join(names)}"] if names else []
    if prefixes:
        flags.append(f"--redact-env-prefix={'='.join(prefixes)}")
        if plain:
            flags.append(f"--plain-env={'='.join(plain)}")
    return tuple(flags)


def pmctl_argv(check: Literal["alive", "ready", "status"], mount: str = TOOLBOX_MOUNT, *, name: str) -> list[str]:
    return [f"{mount}/bin/busybox", "sh", f"{mount}/pmctl", check, name]

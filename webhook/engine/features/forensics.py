"""The preStop forensics hook: before the kubelet stops a container (deletion, liveness
failure), the toolbox collector writes a diagnostics bundle into the pod's log directory, or a
summary into the termination message when the container has no log directory (none where
terminationMessagePolicy is FallbackToLogsOnError: the message is then the log's tail, which the
kubelet takes only from an empty termination-message file).

A user's exec preStop is chained (ours first, within its budget, then theirs with its arguments
unchanged); httpGet, tcpSocket and sleep hooks cannot be chained and are kept as they are. The
collector's budget must leave time inside terminationGracePeriodSeconds for the app to stop.
"""

from __future__ import annotations

import shlex
from typing import Any

from webhook.engine import pod_level
from webhook.engine.context import LOGS_ON_ERROR, PodContext, Target
from webhook.engine.decisions import INJECTED, Decision, Reason
from webhook.engine.keys import FeatureName
from webhook.engine.patch import PatchBuilder
from webhook.toolbox import argv as toolbox


FEATURE = FeatureName.FORENSICS
# As module globals: read per container (see decisions.INJECTED).
_LOGS = FeatureName.LOGS
STOP_RESERVE = 5  # seconds of the grace period kept for the app's own shutdown


def budget(ctx: PodContext, target: Target) -> tuple[int, int]:
    """(budget granted, budget asked): shrunk to fit the grace period after STOP_RESERVE."""
    asked = ctx.settings.value("forensics-budget-seconds", target.name)
    return min(asked, ctx.grace_seconds() - STOP_RESERVE), asked


def chained(collector: list[str], user_command: list[str], mount: str = toolbox.TOOLBOX_MOUNT) -> list[str]:
    """One exec: run the collector (always exits 0 within its budget), then the user's command
    with its arguments unchanged, under the toolbox's own shell (images may have none).

    The user's command runs as the kubelet would run it: busybox sh would run its own applet for
    a bare `sh`, `sleep` or `kill`, so it goes through sigreset (an absolute path, which the shell
    never replaces by an applet), which finds it on the container's PATH and resets signals. It
    also hands on the environment block this shell was exec'd with (--environ-of=$$): busybox sh
    drops `spring.datasource.url` and every other name that is not a shell identifier. So no
    `exec`, whose sigreset would read the shell's reduced block, and an `exit $?` after it (busybox
    sh execs a script's last command). The collector, this shell's child, takes the Secrets'
    values to redact from that block too (--environ-of=$$; an older collector skips the option).
    A sigreset older than the option (toolbox.image behind the webhook) fails the `true` probe:
    the user's command then runs as that release ran it."""
    sigreset, busybox = shlex.quote(mount + "/bin/sigreset"), shlex.quote(mount + "/bin/busybox")
    script = (shlex.join(collector) + f' --environ-of=$$; {sigreset} --environ-of=$$ {busybox} true 2>/dev/null'
              f' || exec {sigreset} "$@"; {sigreset} --environ-of=$$ "$@"; exit $?')
    return [f"{mount}/bin/busybox", "sh", "-c", script, "podmedic-prestop", *user_command]


def mutate(ctx: PodContext, target: Target, patch: PatchBuilder) -> Decision:
    skip = pod_level.toolbox_unavailable(ctx, target, FEATURE)
    if skip:
        return skip
    name = target.name
    level = ctx.settings.get(FEATURE, name).level
    lifecycle = target.spec.get("lifecycle")
    existing: Any = lifecycle.get("preStop") if isinstance(lifecycle, dict) else None
    user_command = (existing or {}).get("exec", {}).get("command") if isinstance(existing, dict) else None
    if existing and not user_command:
        kind = next(iter(existing), "?") if isinstance(existing, dict) else "?"
        return Decision(FEATURE, name, Reason.PRESTOP_NOT_EXEC, kind, level)
    granted, asked = budget(ctx, target)
    if granted < 1:
        return Decision(FEATURE, name, Reason.GRACE_TOO_SHORT, f"needs more than {STOP_RESERVE}s", level)
    out_dir = ctx.settings.value("log-path", name) if ctx.applied(_LOGS, name) else None
    # without a log directory its summary goes to the termination message, unless that is the log's tail
    termination_log = out_dir is not None or target.spec.get("terminationMessagePolicy") != LOGS_ON_ERROR
    collector = toolbox.forensics_argv(name=name, out_dir=out_dir, budget_seconds=granted,
                                       redact=target.redact_flags(), termination_log=termination_log)
    command = chained(collector, user_command) if user_command else collector
    lifecycle_path = target.path + ("lifecycle",)
    patch.ensure_map(lifecycle_path, target.spec)
    # the original lifecycle map as parent (none: an empty one), so no walk from the pod
    patch.set(lifecycle_path + ("preStop",), {"exec": {"command": command}},
              lifecycle if isinstance(lifecycle, dict) else {})
    ctx.record(target, FEATURE, {"preStop": existing})
    if granted < asked:
        ctx.report.add(Decision(FEATURE, name, Reason.GRACE_TOO_SHORT, f"budget shrunk to {granted}s", level))
    where = out_dir or ("termination message" if termination_log else f"no summary ({LOGS_ON_ERROR})")
    return Decision(FEATURE, name, INJECTED, f"{where}, {granted}s" + (", chained" if user_command else ""), level)

"""The supervisor feature: run the app's command under the toolbox's supervise wrapper.

The webhook cannot see an image's ENTRYPOINT. A container that sets `command` is wrapped as
`supervise ... -- <command>` with its `args` untouched (the kubelet appends them). A container
without `command` is wrapped only when `<prefix>entrypoint` says what the image runs; "args
without command" and "neither" both count as unknown, because the wrapper must replace
exactly what the runtime would have started.

Where the container has a log directory and forensics is on, the wrapper also has the collector
write a bundle there on every unexpected exit of the app (the preStop hook never runs after a
crash): the logs feature runs before this one, so its result is known here.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from webhook.engine import pod_level
from webhook.engine.context import PodContext, Target
from webhook.engine.decisions import INJECTED, Decision, Reason
from webhook.engine.keys import FeatureName
from webhook.engine.patch import PatchBuilder
from webhook.engine.settings import InvalidSetting
from webhook.toolbox import argv as toolbox


FEATURE = FeatureName.SUPERVISOR
# As module globals: read per container (see decisions.INJECTED).
_LOGS, _FORENSICS = FeatureName.LOGS, FeatureName.FORENSICS


def holds(ctx: PodContext, target: Target) -> bool:
    """Will the wrapper keep this container alive after FATAL (so liveness must not kill it)?"""
    return ctx.applied(FEATURE, target.name) and ctx.settings.value("on-fatal", target.name) == "hold"


def mutate(ctx: PodContext, target: Target, patch: PatchBuilder) -> Decision:
    skip = pod_level.toolbox_unavailable(ctx, target, FEATURE)
    if skip:
        return skip
    name = target.name
    level = ctx.settings.get(FEATURE, name).level
    command = target.spec.get("command")
    original = command if isinstance(command, list) and command else None
    entrypoint = original or ctx.settings.value("entrypoint", name)
    if not entrypoint:
        return Decision(FEATURE, name, Reason.ENTRYPOINT_UNKNOWN, level=level)
    bundles = exit_bundles(ctx, name)
    # with or without bundles: which one a container gets depends on its logs feature
    flags, note = ctx.per_pod("supervisor-wrapper" if bundles is None else "supervisor-wrapper+bundles", name,
                              lambda: _wrapper(ctx, name, bundles))
    patch.set(target.path + ("command",), toolbox.supervise_command(name=name, flags=flags, app=entrypoint),
              target.spec)
    ctx.record(target, FEATURE, {"command": original})
    source = "command" if original else f"{ctx.config.prefix}entrypoint"
    return Decision(FEATURE, name, INJECTED, f"wrapping {source}; {note}", level)


def _wrapper(ctx: PodContext, name: str, bundles: tuple[str, int] | None) -> tuple[tuple[str, ...], str]:
    """(the wrapper's flags, the decision's note on memory kills): from settings alone, so made
    once per pod (per_pod), not rendered again for each of its containers. Immutable: per_pod()
    keeps it across reviews."""
    options = ctx.per_pod("supervisor-options", name, lambda: _options(ctx, name))
    return toolbox.supervise_flags(options, bundles), watch_note(ctx, name, bundles)


def watch_note(ctx: PodContext, name: str, bundles: tuple[str, int] | None) -> str:
    """What the wrapper will keep of a memory kill: the pre-mortem watch and the exit bundles.
    Short: it is in every review's audit line, once per wrapped container. What an OOM kill leaves
    on each node configuration is the same for every pod, so `podmedic explain` says it once."""
    threshold = ctx.settings.value("memwatch-threshold", name)
    watch = f"memwatch {threshold}%" if threshold else "no memwatch"
    return f"{watch}; {'exit bundles' if bundles else 'no exit bundles'}"


def _options(ctx: PodContext, name: str) -> Mapping[str, str]:
    """The wrapper's options, rendered from the parsed values; InvalidSetting with the precise
    warning for a bad one. Read-only: per_pod() keeps it across reviews.

    Rendered, not passed as written: the parsers accept "08" and "0, 2", but busybox arithmetic
    reads a leading 0 as octal ("08" is a syntax error that kills the wrapper, "010" is 8) and the
    wrapper matches exit codes as text. So ints go out as plain decimal and exit codes joined by
    "," (a value already written that way comes out byte for byte as written)."""
    return MappingProxyType({key: _canonical(ctx.settings.value(key, name)) for key in toolbox.SUPERVISOR_OPTIONS})


def _canonical(value: int | str | list[int]) -> str:
    """A parsed supervisor option as the wrapper reads it: decimal ints, "0,2" lists, choices as is."""
    if isinstance(value, list):
        return ",".join(str(code) for code in value)
    return str(value)


def exit_bundles(ctx: PodContext, name: str) -> tuple[str, int] | None:
    """(log directory, budget) for the wrapper's bundles on unexpected exits, or None: without a
    log directory, or with forensics off. An invalid forensics value turns them off here; the
    forensics feature warns about it."""
    if not ctx.applied(_LOGS, name):
        return None
    try:
        if not ctx.settings.value(_FORENSICS, name):
            return None
        return ctx.settings.value("log-path", name), ctx.settings.value("forensics-budget-seconds", name)
    except InvalidSetting:
        return None

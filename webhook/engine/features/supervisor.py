"""The supervisor feature: run the app's command under the toolbox's supervise wrapper.

The webhook cannot see an image's ENTRYPOINT. A container that sets `command` is wrapped as
`supervise ... -- <command>` with its `args` untouched (the kubelet appends them). A container
without `command` is wrapped only when `<prefix>entrypoint` says what the image runs; "args
without command" and "neither" both count as unknown, because the wrapper must replace
exactly what the runtime would have started. An interactive container (stdin and tty: `kubectl run
-it`) is not wrapped: a session is not a service (the wrapper would restart a shell that ends with a
failed command's status, and log into its terminal). Nor is
an init that runs only as PID 1 (pid1_init): under the wrapper it is not, and it exits.

Where the container has a log directory and forensics is on, the wrapper also has the collector
write a bundle there on every unexpected exit of the app (the preStop hook never runs after a
crash): the logs feature runs before this one, so its result is known here.

The wrapper's defaults are a service's (supervisord's): a start shorter than startsecs is retried,
an app that fails later is restarted in the container, and FATAL is held. A run-to-completion
container (restartPolicy Never or OnFailure: a Job's, a CronJob's) gets --autorestart=false
--startsecs=0 instead: its app runs once per container start, exactly as the kubelet would run
it, and the kubelet's restart policy and the Job controller's backoffLimit act on its exit code.
Otherwise a Job that succeeds within a second ran 4 times and its pod was held for an hour, and
a failing one was restarted where neither the kubelet nor backoffLimit could see it. So does a
container with restartPolicy Always and a restart rule whose action is not Restart
(RestartAllContainers): the kubelet acts on its exit code. Such a wrapper never holds (unless
the pod's author annotated autorestart or startsecs so that it can reach FATAL), so the
container's liveness probe asks the app (holds).

Stopping is the kubelet's: unless stopwaitsecs is set, the wrapper's SIGKILL after the stop
signal waits the pod's terminationGracePeriodSeconds, so the app stops as it would unwrapped. A
container's own stop signal (lifecycle.stopSignal, which the kubelet sends instead of SIGTERM) is
the wrapper's stopsignal unless a pod or container annotation sets one: forwarded as a plain
signal, QUIT or USR1 ended the app and the wrapper started it again in the middle of the shutdown.
A SIGTERM keeps the settings' stopsignal (--term-stopsignal, _stop_flags). Beside the author's
stopsignal the container's own signal is a stop that sends the author's (--kubelet-stopsignal,
_authored_stop_flags). A stop signal the wrapper cannot stop on skips the supervisor.

A container with terminationMessagePolicy FallbackToLogsOnError gets a wrapper that writes its
summary to the state dir alone: the kubelet shows the log's tail (a failed app's `FATAL: config
missing`) only while the termination-message file is empty, and a summary there replaced it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

from webhook.engine import pod_level
from webhook.engine.context import LOGS_ON_ERROR, PodContext, Target
from webhook.engine.decisions import INJECTED, Decision, Reason
from webhook.engine.keys import STOP_SIGNALS, FeatureName, Level
from webhook.engine.patch import PatchBuilder
from webhook.engine.settings import InvalidSetting
from webhook.toolbox import argv as toolbox


FEATURE = FeatureName.SUPERVISOR
# As module globals: read per container (see decisions.INJECTED).
_LOGS, _FORENSICS = FeatureName.LOGS, FeatureName.FORENSICS
# What a run-to-completion container's wrapper runs with, over the global and namespace values;
# a pod or container annotation setting one of them is the pod author's choice and is honoured.
_RUN_ONCE = MappingProxyType({"autorestart": "false", "startsecs": "0"})
_AUTHOR = (Level.POD, Level.CONTAINER)
# Signals the wrapper takes as a stop whatever its stopsignal (TERM, INT), or never sees (KILL)
_STOPS_ALREADY = frozenset({"TERM", "INT", "KILL"})
# Where stopwaitsecs is unset, the wrapper waits as long as the kubelet does before its SIGKILL:
# the pod's grace period, but at least the kubelet's own minimum (minimumGracePeriodInSeconds).
# A shorter wait cut short the shutdown the pod gives its app (supervisord's 10 s killed an app
# draining for 15 s of a 40 s grace period); a longer one never comes, the kubelet kills first.
# At most a day, the longest stopwaitsecs an annotation may set: the wrapper multiplies it by 100
# in 64-bit shell arithmetic, and a grace period near 2**63 (valid) wrapped to an immediate kill.
KUBELET_MIN_GRACE, LONGEST_WAIT = 2, 86400
# Inits that exit unless they are PID 1 (see pid1_init), each as its source or documentation says:
# busybox init "must be run as PID 1" (init/init.c), runit "must be run as process no 1" (runit.c),
# systemd "Explicit --user argument required to run as user manager" (src/core/main.c), s6-overlay
# v3's /init "s6-overlay-suexec: fatal: can only run as pid 1". /sbin/init and friends are busybox's,
# sysvinit's or systemd's. Podman detects systemd the same way (--systemd=true: /sbin/init,
# /usr/sbin/init, /usr/local/sbin/init, or any path whose base name is systemd).
_INIT_PATHS = frozenset({"init", "/sbin/init", "/usr/sbin/init", "/bin/init", "/usr/local/sbin/init", "/init"})
_INIT_NAMES = frozenset({"systemd", "runit"})
# The base names of all of them: the only commands pid1_init() needs to look at.
_INIT_BASES = frozenset({*(path.rpartition("/")[2] for path in _INIT_PATHS), *_INIT_NAMES, "busybox"})
# per_pod()'s name for the wrapper, by (exit bundles?, run to completion?)
_WRAPPER = {(False, False): "supervisor-wrapper", (True, False): "supervisor-wrapper+bundles",
            (False, True): "supervisor-wrapper+run-once", (True, True): "supervisor-wrapper+bundles+run-once"}


def holds(ctx: PodContext, target: Target) -> bool:
    """Will the wrapper keep this container alive after FATAL (so liveness must not kill it)?
    mutate() notes it where it renders the wrapper's flags (_can_hold), from the options the
    wrapper gets: worked out again here, the answer could drift from the wrapper's own. Only a
    container the supervisor wrapped is noted, so the probes feature, which runs after it,
    reads the final answer."""
    return target.name in ctx.holding


def run_once(ctx: PodContext, target: Target) -> str:
    """Why the wrapper runs this container's app once, handing every exit to the kubelet, or ""
    for a service. Its own restartPolicy (Kubernetes 1.34+ container restart rules), else the
    pod's; the API server defaults a missing one to Always before admission. (Only regular
    containers are wrapped: a native sidecar, an init container with restartPolicy Always, never
    comes here.) With Always, a restart rule whose action is Restart changes nothing (the kubelet
    restarts on every exit anyway); one with another action (RestartAllContainers: the whole pod
    in place) needs the exit code: restarted in the container, an Always app's exit 42 never
    restarted the pod its rule asked for. Read per container: two lookups cost less than
    ctx.once()."""
    policy = target.spec.get("restartPolicy") or ctx.pod["spec"].get("restartPolicy") or "Always"
    if policy != "Always":
        return f"restartPolicy {policy}"
    rules = target.spec.get("restartPolicyRules")
    if isinstance(rules, list) and any(not isinstance(rule, dict) or rule.get("action") != "Restart"
                                       for rule in rules):
        return "restartPolicyRules"
    return ""


def mutate(ctx: PodContext, target: Target, patch: PatchBuilder) -> Decision:
    name = target.name
    level = ctx.settings.get(FEATURE, name).level
    if target.spec.get("tty") and target.spec.get("stdin"):
        # a session, not a service: `exit` after a failed command is exit code 1, which the
        # wrapper restarts (a new shell, not the end of the session), and the wrapper's log
        # lines land in the user's terminal. (Ctrl-C reaches the app's group alone: sigreset)
        return Decision(FEATURE, name, Reason.INTERACTIVE_TTY, level=level)
    skip = pod_level.toolbox_unavailable(ctx, target, FEATURE)
    if skip:
        return skip
    command = target.spec.get("command")
    original = command if isinstance(command, list) and command else None
    entrypoint = original or ctx.settings.value("entrypoint", name)
    if not entrypoint:
        return Decision(FEATURE, name, Reason.ENTRYPOINT_UNKNOWN, level=level)
    if entrypoint[0].rpartition("/")[2] in _INIT_BASES:  # the common path: one look-up, no call
        init = pid1_init(entrypoint, target.spec.get("args"))
        if init:
            return Decision(FEATURE, name, Reason.PID1_REQUIRED, init, level)
    stop, authored = own_stop_signal(ctx, target)
    if stop and stop not in STOP_SIGNALS:
        return Decision(FEATURE, name, Reason.STOP_SIGNAL_UNSUPPORTED, f"SIG{stop}", level)
    bundles = exit_bundles(ctx, name)
    once = run_once(ctx, target)
    # with or without bundles (its logs feature), as a service or run once (its restart policy)
    flags, note, can_hold = ctx.per_pod(_WRAPPER[bundles is not None, bool(once)], name,
                                        lambda: _wrapper(ctx, name, bundles, bool(once)))
    if ctx.settings.value("stopwaitsecs", name) is None:
        flags = (*flags, ctx.once("stopwaitsecs", lambda: f"--stopwaitsecs={_grace_wait(ctx)}"))
    if target.spec.get("terminationMessagePolicy") == LOGS_ON_ERROR:  # its message: the log's tail
        flags = (*flags, toolbox.NO_TERMINATION_LOG)
    redact = target.redact_flags()  # for its exit bundles and pre-mortem snapshots
    if redact:  # in the command: a name such as `KEY$$2` reaches the wrapper as written
        flags = (*flags, *unexpanded(redact))
    if stop:  # in place of the settings' one (per_pod's flags are shared: a new tuple)
        flags = _authored_stop_flags(ctx, name, stop, flags) if authored else (
            *(flag for flag in flags if not flag.startswith("--stopsignal=")), *_stop_flags(ctx, name, stop))
    app = original or unexpanded(entrypoint)
    patch.set(target.path + ("command",), toolbox.supervise_command(name=name, flags=flags, app=app), target.spec)
    ctx.record(target, FEATURE, {"command": original})
    if can_hold:  # after record(), as a record: a mutator that raised leaves no holder behind
        ctx.holding.add(name)
    source = "command" if original else f"{ctx.config.prefix}entrypoint"
    if once:
        return Decision(FEATURE, name, INJECTED, f"wrapping {source}; run-to-completion ({once}): {note}", level)
    return Decision(FEATURE, name, INJECTED, f"wrapping {source}; {note}", level)


def unexpanded(words: Sequence[str]) -> list[str]:
    """Words for the container's `command` that must reach the wrapper as written, each `$`
    written `$$`: the kubelet expands `$(VAR)` and turns `$$` into `$` in a container's command.
    The entrypoint setting names the image's ENTRYPOINT, which the kubelet never expands:
    unescaped, `sh -c 'echo $$ > /run/app.pid'` wrote `$` there and `$(PORT)` the value of the
    container's PORT variable. The redact flags name Secret-sourced variables, and a name may hold
    any printable character but `=`: unescaped, `--redact-env=KEY$$2` named `KEY$2`, and the exit
    bundle showed KEY$$2's Secret value."""
    return [word.replace("$", "$$") for word in words]


def pid1_init(command: list[str], args: object) -> str | None:
    """The init the container runs, where it is one that refuses to run unless it is PID 1 (so
    the wrapper, whose tini is PID 1 instead, would break a pod that runs without podmedic), else None.
    `command` is what the runtime starts (the container's command or its entrypoint setting),
    `args` the container's args, which the runtime appends to it.

    The rule is on the first word, as the pod writes it (no PATH search, no symlinks: the webhook
    sees no image). A name that only an init has matches by its base name (`systemd`, `runit`,
    `busybox` with its `init` applet, also as the first of args): any path to it is that init,
    except `systemd --user` (the flag anywhere in command or args), the per-user manager.
    `init` itself matches only as the paths where an init lives, or bare (a PATH search finds the
    system's): an app may ship its own `/app/init` or `./init`, a script that runs fine wrapped,
    and its container would lose the supervisor for nothing. Likewise `/init` only at the root,
    where s6-overlay v3 puts it. (A wrong match costs a container its wrapper, with a warning; a
    missed init costs the pod: so the list takes every system path of an init.) An init started through a shell (`sh -c "exec /sbin/init"`)
    is not seen: the wrapper cannot tell what a script runs."""
    first = command[0]
    if first in _INIT_PATHS:
        return first
    base = first.rpartition("/")[2]
    if base == "systemd" and "--user" in [*command[1:], *(args if isinstance(args, list) else ())]:
        return None  # the per-user manager, which runs as any pid (its refusal names this flag)
    if base in _INIT_NAMES:
        return first
    if base == "busybox":
        applet = command[1] if len(command) > 1 else args[0] if isinstance(args, list) and args else None
        return f"{first} init" if applet == "init" else None
    return None


def _grace_wait(ctx: PodContext) -> int:
    """Seconds from the stop signal to the wrapper's SIGKILL where stopwaitsecs is unset: the pod's
    grace period within [KUBELET_MIN_GRACE, LONGEST_WAIT]. (Beyond a day, a day: the kubelet's own
    SIGKILL may then come later than the wrapper's, for a pod that waits that long to stop.)"""
    return min(max(ctx.grace_seconds(), KUBELET_MIN_GRACE), LONGEST_WAIT)


def _stop_flags(ctx: PodContext, name: str, stop: str) -> tuple[str, ...]:
    """The container's own stop signal as the wrapper's stopsignal, which the kubelet sends where
    the API server kept it, and the settings' one for a SIGTERM, a SIGINT and itself: the API
    server drops the field after the webhook saw it where its ContainerStopSignals gate is off
    (the default in 1.36), and the runtime then sends the image's STOPSIGNAL (SIGTERM unless the
    image sets one, which the settings' stopsignal matches), which must reach the app as it would
    unwrapped, not as the dropped signal. Two flags rather than a new one beside --stopsignal: a
    toolbox older than --term-stopsignal ignores it and stops on the container's signal, as it
    did before."""
    term = ctx.settings.value("stopsignal", name)
    return (f"--stopsignal={stop}",) if term == stop else (f"--stopsignal={stop}", f"--term-stopsignal={term}")


def _authored_stop_flags(ctx: PodContext, name: str, stop: str, flags: tuple[str, ...]) -> tuple[str, ...]:
    """The pod author's stopsignal stays the wrapper's, and the container's own stop signal, which
    the kubelet sends where the API server kept it, becomes a stop that sends it
    (--kubelet-stopsignal): forwarded as a plain signal, an app that exits on it was started again
    in the middle of its pod's shutdown. None is needed for the same signal, a SIGTERM or a SIGINT
    (already stops) or a SIGKILL (never reaches the wrapper). A toolbox older than the flag ignores
    it and forwards that signal, as it did before."""
    if stop in _STOPS_ALREADY or stop == ctx.settings.value("stopsignal", name):
        return flags
    return (*flags, f"--kubelet-stopsignal={stop}")


def own_stop_signal(ctx: PodContext, target: Target) -> tuple[str | None, bool]:
    """The container's lifecycle.stopSignal without its SIG prefix (None without one), and
    whether a pod or container annotation sets stopsignal (the pod author's own choice, honoured
    as the signal the app gets). Otherwise the container's signal is the wrapper's stopsignal: the
    kubelet sends it to PID 1 instead of SIGTERM (where the API server kept it), so the wrapper
    must take it as the stop either way."""
    lifecycle = target.spec.get("lifecycle")
    signal = lifecycle.get("stopSignal") if isinstance(lifecycle, dict) else None
    if not isinstance(signal, str):
        return None, False
    return signal.removeprefix("SIG"), ctx.settings.get("stopsignal", target.name).level in _AUTHOR


def _wrapper(ctx: PodContext, name: str, bundles: tuple[str, int] | None,
             run_once: bool) -> tuple[tuple[str, ...], str, bool]:
    """(the wrapper's flags, the decision's note on memory kills and, run to completion, on the
    app running once, whether it can hold: _can_hold): from settings alone, so made once per pod
    (per_pod), not rendered again for each of its containers. Immutable: per_pod() keeps it
    across reviews."""
    options = ctx.per_pod("supervisor-options", name, lambda: _options(ctx, name))
    note = watch_note(ctx, name, bundles)
    if run_once:
        kept = [key for key in _RUN_ONCE if ctx.settings.get(key, name).level in _AUTHOR]
        options = {**options, **{key: value for key, value in _RUN_ONCE.items() if key not in kept}}
        note = f"{' and '.join(kept) + ' as annotated' if kept else 'app runs once'}; {note}"
    return toolbox.supervise_flags(options, bundles), note, _can_hold(options)


def _can_hold(options: Mapping[str, str]) -> bool:
    """Whether a wrapper with these options holds a FATAL app (holds). It reaches FATAL only by
    restarts (autorestart not false, and a restart-limit other than 0, which turns the limit off)
    or start retries (startsecs above 0), so a wrapper with neither -- one that runs the app
    once, unless the pod's author annotated otherwise -- quits after the app's exit or restarts it
    for ever, and a hung app must be restarted by a liveness check that asks the app, not the
    wrapper's `pmctl alive`. One that can reach FATAL holds, and the app's liveness would end the
    hold the author asked for within seconds."""
    if options.get("on-fatal") != "hold":
        return False
    restarts_to_fatal = options.get("autorestart") != "false" and options.get("restart-limit") != "0"
    return restarts_to_fatal or options.get("startsecs") != "0"


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
    values = ((key, ctx.settings.value(key, name)) for key in toolbox.SUPERVISOR_OPTIONS)
    return MappingProxyType({key: _canonical(value) for key, value in values if value is not None})


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

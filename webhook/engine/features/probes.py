"""Default probes: readiness and liveness (and startup, below) where a container has none of its
own. A probe the user wrote is never touched.

Handler choice, per probe kind: exec when `<kind>-command` is set, else httpGet when `<kind>-path`
is set, else tcpSocket on the probe port. The httpGet follows the protocol the probe port's name
declares (_http_check): HTTPS on an `https` port, tcpSocket on a gRPC, TLS, database or plain TCP
one. The startup probe uses liveness's handler: it guards the same check during a long
initialisation. A container without a startupProbe gets one with every liveness podmedic adds that
checks the app (anything but the wrapper's `pmctl alive`): an app that opens its port after
failureThreshold x period (~30 s: a JVM, a database replaying its log) runs fine without probes,
and podmedic's liveness alone would kill it again and again (not on a native sidecar: see
_guards_slow_start). Its failureThreshold is `startup-timeout`'s budget, else the API's largest: no
bound, as without podmedic; liveness only kills an app that had answered once.
`startup-timeout` also adds one beside a liveness the user wrote (the admin asked for a budget).
When the supervisor wrapper holds crashed apps (on-fatal=hold), the liveness probe asks the
wrapper (`pmctl alive`), so a held container is not killed; without a port, a wrapped container's
probes fall back to `pmctl ready` / `pmctl alive` (a probe-port naming no declared port is not
"without a port": it is skipped and reported, as without the wrapper). The wrapper's `pmctl alive`
is probed at most once a minute (_wrapper_timings: it costs the node CPU and tells it nothing), and
both wrapper checks get at least a 10 s timeout (they read a state file: slowness is the node's).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal

from webhook.engine import mesh
from webhook.engine.context import PodContext, Target
from webhook.engine.decisions import INJECTED, Decision, Reason
from webhook.engine.keys import FeatureName, Level
from webhook.engine.patch import PatchBuilder
from webhook.engine.features import supervisor
from webhook.toolbox import argv as toolbox


FEATURE = FeatureName.PROBES
# Each kind's field and setting names, spelled out once, not formatted again for every
# container and review (with mutate's flat loops and the port looked for once per container,
# not per probe kind: 2.4 % of a 20-container pod's review).
_FIELD = {kind: f"{kind}Probe" for kind in ("readiness", "liveness", "startup")}
_COMMAND = {kind: f"{kind}-command" for kind in ("readiness", "liveness")}
_PATH = {kind: f"{kind}-path" for kind in ("readiness", "liveness")}
_TIMINGS = {kind: f"{kind}-probe-timings" for kind in ("readiness", "liveness", "startup")}
_KINDS = ("readiness", "liveness")
# The wrapper's check per probe kind, `pmctl <check>` but the name, made once (a startup probe
# has liveness's handler)
_WRAPPER = {"liveness": toolbox.pmctl_argv("alive", name="")[:-1],
            "readiness": toolbox.pmctl_argv("ready", name="")[:-1]}
_WRAPPER["startup"] = _WRAPPER["liveness"]
_WRAPPER_TIMINGS = {kind: f"wrapper-{kind}-probe-timings" for kind in _WRAPPER}
# The wrapper's `pmctl alive` liveness: at least this period (see _wrapper_timings); every probe
# that asks the wrapper: at least this timeout.
_WRAPPER_ALIVE_PERIOD = 60
_WRAPPER_TIMEOUT = 10
UNBOUNDED = 2**31 - 1  # the API's largest failureThreshold (int32): no bound on start-up
# The protocols a port name declares (Istio's protocol selection: `<protocol>` or
# `<protocol>-<suffix>`; a container port has no appProtocol) on which a plain HTTP GET fails,
# with the name the decision's detail gives them. grpc-web's head is grpc. https is not here (it
# gets scheme HTTPS), nor http, http2 or udp: those, and names that declare no known protocol,
# keep the plain HTTP GET.
_NOT_HTTP = MappingProxyType({"grpc": "gRPC", "mongo": "MongoDB", "mysql": "MySQL", "redis": "Redis",
                              "tcp": "TCP", "tls": "TLS"})


_OWN_LEVELS = (Level.POD, Level.CONTAINER)  # a path the pod's owner set (_warn_explicit_paths)


class NoPort(Exception):
    def __init__(self, reason: Reason, detail: str = ""):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def first_tcp_port(container: dict[str, Any]) -> int | None:
    for port in container.get("ports") or []:
        number = port.get("containerPort") if isinstance(port, dict) else None
        if isinstance(number, int) and port.get("protocol", "TCP") == "TCP":
            return number
    return None


def probe_port(ctx: PodContext, target: Target) -> int | str:
    """The annotated port (a name must be declared by the container), else the first TCP port."""
    port: int | str | None = ctx.settings.value("probe-port", target.name)
    if isinstance(port, str):
        names = {p.get("name") for p in target.spec.get("ports") or [] if isinstance(p, dict)}
        if port not in names:
            raise NoPort(Reason.NAMED_PORT_NOT_FOUND, port)
        return port
    if port is None:
        port = first_tcp_port(target.spec)
        if port is None:
            raise NoPort(Reason.NO_PROBE_PORT)
    return port


def _port_name(target: Target, port: int | str) -> str | None:
    """The probe port's declared name: a name is its own; a number (`probe-port`, or the first TCP
    port) stands for the container's TCP port with that number, so `probe-port: 8443` says what
    `probe-port: https` says. None for a number the container does not declare, or no name."""
    if isinstance(port, str):
        return port
    for declared in target.spec.get("ports") or ():
        if (isinstance(declared, dict) and declared.get("containerPort") == port
                and declared.get("protocol", "TCP") == "TCP"):
            name = declared.get("name")
            return name if isinstance(name, str) else None
    return None


def _http_check(target: Target, path: str, port: int | str, notes: list[str]) -> dict[str, Any]:
    """The handler for `<kind>-path` on `port`, by the protocol the port's name declares. A plain
    HTTP GET on a TLS port gets a 400 and on a gRPC or database port fails: the container never
    becomes Ready (a liveness restarts it forever), though it runs without podmedic. On `https`
    the GET says HTTPS (the kubelet does not verify the certificate); on the other known protocols
    tcpSocket checks what it can, and `notes` gets why (once per container, for the decision)."""
    name = _port_name(target, port)
    protocol = name.partition("-")[0] if name else ""
    if protocol == "https":
        return {"httpGet": {"path": path, "port": port, "scheme": "HTTPS"}}
    label = _NOT_HTTP.get(protocol)
    if label is None:
        return {"httpGet": {"path": path, "port": port}}
    if not notes:
        notes.append(f"port {name} is {label}")
    return {"tcpSocket": {"port": port}}


def handler(ctx: PodContext, target: Target, kind: str, ports: list[int | str],
            notes: list[str]) -> dict[str, Any]:
    """The probe handler for `kind` ("readiness" or "liveness"). `ports`: the container's probe
    port once found (by the handler of another kind), so it is looked for once per container;
    `notes`: why a path's httpGet became a tcpSocket (_http_check)."""
    name = target.name
    command = ctx.settings.value(_COMMAND[kind], name)
    if command:
        return {"exec": {"command": command}}
    if kind == "liveness" and supervisor.holds(ctx, target):
        return {"exec": {"command": toolbox.pmctl_argv("alive", name=name)}}
    path = ctx.settings.value(_PATH[kind], name)
    try:
        if ports:
            port = ports[0]
        else:
            port = probe_port(ctx, target)
            ports.append(port)
    except NoPort as exc:
        # no port, but the wrapper knows the app's state; a probe-port naming no declared port
        # is the user's mistake to report, not a missing port
        if exc.reason is Reason.NO_PROBE_PORT and ctx.applied(supervisor.FEATURE, name):
            check: Literal["ready", "alive"] = "ready" if kind == "readiness" else "alive"
            return {"exec": {"command": toolbox.pmctl_argv(check, name=name)}}
        raise
    if path:
        return _http_check(target, path, port, notes)
    return {"tcpSocket": {"port": port}}


def build(ctx: PodContext, target: Target, kind: str, ports: list[int | str],
          notes: list[str]) -> dict[str, Any]:
    """A complete probe that satisfies API validation (liveness/startup successThreshold = 1):
    the container's handler, then the timings (the same for every container: once per pod)."""
    name = target.name
    if kind == "startup":
        probe = handler(ctx, target, "liveness", ports, notes)
    else:
        ctx.settings.value("probe-timeout-seconds", name)  # an invalid timeout is reported before a missing port
        probe = handler(ctx, target, kind, ports, notes)
    if _asks_wrapper(probe, kind):
        return {**probe, **ctx.per_pod(_WRAPPER_TIMINGS[kind], name, lambda: _wrapper_timings(ctx, name, kind))}
    return {**probe, **ctx.per_pod(_TIMINGS[kind], name, lambda: _timings(ctx, name, kind))}


def _timings(ctx: PodContext, name: str, kind: str) -> Mapping[str, Any]:
    """Read-only: per_pod() keeps them across reviews."""
    value = ctx.settings.value
    timeout = value("probe-timeout-seconds", name)
    if kind == "startup":
        period = value("startup-period-seconds", name)
        budget = value("startup-timeout", name)
        failures = max(1, math.ceil(budget / period)) if budget else UNBOUNDED
        return MappingProxyType({"periodSeconds": period, "timeoutSeconds": timeout,
                                 "failureThreshold": failures, "successThreshold": 1})
    return MappingProxyType({
        "initialDelaySeconds": value(f"{kind}-initial-delay-seconds", name),
        "periodSeconds": value("probe-period-seconds", name),
        "timeoutSeconds": timeout,
        "failureThreshold": value("probe-failure-threshold", name),
        "successThreshold": 1,
    })


def _wrapper_timings(ctx: PodContext, name: str, kind: str) -> Mapping[str, Any]:
    """The kind's timings with at least a _WRAPPER_TIMEOUT s timeout: `pmctl alive` and `pmctl
    ready` only read the wrapper's state file (FATAL is in the state, not in slowness), but as exec
    probes they run in the container's cgroup, under its CPU quota: at 50m with a busy app `pmctl
    ready` took 1.3-3.1 s (measured on a real node, tests/node/test_exec_probe_cpu.py), so a 1 s
    timeout made a healthy pod NotReady (and would kill a held container).
    Liveness is also probed at least every _WRAPPER_ALIVE_PERIOD s: `pmctl alive` (`kill -0` of the
    wrapper) tells the kubelet nothing a container exit does not (the wrapper is tini's child,
    tini exits with it; a hung wrapper passes too), yet each exec probe costs the node ~30 ms of
    CPU (runc exec ~18 ms; a tcpSocket probe ~0.2 ms; measured on a real node): at 10 s, 0.3 of a
    core per 100 containers. `pmctl ready` and the app's checks keep `probe-period-seconds`: they
    carry the signal."""
    timings = ctx.per_pod(_TIMINGS[kind], name, lambda: _timings(ctx, name, kind))
    slower = {"timeoutSeconds": max(timings["timeoutSeconds"], _WRAPPER_TIMEOUT)}
    if kind == "liveness":
        slower["periodSeconds"] = max(timings["periodSeconds"], _WRAPPER_ALIVE_PERIOD)
    return MappingProxyType({**timings, **slower})


def _asks_wrapper(probe: dict[str, Any], kind: str) -> bool:
    """Whether the probe is the wrapper's check for `kind`: `pmctl alive` (true while the wrapper
    runs) for liveness and startup, `pmctl ready` for readiness."""
    check = probe.get("exec")
    return check is not None and check["command"][:-1] == _WRAPPER[kind]


def _guards_slow_start(target: Target, liveness: dict[str, Any] | None) -> bool:
    """Whether podmedic added a liveness probe that asks the app (tcpSocket, httpGet, a configured
    exec), not the wrapper (`pmctl alive`, true while the wrapper runs): only the former kills a
    slow starter, so only it needs a startup probe in front of it. Not on a native sidecar: the
    kubelet starts the containers after it only once its startupProbe succeeds, so an unbounded
    one would hold the app back until the sidecar answers, forever where the sidecar's check
    waits for the app (without one they start as soon as the sidecar runs)."""
    return liveness is not None and target.kind == "containers" and not _asks_wrapper(liveness, "liveness")


def _drop_unusable(ctx: PodContext, name: str, built: dict[str, dict[str, Any]], unusable: frozenset[str],
                   level: Level) -> Decision | None:
    """Take the probes whose handler is `unusable` out of `built`, in a pod a mesh injected before
    podmedic (engine.mesh): through its proxy the kubelet's httpGet would fail under Istio's mutual
    TLS, and a tcpSocket always pass. Exec probes stay. The skip's Decision, or None."""
    dropped = [kind for kind, probe in built.items() if next(iter(probe)) in unusable]
    if not dropped:
        return None
    detail = ", ".join(f"{kind}:{next(iter(built.pop(kind)))}" for kind in dropped)
    return Decision(FEATURE, name, Reason.MESH_PROBES, f"{ctx.mesh}: {detail}", level)


def mutate(ctx: PodContext, target: Target, patch: PatchBuilder) -> Decision:
    """The missing probes of the wanted kinds. One loop per step, no helper per kind: run for
    every container of every review, the calls and comprehensions cost more than the work."""
    name, spec = target.name, target.spec
    level = ctx.settings.get(FEATURE, name).level
    built: dict[str, dict[str, Any]] = {}
    ports: list[int | str] = []
    notes: list[str] = []
    try:
        for kind in _KINDS:
            if not spec.get(_FIELD[kind]):
                built[kind] = build(ctx, target, kind, ports, notes)
        if not spec.get("startupProbe") and (_guards_slow_start(target, built.get("liveness"))
                                             or ctx.settings.value("startup-timeout", name)):
            built["startup"] = build(ctx, target, "startup", ports, notes)
    except NoPort as exc:
        return Decision(FEATURE, name, exc.reason, exc.detail, level)
    if notes:  # before a mesh takes the tcpSocket out: the path still gave no httpGet
        _warn_explicit_paths(ctx, name, built, notes[0])
    unusable = mesh.UNUSABLE_PROBES.get(ctx.mesh)
    skipped = _drop_unusable(ctx, name, built, unusable, level) if unusable else None
    if not built:
        return skipped or Decision(FEATURE, name, Reason.HAS_OWN_PROBE, level=level)
    if skipped is not None:
        ctx.report.add(skipped)
    fields: list[str] = []
    summary: list[str] = []
    for kind, probe in built.items():
        field = _FIELD[kind]
        patch.set(target.path + (field,), probe, spec)
        fields.append(field)
        summary.append(f"{kind}:{next(iter(probe))}")
    ctx.record(target, FEATURE, fields)
    detail = ", ".join(summary)
    if notes and "tcpSocket" in detail:  # not when a mesh took the tcpSocket probes out
        detail = f"{detail}; {notes[0]}: tcpSocket, not httpGet"
    return Decision(FEATURE, name, INJECTED, detail, level)


def _warn_explicit_paths(ctx: PodContext, name: str, built: dict[str, dict[str, Any]], note: str) -> None:
    """Warn when a path set on this pod or container got a tcpSocket (the port's name declares a
    protocol a plain GET fails on, _http_check): its owner asked for that httpGet, and the decision
    tells how to get it. Decided from the probes built, before a mesh's filter (_drop_unusable)
    takes the tcpSocket out: its mesh-probes text alone would tell them to set the path they set. A namespace's or the admin's path stays in the injected decision's detail
    alone: it asks every pod of the namespace, whose owners named their ports for what they serve,
    and a warning on each of their pods would be noise they cannot act on but by renaming ports."""
    asked: dict[str, Level] = {}
    for kind, probe in built.items():
        setting = ctx.settings.get(_PATH["liveness" if kind == "startup" else kind], name)
        if "tcpSocket" in probe and setting.raw and setting.level in _OWN_LEVELS:
            asked.setdefault(setting.annotation, setting.level)
    if asked:
        ctx.report.add(Decision(FEATURE, name, Reason.PROBE_PATH_NOT_HTTP, f"{', '.join(asked)}: {note}",
                                next(iter(asked.values()))))

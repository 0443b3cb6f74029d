"""Decisions as data: the one table of reasons, and what podmedic did or skipped, for which
container, and why (one Decision per container and feature).

Every decision podmedic makes -- inject a feature into a container or skip it -- carries one of
these codes. The audit line, the AdmissionResponse warnings and auditAnnotations, the metrics'
`reason` label and `podmedic explain` all render the same code, so there is exactly one place
that says what a code means (Linkerd's pkg/inject reasons table is the model).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple, get_args

from webhook.engine.keys import STOP_SIGNALS, FeatureName, Level, OtherScope, Scope


class Reason(str, Enum):
    """A decision's reason code; the value is the stable, kebab-case code seen by users."""

    code: str   # the value, as a plain str
    text: str   # for humans: warnings, `podmedic explain`
    warn: bool  # worth a warning to the user (kubectl prints AdmissionResponse warnings)

    def __new__(cls, code: str, text: str, warn: bool) -> "Reason":
        obj = str.__new__(cls, code)
        obj._value_ = code
        obj.text = text
        obj.warn = warn
        obj.code = code  # the plain str: faster to read than .value, once per decision in the audit line
        return obj

    # -- applied
    INJECTED = ("injected", "injected", False)
    # -- whole-pod skips
    NOT_A_POD_CREATE = ("not-a-pod-create", "not a Pod CREATE; nothing to do", False)
    NAMESPACE_NOT_ENABLED = ("namespace-not-enabled", "namespace has not opted in", False)
    POD_OPTED_OUT = ("pod-opted-out", "pod opted out with the inject annotation", False)
    NAMESPACE_UNKNOWN = ("namespace-unknown", "namespace not found in the namespace source; not injecting", True)
    NAMESPACE_SOURCE_NOT_SYNCED = ("namespace-source-not-synced", "namespace source has not synced yet; not injecting", True)
    NAMESPACE_LOOKUP_FAILED = ("namespace-lookup-failed", "namespace lookup failed; not injecting", True)
    ALREADY_INJECTED = ("already-injected", "pod already carries podmedic's injection marker", False)
    NOT_LINUX = ("not-linux", "the pod runs only on another OS than Linux (spec.os.name, a kubernetes.io/os node "
                 "selector or affinity, or HostProcess): podmedic's toolbox and init containers are Linux-only; "
                 "not injecting", True)
    COPY_OF_INJECTED = ("copy-of-injected", "the pod carries podmedic's init containers, toolbox mount or log mount "
                        "but not its marker: a copy of an injected pod (kubectl debug --copy-to drops annotations, and probes "
                        "unless --keep-liveness/--keep-readiness/--keep-startup), or a pod another podmedic "
                        "installation (another annotation prefix) injected first; not injecting again", True)
    MIRROR_POD = ("mirror-pod", "mirror of a static pod: the kubelet runs the manifest on its disk, not this object; "
                  "not injecting", False)
    DEADLINE_EXCEEDED = ("deadline-exceeded", "review exceeded podmedic's deadline; pod let through unchanged", True)
    # -- per-feature skips
    FEATURE_DISABLED = ("feature-disabled", "feature disabled", False)
    INVALID_VALUE = ("invalid-value", "invalid annotation value", True)
    UNKNOWN_KEY = ("unknown-key", "unknown podmedic annotation ignored", True)
    UNKNOWN_CONTAINER = ("unknown-container", "pod annotation names a container the pod does not have; ignored", True)
    NOT_OVERRIDABLE = ("not-overridable", "pod annotation ignored: the admin does not let pods set this key", True)
    HAS_OWN_PROBE = ("has-own-probe", "container defines this probe itself; kept unchanged", False)
    NO_PROBE_PORT = ("no-probe-port", "no TCP containerPort and no probe-port annotation", True)
    NAMED_PORT_NOT_FOUND = ("named-port-not-found", "probe-port names a port the container does not declare", True)
    ENTRYPOINT_UNKNOWN = ("entrypoint-unknown", "image entrypoint unknown; set command or {prefix}entrypoint", True)
    INTERACTIVE_TTY = ("interactive-tty", "an interactive session (stdin: true and tty: true) is not a service: the "
                       "wrapper would restart a shell whose exit carries a failed command's status, and log into "
                       "the terminal; not wrapped", False)
    PID1_REQUIRED = ("pid1-required", "the command is an init that runs only as PID 1 (busybox init, systemd, "
                     "s6-overlay's /init, runit): wrapped, it would not be PID 1 and would exit; not wrapped", True)
    STOP_SIGNAL_UNSUPPORTED = ("stop-signal-unsupported", "the container's lifecycle.stopSignal is none the wrapper "
                               f"can stop on (stopsignal: {', '.join(STOP_SIGNALS)}): the "
                               "kubelet's stop would reach the app as a plain signal; not wrapped", True)
    ARCH_UNSUPPORTED = ("arch-unsupported", "the pod runs only on node architectures (kubernetes.io/arch) that "
                        "podmedic's image is not built for (toolbox.architectures): its init containers and "
                        "toolbox could not run there", True)
    PULL_SECRETS_OFFLINE = ("pull-secrets-offline", "offline, toolbox.imagePullSecrets are not added to a template "
                            "that lists no imagePullSecrets (its pods would lose their ServiceAccount's), so "
                            "nothing needs podmedic's image: inject at admission via the webhook, or list the "
                            "pull secrets in the template", True)
    NAME_CONFLICT = ("name-conflict", "the pod already has a volume or container with podmedic's name", True)
    MOUNT_CONFLICT = ("mount-conflict", "the container already mounts something at that path", True)
    READ_ONLY_MOUNT = ("read-only-mount", "a read-only mount above the log path: the runtime cannot create the log "
                       "directory there", True)
    ENV_CONFLICT = ("env-conflict", "the container already defines an env var podmedic needs", True)
    PSA_FORBIDS_HOSTPATH = ("psa-forbids-hostpath", "the namespace's enforced Pod Security level forbids hostPath volumes", True)
    LOGS_PVC_MISSING = ("logs-pvc-missing", "the namespace has no log PersistentVolumeClaim (logs.claimName)", True)
    LOGS_PVC_UNBOUND = ("logs-pvc-unbound", "the namespace's log PersistentVolumeClaim is not Bound", True)
    LOG_DIR_NAME_TOO_LONG = ("log-dir-name-too-long", "the pod's log directory name <namespace>_<pod>_<uid> would exceed "
                             "255 bytes, which no filesystem creates", True)
    LIMITRANGE_CONFLICT = ("limitrange-conflict", "podmedic's init containers fit no requests and limits that the "
                           "namespace's LimitRange allows (the API server would refuse the pod)", True)
    EPHEMERAL_STORAGE_LIMIT = ("ephemeral-storage-limit", "the pod's ephemeral-storage limit is below what podmedic's "
                               "toolbox volume may hold (its sizeLimit): the kubelet counts that volume against the "
                               "limit and would evict the pod", True)
    MESH_PROBES = ("mesh-probes", "a service mesh injected this pod before podmedic: through its proxy the kubelet's "
                   "network probe would fail under mutual TLS (Istio: httpGet, grpc) or always pass (tcpSocket, "
                   "Istio and Linkerd); not added. To get it, order podmedic's webhook before Istio's injector "
                   "(Istio rewrites the probes it sees), set the probe in the manifest, use "
                   "{prefix}readiness-command / {prefix}liveness-command, or, under Linkerd, {prefix}readiness-path "
                   "/ {prefix}liveness-path", True)
    PROBE_PATH_NOT_HTTP = ("probe-path-not-http", "{prefix}readiness-path / {prefix}liveness-path asks for an httpGet, "
                           "but the probe port's name declares a protocol on which a plain HTTP GET fails (grpc, "
                           "mongo, mysql, redis, tcp, tls, or <protocol>-<suffix>): a tcpSocket probe instead. For "
                           "the httpGet, rename the port (http-<suffix>, or a name that declares no protocol) or set "
                           "{prefix}probe-port to a port whose name does not declare one of these", True)
    MESH_PROXY = ("mesh-proxy", "the service mesh's proxy container; left to the mesh", False)
    PRESTOP_NOT_EXEC = ("prestop-not-exec", "container has a non-exec preStop hook; kept, forensics hook not added", True)
    GRACE_TOO_SHORT = ("grace-too-short", "terminationGracePeriodSeconds leaves too little time for the collector", True)
    MUTATOR_ERROR = ("mutator-error", "internal error while injecting this feature; feature skipped", True)
    MALFORMED_POD = ("malformed-pod", "the object is not shaped like a Pod; not injected", True)
    VERIFY_FAILED = ("verify-failed", "the computed patch failed verification; pod let through unchanged", True)

    def render(self, prefix: str) -> str:
        return self.text.format(prefix=prefix)


class Decision(NamedTuple):
    """One decision (a tuple: a 20-container pod makes about 80 of them per review)."""

    feature: Scope        # a FeatureName, or "pod" for whole-pod decisions, "settings" for annotations
    container: str | None
    reason: Reason
    detail: str = ""      # what was injected, or the precise problem
    level: Level = Level.GLOBAL  # which configuration layer decided

    def as_dict(self) -> dict[str, object]:
        """The decision as in the audit record (`podmedic explain` reads it too): `as_dicts`
        renders it, so the two never differ."""
        return as_dicts((self,))[0]


# The reason of every injection, read per container by each feature and per decision here: a
# module global, also where imported by name, costs about a quarter of an Enum class attribute's
# look-up (`Reason.INJECTED`).
INJECTED = Reason.INJECTED
_LEVELS = {level: level.value for level in Level}
# Every Scope to its name as a plain str (a FeatureName is a StrEnum): read per decision, cheaper
# than `str.__str__`, which copies the string. Built from the types, so no scope is ever missing.
SCOPE_NAMES: dict[Scope, str] = {**{name: name.value for name in FeatureName},
                                 **{scope: scope for scope in get_args(OtherScope)}}


def as_dicts(decisions: Iterable[Decision]) -> list[dict[str, object]]:
    """The decisions in the audit record, as plain strings (a YAML dumper cannot represent an
    enum). A large pod has 80 decisions per review, so one loop renders them all (no method
    call per decision), and a decision with a container and a detail -- the common case -- is
    one dict display, sized once, instead of a 3-key dict grown by three stores (a resize).
    Module tables, not `Reason.INJECTED` (an Enum class attribute) or `str.__str__` (a copy)."""
    names, levels, injected = SCOPE_NAMES, _LEVELS, INJECTED
    out: list[dict[str, object]] = []
    for feature, container, reason, detail, level in decisions:
        if container is not None and detail:  # the common case: one dict display, sized once
            out.append({"feature": names[feature], "applied": reason is injected, "reason": reason.code,
                        "container": container, "detail": detail, "level": levels[level]})
            continue
        one: dict[str, object] = {"feature": names[feature], "applied": reason is injected, "reason": reason.code}
        if container is not None:
            one["container"] = container
        if detail:
            one["detail"] = detail
        one["level"] = levels[level]
        out.append(one)
    return out


@dataclass
class Report:
    decisions: list[Decision] = field(default_factory=list)

    def add(self, decision: Decision) -> None:
        self.decisions.append(decision)

    def warnings(self, prefix: str) -> list[str]:
        """One line per skip the user should know about (kubectl prints these)."""
        out = []
        for d in self.decisions:
            if d.reason.warn:
                where = f"container {d.container}: " if d.container else ""
                text = d.reason.render(prefix)
                out.append(f"podmedic: {where}{d.feature}: {text}" + (f" ({d.detail})" if d.detail else ""))
        return out

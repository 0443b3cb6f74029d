"""The injection marker (`<prefix>status`): what podmedic added to a pod, as one typed schema.

The engine writes it (`write`) as the last operation of every non-empty patch; uninject reads it
(`parse`) to remove exactly what was added, and the gate checks with it whether a marker it finds
is well-formed. Once written, the marker is untrusted input: anyone can edit a manifest or a pod
template, so `parse` accepts only what `write` can produce and raises MarkerError otherwise --
never a KeyError or AttributeError three calls later.

Version 3, one JSON object, keys in this order (the order is part of the format: golden files
and re-applied manifests compare the text):

    containers  {container name: {feature: what it added or replaced}}    required
                  supervisor  {"command": the original command, or null}
                  probes      ["readinessProbe" | "livenessProbe" | "startupProbe", ...]
                  logs        {"mountPath": the log directory's mount path}
                  forensics   {"preStop": the original preStop hook, any JSON value, or null}
    pod         {"volumes": [names], "initContainers": [names],          when pod-level pieces were added
                 "annotations": {key: the original value, or null},      annotations podmedic set (the
                                                                          autoscaler's local-volumes list)
                 "imagePullSecrets": [names]}                            the pull secrets podmedic added
                                                                          (toolbox.imagePullSecrets)
    version     3 with pod.imagePullSecrets, else 2 (1: the same         required
                without pod.annotations); all three are read
    created     [JSON pointers of the maps and lists the patch created]  required
    replaced    {JSON pointer: original value}                           when the patch overwrote a
                member that was null or empty ({}, [], ""), which the feature records cannot tell
                from an absent one (`annotations: null` must come back as null, not vanish)

Strictness: unknown keys are rejected at every level, as are wrong types, a version other than
1, 2 or 3, names and pointers podmedic never makes (a `created` of `/spec`, a `pod.volumes` of
the user's own volume: uninject would delete the user's parts), and markers longer than
MAX_LENGTH (the API server's limit for all annotations together). A later format that adds a
key must bump the version, so an older podmedic refuses it instead of removing half of what a
newer one added. A marker says the oldest version that holds it: one
without pull secrets stays the text every earlier podmedic wrote and reads.
"""

from __future__ import annotations

import re
from typing import Any, Final, Literal, NotRequired, TypedDict

import orjson

from webhook.engine.patch import pointer
from webhook.engine.pod_level import OUR_CONTAINERS, OUR_VOLUMES, SAFE_TO_EVICT

VERSION: Final = 3
PLAIN_VERSION: Final = 2  # what a marker without pod.imagePullSecrets says (_version)
# a version 1 marker is a version 2 one without pod.annotations, a version 2 one a version 3 one
# without pod.imagePullSecrets
READABLE_VERSIONS = (1, PLAIN_VERSION, VERSION)
MAX_LENGTH = 256 * 1024  # bytes: the API server's limit for a pod's annotations, all together
PROBE_FIELDS = ("readinessProbe", "livenessProbe", "startupProbe")
# Every map or list the patch can create (PatchBuilder.append/ensure_map in pod_level.py and the
# features), and what it can also overwrite when null or empty (its `set`s); nothing else.
_CONTAINER = r"/spec/(?:containers|initContainers)/(?:0|[1-9][0-9]*)/"
_CREATED = rf"/metadata|/metadata/annotations|/spec/(?:volumes|initContainers|imagePullSecrets)|{_CONTAINER}(?:env|volumeMounts|lifecycle)"
CREATED = re.compile(_CREATED)
REPLACED = re.compile(rf"{_CREATED}|{re.escape(pointer(('metadata', 'annotations', SAFE_TO_EVICT)))}"
                      rf"|{_CONTAINER}(?:command|{'|'.join(PROBE_FIELDS)}|lifecycle/preStop)")


class SupervisorRecord(TypedDict):
    command: list[str] | None


class LogsRecord(TypedDict):
    mountPath: str


class ForensicsRecord(TypedDict):
    preStop: Any  # the user's hook as it was, restored verbatim


class ContainerRecord(TypedDict, total=False):
    supervisor: SupervisorRecord
    probes: list[str]
    logs: LogsRecord
    forensics: ForensicsRecord


class PodRecord(TypedDict):
    volumes: list[str]
    initContainers: list[str]
    annotations: NotRequired[dict[str, str | None]]  # key -> the value before podmedic set it (null: absent)
    imagePullSecrets: NotRequired[list[str]]  # the Secret names podmedic added (version 3)


class Marker(TypedDict):
    containers: dict[str, ContainerRecord]
    pod: NotRequired[PodRecord]
    version: Literal[1, 2, 3]
    created: list[str]
    replaced: NotRequired[dict[str, Any]]


class MarkerError(ValueError):
    """The marker is not one podmedic wrote; the message says what is wrong with it, cut to
    MAX_MESSAGE characters (it quotes keys and names from the marker, which may be huge)."""

    MAX_MESSAGE = 200

    def __init__(self, message: str) -> None:
        cut = self.MAX_MESSAGE
        super().__init__(message if len(message) <= cut else message[:cut - 3] + "...")


def build(containers: dict[str, ContainerRecord], pod: PodRecord | None, created: list[str],
          replaced: dict[str, Any]) -> Marker:
    """The marker for a patch; optional parts only when there is something to record."""
    marker = Marker(containers=containers, version=_version(pod), created=created)
    if pod is not None:
        marker["pod"] = pod
    if replaced:
        marker["replaced"] = replaced
    return marker


def _version(pod: PodRecord | None) -> Literal[2, 3]:
    """The oldest version that holds the record: pods without podmedic's pull secrets keep the
    marker an earlier podmedic wrote (and can uninject)."""
    return VERSION if pod is not None and "imagePullSecrets" in pod else PLAIN_VERSION


def write(marker: Marker) -> str:
    """The annotation value: compact JSON, keys in the documented order."""
    ordered: dict[str, Any] = {"containers": marker["containers"]}
    if "pod" in marker:
        ordered["pod"] = marker["pod"]
    ordered["version"] = marker["version"]
    ordered["created"] = marker["created"]
    if "replaced" in marker:
        ordered["replaced"] = marker["replaced"]
    return orjson.dumps(ordered).decode()


def parse(text: object) -> Marker:
    """The marker in an annotation value, validated; MarkerError for anything `write` would not
    have produced (the value is any object, since a manifest's annotation may be a number)."""
    if not isinstance(text, str):
        raise MarkerError(f"must be a JSON string, not {_kind(text)}")
    raw = text.encode()  # bytes: orjson refuses str subclasses (ruamel's quoted scalars)
    if len(raw) > MAX_LENGTH:
        raise MarkerError(f"too long ({len(raw)} bytes, at most {MAX_LENGTH})")
    try:
        data = orjson.loads(raw)  # deep nesting is an orjson.JSONDecodeError, not a RecursionError
    except orjson.JSONDecodeError as exc:
        raise MarkerError(f"not JSON: {exc}") from None
    obj = _object(data, "the marker", required=("containers", "version", "created"),
                  optional=("pod", "replaced"))
    version = obj["version"]
    if type(version) is not int or version not in READABLE_VERSIONS:
        raise MarkerError(f"version {version!r} is not supported (this podmedic reads versions 1 to {VERSION})")
    containers = _object(obj["containers"], "containers")
    for name, record in containers.items():
        _container(record, f"containers[{name!r}]")
    if "pod" in obj:
        pod = _object(obj["pod"], "pod", ("volumes", "initContainers"), _POD_OPTIONAL[version])
        _ours(_strings(pod["volumes"], "pod.volumes"), OUR_VOLUMES, "pod.volumes", "a volume")
        _ours(_strings(pod["initContainers"], "pod.initContainers"), OUR_CONTAINERS, "pod.initContainers",
              "an init container")
        _strings(pod.get("imagePullSecrets", []), "pod.imagePullSecrets")  # the configured Secrets: any name
        annotations = _object(pod.get("annotations", {}), "pod.annotations")
        _ours(list(annotations), (SAFE_TO_EVICT,), "pod.annotations", "an annotation", "sets")
        for key, original in annotations.items():
            if original is not None and not isinstance(original, str):
                raise MarkerError(f"pod.annotations[{key!r}] must be a string or null, not {_kind(original)}")
    for ptr in _strings(obj["created"], "created"):
        _pointer(ptr, "created", CREATED, "creates")
    if "replaced" in obj:
        for ptr, original in _object(obj["replaced"], "replaced").items():
            _pointer(ptr, "replaced", REPLACED, "replaces")
            if original not in (None, {}, [], ""):
                raise MarkerError(f"replaced[{ptr!r}] must be null or empty, not {_kind(original)}")
    return obj  # type: ignore[return-value]  # validated above, field by field


_POD_OPTIONAL = {1: (), 2: ("annotations",), 3: ("annotations", "imagePullSecrets")}  # by version


def _container(record: object, where: str) -> None:
    rec = _object(record, where, optional=("supervisor", "probes", "logs", "forensics"))
    if "supervisor" in rec:
        command = _object(rec["supervisor"], f"{where}.supervisor", ("command",), ())["command"]
        if command is not None:
            _strings(command, f"{where}.supervisor.command")
    if "probes" in rec:
        for probe in _strings(rec["probes"], f"{where}.probes"):
            if probe not in PROBE_FIELDS:
                raise MarkerError(f"{where}.probes: {probe!r} is not one of {', '.join(PROBE_FIELDS)}")
    if "logs" in rec:
        path = _object(rec["logs"], f"{where}.logs", ("mountPath",), ())["mountPath"]
        if not isinstance(path, str):
            raise MarkerError(f"{where}.logs.mountPath must be a string, not {_kind(path)}")
    if "forensics" in rec:
        _object(rec["forensics"], f"{where}.forensics", ("preStop",), ())


def _object(value: object, where: str, required: tuple[str, ...] = (),
            optional: tuple[str, ...] | None = None) -> dict[str, Any]:
    """`value` as a JSON object with these keys; optional=None allows any key (a map by name)."""
    if not isinstance(value, dict):
        raise MarkerError(f"{where} must be an object, not {_kind(value)}")
    missing = [k for k in required if k not in value]
    if missing:
        raise MarkerError(f"{where} lacks {', '.join(missing)}")
    if optional is not None:
        unknown = sorted(k for k in value if k not in required and k not in optional)
        if unknown:
            raise MarkerError(f"{where} has unknown key(s) {', '.join(map(repr, unknown))}")
    return value


def _strings(value: object, where: str) -> list[str]:
    if not isinstance(value, list):
        raise MarkerError(f"{where} must be a list of strings, not {_kind(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise MarkerError(f"{where}[{i}] must be a string, not {_kind(item)}")
    return value


def _pointer(ptr: str, where: str, ours: re.Pattern[str], verb: str) -> None:
    """A pointer podmedic's patch can have written there: uninject deletes or sets what it names."""
    if not ptr.startswith("/"):
        raise MarkerError(f"{where}: {ptr!r} is not a JSON pointer")
    if not ours.fullmatch(ptr):
        raise MarkerError(f"{where}: {ptr!r} is not a path podmedic {verb}")


def _ours(names: list[str], ours: tuple[str, ...], where: str, what: str, verb: str = "adds") -> None:
    """Names podmedic itself adds: uninject removes what they name from the user's pod."""
    for name in names:
        if name not in ours:
            raise MarkerError(f"{where}: {name!r} is not {what} podmedic {verb}")


def _kind(value: object) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null",
             int: "a number", float: "a number"}
    return names.get(type(value), type(value).__name__)

"""Decoding an AdmissionReview v1: the `request` of a valid review, or BadReview naming the
problem (the HTTP shell answers it with a 400 the API server logs; never a 500).

Every byte of the body is checked: strict RFC 8259 syntax, UTF-8, nesting depth. What is built
into Python objects is what a review reads: the pod's `metadata.managedFields`, about half of a
pod as the API server sends it and read by nothing in podmedic, is checked but not built
(msgspec decodes into the structs below and skips that one field; building it was half of a
large pod's decoding). The structs list the fields of the API's types (AdmissionReview and
AdmissionRequest of admission/v1; Pod, ObjectMeta and UserInfo, which a test compares with the
Kubernetes OpenAPI schema): a field a later API adds is dropped here, and nothing notices, as
nothing reads a field it does not know. Integers are kept as sent, of any size (review()
answers one beyond the 64 bits orjson writes with a 400).

The pod's shape is checked here too, in C: the fields podshape.py checks are typed in the
structs below as its tables say (`_TYPED`), so a review decoded this way does not need
podshape's walk over the pod (4 % of a new pod's review in instructions). PodSpec and Container
fields are listed as the API's too (a test compares them with the OpenAPI schema). A body whose
pod breaks one of those types is decoded again without them and `Decoded.shape_checked` is
False: review() then runs podshape as before, which names the field in its 400 and leaves
requests that are not pod creations alone (their object need not be a pod).
"""

from __future__ import annotations

from types import GenericAlias
from typing import Any, NamedTuple, TypedDict, cast

import msgspec
from msgspec import UNSET, UnsetType

from webhook.admission import podshape
from webhook.admission.wire import AdmissionRequest, ApiVersion

API_VERSION: ApiVersion = "admission.k8s.io/v1"


class BadReview(ValueError):
    """The body is not a usable AdmissionReview; the message names the problem."""


# A field absent from the body stays UNSET and is left out of the dicts handed on, so a reader
# sees exactly the fields that were sent (null included). The fields the audit line copies are
# typed `_Text`: JSON holds integers orjson cannot write (beyond 64 bits), and the API server only
# ever sends strings there; other fields reach orjson only through the engine (review()).
_Text = str | None | UnsetType


class _ObjectMeta(msgspec.Struct):
    name: _Text = UNSET
    generateName: _Text = UNSET
    namespace: _Text = UNSET
    selfLink: Any = UNSET
    uid: Any = UNSET
    resourceVersion: Any = UNSET
    generation: Any = UNSET
    creationTimestamp: Any = UNSET
    deletionTimestamp: Any = UNSET
    deletionGracePeriodSeconds: Any = UNSET
    labels: Any = UNSET
    annotations: Any = UNSET
    ownerReferences: Any = UNSET
    finalizers: Any = UNSET
    managedFields: msgspec.Raw | UnsetType = UNSET  # syntax-checked, not built


class _Pod(msgspec.Struct):
    apiVersion: Any = UNSET
    kind: Any = UNSET
    metadata: _ObjectMeta | None | UnsetType = UNSET
    spec: Any = UNSET
    status: Any = UNSET


class _UserInfo(msgspec.Struct):
    username: _Text = UNSET
    uid: Any = UNSET
    groups: Any = UNSET
    extra: Any = UNSET


class _Request(msgspec.Struct):
    uid: Any = UNSET
    kind: Any = UNSET
    resource: Any = UNSET
    subResource: Any = UNSET
    requestKind: Any = UNSET
    requestResource: Any = UNSET
    requestSubResource: Any = UNSET
    name: _Text = UNSET
    namespace: _Text = UNSET
    operation: _Text = UNSET
    userInfo: _UserInfo | None | UnsetType = UNSET
    object: _Pod | None | UnsetType = UNSET
    oldObject: Any = UNSET
    dryRun: Any = UNSET
    options: Any = UNSET


class _Review(msgspec.Struct):
    apiVersion: Any = UNSET
    kind: Any = UNSET
    request: _Request | None | UnsetType = UNSET


# The API's PodSpec and Container fields (Kubernetes 1.36; an EphemeralContainer also has
# targetContainerName): the typed decoder keeps these and drops others, as the structs above do.
POD_SPEC_FIELDS = (
    "activeDeadlineSeconds", "affinity", "automountServiceAccountToken", "containers", "dnsConfig", "dnsPolicy",
    "enableServiceLinks", "ephemeralContainers", "hostAliases", "hostIPC", "hostNetwork", "hostPID", "hostUsers",
    "hostname", "hostnameOverride", "imagePullSecrets", "initContainers", "nodeName", "nodeSelector", "os",
    "overhead", "preemptionPolicy", "priority", "priorityClassName", "readinessGates", "resourceClaims",
    "resources", "restartPolicy", "runtimeClassName", "schedulerName", "schedulingGates", "schedulingGroup",
    "securityContext", "serviceAccount", "serviceAccountName", "setHostnameAsFQDN", "shareProcessNamespace",
    "subdomain", "terminationGracePeriodSeconds", "tolerations", "topologySpreadConstraints", "volumes")
CONTAINER_FIELDS = (
    "args", "command", "env", "envFrom", "image", "imagePullPolicy", "lifecycle", "livenessProbe", "name", "ports",
    "readinessProbe", "resizePolicy", "resources", "restartPolicy", "restartPolicyRules", "securityContext",
    "startupProbe", "stdin", "stdinOnce", "terminationMessagePath", "terminationMessagePolicy", "tty",
    "volumeDevices", "volumeMounts", "workingDir")
EPHEMERAL_CONTAINER_FIELDS = (*CONTAINER_FIELDS, "targetContainerName")

# podshape's JSON types as msgspec types; null is accepted wherever podshape accepts it (everywhere).
_TYPED: dict[Any, Any] = {str: str | None, int: int | None, dict: dict[str, Any] | None,
                          "[map]": list[dict[str, Any]] | None, "[str]": list[str] | None}


def _shaped(name: str, fields: tuple[str, ...], table: dict[str, Any], **types: Any) -> Any:
    """A TypedDict of `fields`, those in podshape's `table` typed as it checks them (`types`
    overrides): decoded into a plain dict, in the body's order, by msgspec's C code."""
    annotations = {f: types.get(f, _TYPED[table[f]] if f in table else Any) for f in fields}
    return TypedDict(name, annotations, total=False)  # type: ignore[operator]  # fields known at run time


def _list_of(item: Any) -> Any:
    """`list[item] | None`, spelled so that mypy accepts a type made at run time."""
    return GenericAlias(list, (item,)) | None


_Container = _shaped("_Container", CONTAINER_FIELDS, podshape.CONTAINER)
_PodSpec = _shaped("_PodSpec", POD_SPEC_FIELDS, podshape.SPEC, containers=_list_of(_Container),
                   initContainers=_list_of(_Container), ephemeralContainers=_list_of(
                       _shaped("_EphemeralContainer", EPHEMERAL_CONTAINER_FIELDS, podshape.CONTAINER)))


class _ShapedObjectMeta(_ObjectMeta):
    labels: dict[str, Any] | None | UnsetType = UNSET
    annotations: dict[str, str] | None | UnsetType = UNSET  # podshape: values must be strings
    ownerReferences: list[dict[str, Any]] | None | UnsetType = UNSET


class _ShapedPod(_Pod):
    metadata: _ShapedObjectMeta | None | UnsetType = UNSET
    spec: _PodSpec | None | UnsetType = UNSET  # type: ignore[valid-type]  # a TypedDict made at run time


class _ShapedRequest(_Request):
    object: _ShapedPod | None | UnsetType = UNSET


class _ShapedReview(_Review):
    request: _ShapedRequest | None | UnsetType = UNSET


_DECODER = msgspec.json.Decoder(_Review)
_SHAPED_DECODER = msgspec.json.Decoder(_ShapedReview)
_META_FIELDS = tuple(f for f in _ObjectMeta.__struct_fields__ if f != "managedFields")


class Decoded(NamedTuple):
    request: AdmissionRequest
    shape_checked: bool  # the pod, if any, has the shape podshape.problem() accepts


def decode(body: bytes, content_type: str | None, max_bytes: int) -> Decoded:
    """The `request` of a valid AdmissionReview v1, or BadReview. Only the uid and, where it
    can, the pod's shape are checked here: the other fields are checked where they are read
    (see wire.py)."""
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    if mime != "application/json":
        raise BadReview(f"content type must be application/json, got {content_type or 'none'!r}")
    if len(body) > max_bytes:
        raise BadReview(f"body of {len(body)} bytes exceeds the limit of {max_bytes}")
    if not body:
        raise BadReview("empty body")
    review, shape_checked = _decode(body)
    if review.apiVersion != API_VERSION or review.kind != "AdmissionReview":
        raise BadReview(f"expected apiVersion {API_VERSION} kind AdmissionReview, got "
                        f"{_given(review.apiVersion)} {_given(review.kind)}")
    if not isinstance(review.request, _Request):
        raise BadReview("AdmissionReview has no request object")
    request = _fields(review.request, _Request.__struct_fields__)
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise BadReview("request.uid is missing or not a string")
    pod = request.get("object")
    if isinstance(pod, _Pod):
        pod = request["object"] = _fields(pod, _Pod.__struct_fields__)
        if isinstance(pod.get("metadata"), _ObjectMeta):
            pod["metadata"] = _fields(pod["metadata"], _META_FIELDS)
    if isinstance(request.get("userInfo"), _UserInfo):
        request["userInfo"] = _fields(request["userInfo"], _UserInfo.__struct_fields__)
    return Decoded(cast(AdmissionRequest, request), shape_checked)


def _decode(body: bytes) -> tuple[_Review, bool]:
    """The body as the structs above, the pod's shape checked when it has it, or BadReview.
    msgspec checks the UTF-8 of every string it builds; the skipped managedFields are checked
    here, in C (an ASCII body, the usual case, is valid UTF-8 as it is)."""
    try:
        if not body.isascii():
            body.decode()
        try:
            return _SHAPED_DECODER.decode(body), True
        except msgspec.ValidationError as exc:
            if "- at `$.request.object." not in str(exc):  # not below the pod: the same error either way
                raise
        return _DECODER.decode(body), False  # a pod field of another type: podshape names it
    except msgspec.ValidationError as exc:  # "Expected `object | null`, got `str` - at `$.request.object`"
        expected, at, where = str(exc).rpartition(" - at `")
        where = where.rstrip("`") if at else "$"  # msgspec names no path for the body itself
        if where == "$":
            raise BadReview("body must be a JSON object (an AdmissionReview)") from None
        if where == "$.request":
            raise BadReview("AdmissionReview has no request object") from None
        raise BadReview(f"{where.removeprefix('$.')}: {expected or exc}"[:300]) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise BadReview(f"body is not valid JSON: {str(exc)[:200]}") from None
    except RecursionError:
        raise BadReview("body is not valid JSON: nested too deeply") from None


def _given(value: object) -> str:
    """A field of the review as its error message shows it: quoted and cut, or `none` when the
    body left it out (msgspec's UNSET, which would otherwise print as 'UNSET')."""
    return "none" if value is UNSET else repr(str(value)[:64])


def _fields(struct: msgspec.Struct, names: tuple[str, ...]) -> dict[str, Any]:
    """The fields that were sent, as a dict."""
    out = {}
    for name in names:
        value = getattr(struct, name)
        if value is not UNSET:
            out[name] = value
    return out


def is_pod_create(request: AdmissionRequest) -> bool:
    kind = request.get("kind")
    return (isinstance(kind, dict) and kind.get("kind") == "Pod" and kind.get("group", "") == ""
            and request.get("operation") == "CREATE" and not request.get("subResource"))

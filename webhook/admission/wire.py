"""The AdmissionReview v1 wire format, as TypedDicts: what the API server sends and what podmedic
answers (kopf types its reviews the same way). Types only, no code.

The request is untrusted input: `decode()` checks what every answer needs (a JSON object with a
non-empty string `uid`; the names the audit line copies are strings or null) and the reader
checks each other field where it reads it, so every other field may be absent or of any type
at run time. The fields name what the API server sends; those podmedic never reads are left
out.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, Required, TypedDict

ApiVersion = Literal["admission.k8s.io/v1"]
Operation = Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]


class GroupVersionKind(TypedDict):
    group: str
    version: str
    kind: str


class UserInfo(TypedDict, total=False):
    username: str
    uid: str
    groups: list[str]


class AdmissionRequest(TypedDict, total=False):
    uid: Required[str]  # decode() checks it
    kind: GroupVersionKind
    subResource: str
    name: str
    namespace: str
    operation: Operation
    userInfo: UserInfo
    dryRun: bool
    object: dict[str, Any]


class AdmissionReviewRequest(TypedDict):
    apiVersion: ApiVersion
    kind: Literal["AdmissionReview"]
    request: AdmissionRequest


class ResponseStatus(TypedDict):
    code: int
    message: str


class AdmissionResponse(TypedDict):
    uid: str
    allowed: bool
    status: NotRequired[ResponseStatus]   # only when denied
    patchType: NotRequired[Literal["JSONPatch"]]
    patch: NotRequired[str]               # base64 of the JSON patch
    warnings: NotRequired[list[str]]
    auditAnnotations: NotRequired[dict[str, str]]


class AdmissionReviewResponse(TypedDict):
    apiVersion: ApiVersion
    kind: Literal["AdmissionReview"]
    response: AdmissionResponse


class Status(TypedDict):
    """The body of a 400: a meta/v1 Status, which the API server logs."""

    kind: Literal["Status"]
    apiVersion: Literal["v1"]
    status: Literal["Failure"]
    code: int
    reason: Literal["BadRequest"]
    message: str

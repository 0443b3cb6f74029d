"""AdmissionReview v1 in, AdmissionReview v1 out: the webhook's pure core.

No Flask, no sockets: `handle()` takes the raw body and its content type and returns the HTTP
status, the JSON answer and the audit record. The HTTP shell (app.py) only moves bytes. Every
failure path is explicit: a malformed review gets a 400 naming the problem (the API server
logs it), never a 500 or a traceback; a review that cannot be injected safely is allowed
unpatched with a warning.
"""

from __future__ import annotations

import base64
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import orjson

from webhook import engine, podshape, verify
from webhook.config import GlobalConfig
from webhook.memo import PlanMemo
from webhook.namespaces import Lookup
from webhook.reasons import Reason
from webhook.report import Decision, Report

API_VERSION = "admission.k8s.io/v1"
log = logging.getLogger(__name__)


class BadReview(ValueError):
    """The body is not a usable AdmissionReview; the message names the problem."""


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    audit: dict[str, Any] | None = None
    report: Report = field(default_factory=Report)


def decode(body: bytes, content_type: str | None, max_bytes: int) -> dict[str, Any]:
    """The `request` of a valid AdmissionReview v1, or BadReview."""
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    if mime != "application/json":
        raise BadReview(f"content type must be application/json, got {content_type or 'none'!r}")
    if len(body) > max_bytes:
        raise BadReview(f"body of {len(body)} bytes exceeds the limit of {max_bytes}")
    if not body:
        raise BadReview("empty body")
    try:
        review = orjson.loads(body)
    except ValueError as exc:  # orjson.JSONDecodeError, also for nesting beyond 1024 levels
        raise BadReview(f"body is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(review, dict):
        raise BadReview("body must be a JSON object (an AdmissionReview)")
    if review.get("apiVersion") != API_VERSION or review.get("kind") != "AdmissionReview":
        raise BadReview(f"expected apiVersion {API_VERSION} kind AdmissionReview, got "
                        f"{str(review.get('apiVersion'))[:64]!r} {str(review.get('kind'))[:64]!r}")
    request = review.get("request")
    if not isinstance(request, dict):
        raise BadReview("AdmissionReview has no request object")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise BadReview("request.uid is missing or not a string")
    return request


def is_pod_create(request: dict[str, Any]) -> bool:
    kind = request.get("kind")
    return (isinstance(kind, dict) and kind.get("kind") == "Pod" and kind.get("group", "") == ""
            and request.get("operation") == "CREATE" and not request.get("subResource"))


def encode_patch(ops: list[dict[str, Any]]) -> bytes:
    """The JSON patch as sent (compact UTF-8); verified in this form, then base64-encoded."""
    return orjson.dumps(ops)


def response(uid: str, *, patch: bytes | None = None, warnings: list[str] | None = None,
             audit_annotations: dict[str, str] | None = None, denied: str | None = None) -> dict[str, Any]:
    """The AdmissionReview answer: patchType only when something changes (`patch` is the
    encoded JSON patch)."""
    resp: dict[str, Any] = {"uid": uid, "allowed": denied is None}
    if denied is not None:
        resp["status"] = {"code": 403, "message": denied}
    if patch:
        resp["patchType"] = "JSONPatch"
        resp["patch"] = base64.b64encode(patch).decode()
    if warnings:
        resp["warnings"] = warnings
    if audit_annotations:
        resp["auditAnnotations"] = audit_annotations
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": resp}


def error_body(message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 400,
            "reason": "BadRequest", "message": message}


def _summary(report: Report) -> str:
    """A compact auditAnnotation value: `app=probes; app/logs=psa-forbids-hostpath`."""
    injected = [f"{d.container}={d.feature}" for d in report.decisions if d.applied]
    skipped = [f"{d.container or '-'}/{d.feature}={d.reason.value}" for d in report.decisions
               if not d.applied and d.reason.warn]  # type: ignore[attr-defined]
    return "; ".join(filter(None, ("injected: " + ", ".join(injected) if injected else "",
                                   "skipped: " + ", ".join(skipped) if skipped else ""))) or "unchanged"


def _owner(metadata: dict[str, Any]) -> str | None:
    for ref in metadata.get("ownerReferences") or []:
        if isinstance(ref, dict) and ref.get("controller"):
            return f"{ref.get('kind')}/{ref.get('name')}"
    return None


def _audit(request: dict[str, Any], report: Report, ops: int, outcome: str, cached: bool = False) -> dict[str, Any]:
    obj = request.get("object") if isinstance(request.get("object"), dict) else {}
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    user = request.get("userInfo") if isinstance(request.get("userInfo"), dict) else {}
    return {
        "uid": request.get("uid"),
        "namespace": request.get("namespace"),
        "name": metadata.get("name") or request.get("name") or None,
        "generateName": metadata.get("generateName"),
        "owner": _owner(metadata),
        "user": user.get("username"),
        "operation": request.get("operation"),
        "dry_run": bool(request.get("dryRun")),
        "decisions": [d.as_dict() for d in report.decisions],
        "patch_ops": ops,
        "cached": cached,
        "outcome": outcome,
    }


@dataclass(frozen=True)
class Plan:
    """The engine's verified answer for one pod: what the memo keeps per template."""

    patch: bytes | None  # the encoded JSON patch, verified; None when nothing changes
    op_count: int
    report: Report
    denied: str | None = None


# What a kept plan takes besides its key and patch bytes: its report's objects and the memo's
# entry (about 6 KB for a typical pod, measured with tracemalloc), so the budget is real memory.
PLAN_OVERHEAD_BYTES = 6144


def plan(pod: dict[str, Any], lookup: Lookup, config: GlobalConfig) -> tuple[Plan, int | None]:
    """Engine, encoding and verification (which applies the patch to `pod` in place), and the
    plan's size for the memo. The size is None (not kept) for a plan without a patch, cheap to
    make again and most often a pod of a namespace that is not opted in, and when a mutator
    failed, so that a failure is never replayed from memory and is logged every time."""
    outcome = engine.inject(pod, lookup, config)
    report = outcome.report
    complete = not any(d.reason is Reason.MUTATOR_ERROR for d in report.decisions)
    if outcome.denied:
        return Plan(None, 0, report, outcome.denied), None
    patch = encode_patch(outcome.ops) if outcome.ops else None
    if patch:
        try:
            verify.apply(pod, patch)  # in place: name, generateName and owner stay as sent
        except verify.PatchRejected as exc:
            report.add(Decision("pod", None, Reason.VERIFY_FAILED, str(exc)[:300]))
            patch = None
    size = len(patch or b"") + PLAN_OVERHEAD_BYTES
    return Plan(patch, len(outcome.ops) if patch else 0, report), size if complete and patch else None


def review(request: dict[str, Any], namespaces: Callable[[str], Lookup], config: GlobalConfig,
           plans: PlanMemo[Plan] | None = None) -> Answer:
    """Decide on one decoded request. Never raises for any request shape. `plans`: the
    worker's memo of plans by pod template (None: plan every pod, as the CLI does)."""
    uid = request["uid"]
    if not is_pod_create(request):
        report = Report([Decision("pod", None, Reason.NOT_A_POD_CREATE)])
        return Answer(200, response(uid), _audit(request, report, 0, "ignored"), report)
    pod = request.get("object")
    if pod is None:
        raise BadReview("request.object is missing")
    shape_problem = podshape.problem(pod)
    if shape_problem:
        raise BadReview(shape_problem)
    namespace = request.get("namespace") or (pod.get("metadata") or {}).get("namespace") or ""
    try:
        lookup = namespaces(str(namespace))
        ns = lookup.namespace
        # The pods of namespaces that are not opted in reach the webhook too: no memo key for them.
        if plans is not None and ns is not None and engine.inject_switch(ns, config) == "enabled":
            planned, cached = plans.plan(ns, pod, lambda: plan(pod, lookup, config))
        else:
            planned, cached = plan(pod, lookup, config)[0], False
    except Exception:  # a bug outside the per-feature isolation: never a 500, never a broken pod
        log.exception("engine failed for review %s", uid)
        denied = "podmedic: internal error" if config.on_error == "deny" else None
        planned, cached = Plan(None, 0, Report([Decision("pod", None, Reason.MUTATOR_ERROR)]), denied), False
    report = planned.report
    if planned.denied:
        return Answer(200, response(uid, denied=planned.denied), _audit(request, report, 0, "denied", cached), report)
    audit_record = _audit(request, report, planned.op_count, "patched" if planned.patch else "unchanged", cached)
    answer = response(uid, patch=planned.patch, warnings=report.warnings(config.prefix),
                      audit_annotations={"podmedic": _summary(report)})
    return Answer(200, answer, audit_record, report)


def too_late(request: dict[str, Any], config: GlobalConfig) -> Answer:
    """The review waited past podmedic's deadline: answer now, allowed and unpatched, rather
    than let the API server's timeoutSeconds expire (which would fail or skip the call silently)."""
    report = Report([Decision("pod", None, Reason.DEADLINE_EXCEEDED)])
    body = response(request["uid"], warnings=report.warnings(config.prefix),
                    audit_annotations={"podmedic": Reason.DEADLINE_EXCEEDED.value})
    return Answer(200, body, _audit(request, report, 0, "deadline-exceeded"), report)


def handle(body: bytes, content_type: str | None, namespaces: Callable[[str], Lookup],
           config: GlobalConfig, *, late: bool = False, plans: PlanMemo[Plan] | None = None) -> Answer:
    """Body bytes to answer, with latency recorded in the audit record. `late`: the request
    already waited past the review deadline in the server's queue."""
    started = time.perf_counter()
    try:
        request = decode(body, content_type, config.max_request_bytes)
        answer = too_late(request, config) if late else review(request, namespaces, config, plans)
    except BadReview as exc:
        return Answer(400, error_body(str(exc)), {"outcome": "bad-request", "error": str(exc)})
    if answer.audit is not None:
        answer.audit["latency_ms"] = round((time.perf_counter() - started) * 1000, 3)
    return answer

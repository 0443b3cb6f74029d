"""AdmissionReview v1 in, AdmissionReview v1 out: the webhook's pure core.

No Flask, no sockets: `handle()` takes the raw body and its content type and returns the HTTP
status, the JSON answer and the audit record. The HTTP shell (webhook.server.app) only moves bytes. Every
failure path is explicit: a malformed review gets a 400 naming the problem (the API server
logs it), never a 500 or a traceback; a review that cannot be injected safely is allowed
unpatched with a warning.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from webhook import engine
from webhook.admission import podshape
from webhook.admission.audit_record import audit_record, summary
from webhook.admission.decode import BadReview, decode, is_pod_create
from webhook.admission.memo import PlanMemo
from webhook.admission.plan import Plan, plan
from webhook.admission.responses import error_body, response
from webhook.admission.wire import AdmissionRequest, AdmissionReviewResponse, Status
from webhook.engine.config import GlobalConfig
from webhook.engine.decisions import Decision, Reason, Report
from webhook.engine.namespace import Lookup

log = logging.getLogger(__name__)


@dataclass
class Answer:
    status: int
    body: AdmissionReviewResponse | Status
    audit: dict[str, Any] | None = None
    report: Report = field(default_factory=Report)


def review(request: AdmissionRequest, namespaces: Callable[[str], Lookup], config: GlobalConfig,
           plans: PlanMemo[Plan] | None = None, shape_checked: bool = False) -> Answer:
    """Decide on one decoded request. Never raises for any request shape. `plans`: the
    worker's memo of plans by pod template (None: plan every pod, as the CLI does);
    `shape_checked`: decode() found the pod shaped as podshape.problem() accepts."""
    uid = request["uid"]
    if not is_pod_create(request):
        report = Report([Decision("pod", None, Reason.NOT_A_POD_CREATE)])
        return Answer(200, response(uid), audit_record(request, report, 0, "ignored"), report)
    pod = request.get("object")
    if pod is None:
        raise BadReview("request.object is missing")
    shape_problem = None if shape_checked else podshape.problem(pod)
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
    except Exception as exc:  # a bug outside the per-feature isolation: never a 500, never a broken pod
        if _integer_beyond_64_bits(exc):
            raise BadReview("request.object holds an integer beyond 64 bits") from None
        log.exception("engine failed for review %s", uid)
        denied = "podmedic: internal error" if config.on_error == "deny" else None
        planned, cached = Plan(None, 0, Report([Decision("pod", None, Reason.MUTATOR_ERROR)]), denied), False
    report = planned.report
    if planned.denied:
        return Answer(200, response(uid, denied=planned.denied), audit_record(request, report, 0, "denied", cached), report)
    record = audit_record(request, report, planned.op_count, "patched" if planned.patch else "unchanged", cached)
    answer = response(uid, patch=planned.patch, warnings=report.warnings(config.prefix),
                      audit_annotations={"podmedic": summary(report)})
    return Answer(200, answer, record, report)


def _integer_beyond_64_bits(exc: Exception) -> bool:
    """orjson's error for an integer it cannot write (in the memo key, the patch or the marker):
    JSON's integers are unbounded and the decoder keeps them as sent. The API server never sends
    one (its integers are Go's), so this is malformed input, not a bug."""
    return isinstance(exc, TypeError) and "64-bit" in str(exc)


def too_late(request: AdmissionRequest, config: GlobalConfig) -> Answer:
    """The review waited past podmedic's deadline: answer now, allowed and unpatched, rather
    than let the API server's timeoutSeconds expire (which would fail or skip the call silently)."""
    report = Report([Decision("pod", None, Reason.DEADLINE_EXCEEDED)])
    body = response(request["uid"], warnings=report.warnings(config.prefix),
                    audit_annotations={"podmedic": Reason.DEADLINE_EXCEEDED.value})
    return Answer(200, body, audit_record(request, report, 0, "deadline-exceeded"), report)


def handle(body: bytes, content_type: str | None, namespaces: Callable[[str], Lookup],
           config: GlobalConfig, *, late: bool = False, plans: PlanMemo[Plan] | None = None) -> Answer:
    """Body bytes to answer, with latency recorded in the audit record. `late`: the request
    already waited past the review deadline in the server's queue."""
    started = time.perf_counter()
    try:
        request, shape_checked = decode(body, content_type, config.max_request_bytes)
        answer = too_late(request, config) if late else review(request, namespaces, config, plans, shape_checked)
    except BadReview as exc:
        return Answer(400, error_body(str(exc)), {"outcome": "bad-request", "error": str(exc)})
    if answer.audit is not None:
        answer.audit["latency_ms"] = round((time.perf_counter() - started) * 1000, 3)
    return answer

"""The audit record of one review: one JSON line (server.audit writes it) and the compact
auditAnnotation value, both renderings of the same decisions.
"""

from __future__ import annotations

from typing import Any, Literal

from webhook.admission.wire import AdmissionRequest
from webhook.engine.decisions import SCOPE_NAMES, Reason, Report, as_dicts

# How a review ended: the audit line's `outcome` and the label of podmedic_reviews_total. The one
# list: docs/observability.md shows it (tests/test_docs.py holds the two together).
Outcome = Literal["patched", "unchanged", "ignored", "denied", "deadline-exceeded", "bad-request"]


def summary(report: Report) -> str:
    """A compact auditAnnotation value: `app=probes; app/logs=psa-forbids-hostpath`. Built from
    plain strings (the reason's `code`, the feature's name from `SCOPE_NAMES`) and with
    `Reason.INJECTED` read once: an enum member's `.value` and an Enum class attribute are
    Python-level work, and a large pod has 80 decisions per review."""
    injected, skipped = [], []
    applied = Reason.INJECTED
    for feature, container, reason, _, _ in report.decisions:
        if reason is applied:
            injected.append(f"{container}={SCOPE_NAMES[feature]}")
        elif reason.warn:
            skipped.append(f"{container or '-'}/{SCOPE_NAMES[feature]}={reason.code}")
    return "; ".join(filter(None, ("injected: " + ", ".join(injected) if injected else "",
                                   "skipped: " + ", ".join(skipped) if skipped else ""))) or "unchanged"


def _owner(metadata: dict[str, Any]) -> str | None:
    for ref in metadata.get("ownerReferences") or []:
        if isinstance(ref, dict) and ref.get("controller"):
            return f"{ref.get('kind')}/{ref.get('name')}"
    return None


def _map(value: object) -> dict[str, Any]:
    """A field of the untrusted request that should be a map, or {} (see wire.py)."""
    return value if isinstance(value, dict) else {}


def audit_record(request: AdmissionRequest, report: Report, ops: int, outcome: Outcome, cached: bool = False) -> dict[str, Any]:
    metadata = _map(_map(request.get("object")).get("metadata"))
    user = _map(request.get("userInfo"))
    return {
        "uid": request.get("uid"),
        "namespace": request.get("namespace"),
        "name": metadata.get("name") or request.get("name") or None,
        "generateName": metadata.get("generateName"),
        "owner": _owner(metadata),
        "user": user.get("username"),
        "operation": request.get("operation"),
        "dry_run": bool(request.get("dryRun")),
        "decisions": as_dicts(report.decisions),
        "patch_ops": ops,
        "cached": cached,
        "outcome": outcome,
    }

"""The audit record of one review: one JSON line (server.audit writes it) and the compact
auditAnnotation value, both renderings of the same decisions.
"""

from __future__ import annotations

from typing import Any

from webhook.engine.decisions import Report


def summary(report: Report) -> str:
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


def audit_record(request: dict[str, Any], report: Report, ops: int, outcome: str, cached: bool = False) -> dict[str, Any]:
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

"""Planning one pod: the engine's operations, encoded and verified by applying them to the pod
as sent. A plan is what the memo keeps per pod template.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from webhook import engine
from webhook.admission import verify
from webhook.admission.responses import encode_patch
from webhook.engine.config import GlobalConfig
from webhook.engine.decisions import Decision, Reason, Report
from webhook.engine.namespace import Lookup

log = logging.getLogger(__name__)


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


def plan(pod: dict[str, Any], lookup: Lookup, config: GlobalConfig,
         offline: bool = False) -> tuple[Plan, int | None]:
    """Engine, encoding and verification (which applies the patch to `pod` in place), and the
    plan's size for the memo. The size is None (not kept) for a plan without a patch, cheap to
    make again and most often a pod of a namespace that is not opted in, and when a mutator
    failed, so that a failure is never replayed from memory and is logged every time. `offline`:
    the CLI's template, not an admitted pod (engine.inject)."""
    outcome = engine.inject(pod, lookup, config, offline)
    report = outcome.report
    failed = Reason.MUTATOR_ERROR  # read once: an Enum class attribute costs more than the test per decision
    complete = not any(d.reason is failed for d in report.decisions)
    if outcome.denied:
        return Plan(None, 0, report, outcome.denied), None
    patch = encode_patch(outcome.ops) if outcome.ops else None
    if patch:
        try:
            verify.apply(pod, patch)  # in place: name, generateName and owner stay as sent
        except verify.PatchRejected as exc:
            report.add(Decision("pod", None, Reason.VERIFY_FAILED, str(exc)[:300]))
            patch = None
        except Exception as exc:  # a bug in a rule (a field it did not expect): unverified, so not sent
            log.exception("verifying the patch failed")
            report.add(Decision("pod", None, Reason.VERIFY_FAILED, f"verification error: {type(exc).__name__}"))
            patch = None
    size = len(patch or b"") + PLAN_OVERHEAD_BYTES
    return Plan(patch, len(outcome.ops) if patch else 0, report), size if complete and patch else None

"""Decisions as data: what podmedic did or skipped, for which container, and why.

One Decision per (container, feature). The audit line, the AdmissionResponse's warnings and
auditAnnotations, the metrics and `podmedic explain` are all renderings of the same list.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from webhook.reasons import Reason
from webhook.settings import Level

FEATURES = ("probes", "supervisor", "logs", "forensics")


@dataclass(frozen=True)
class Decision:
    feature: str          # one of FEATURES, or "pod" for whole-pod decisions, "settings" for annotations
    container: str | None
    reason: Reason
    detail: str = ""      # what was injected, or the precise problem
    level: Level = Level.GLOBAL  # which configuration layer decided

    @property
    def applied(self) -> bool:
        return self.reason is Reason.INJECTED

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"feature": self.feature, "applied": self.applied, "reason": self.reason.value}
        if self.container is not None:
            out["container"] = self.container
        if self.detail:
            out["detail"] = self.detail
        out["level"] = self.level.value
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
            if d.reason.warn:  # type: ignore[attr-defined]
                where = f"container {d.container}: " if d.container else ""
                text = d.reason.render(prefix)
                out.append(f"podmedic: {where}{d.feature}: {text}" + (f" ({d.detail})" if d.detail else ""))
        return out

    def injected(self) -> bool:
        return any(d.applied for d in self.decisions)

"""Where a pod may run, from what it requires of the nodes' labels: the node selector and the
required node affinity. The engine asks it for the OS (podmedic's toolbox and init containers
are Linux only) and for the architecture (its static binaries exist for toolbox.architectures).

Only what *requires* a node counts: preferred affinity weighs nodes, decides nothing. The pod's
spec is tenant input the API server validates after admission, so a malformed term never raises
here and never rules a node out: an expression whose values are not a list of strings is ignored.
A node selector's value that is no string matches no node, so it names none of ours.
"""

from __future__ import annotations

from typing import Any

# The node labels that name a node's OS and architecture (the beta ones are deprecated but still
# matched by old manifests).
OS_LABELS = ("kubernetes.io/os", "beta.kubernetes.io/os")
ARCH_LABELS = ("kubernetes.io/arch", "beta.kubernetes.io/arch")


def foreign_arch(spec: dict[str, Any], architectures: frozenset[str] | None) -> str:
    """What says the pod runs only on node architectures outside `architectures` (the decision's
    detail), or "" (always with None: the toolbox's are not known). A pod without a node
    selector or affinity (most pods) costs two dict gets."""
    if architectures is None:
        return ""
    selector = spec.get("nodeSelector")
    if selector:
        for label in ARCH_LABELS:
            value = selector.get(label)
            if value is not None and (not isinstance(value, str) or value not in architectures):
                return f"nodeSelector {label}={value}; toolbox.architectures: {', '.join(sorted(architectures))}"
    affinity = spec.get("affinity")
    if affinity and affinity_excludes(affinity, ARCH_LABELS, architectures):
        return ("required node affinity on kubernetes.io/arch allows none of toolbox.architectures: "
                + ", ".join(sorted(architectures)))
    return ""


def affinity_excludes(affinity: dict[str, Any], labels: tuple[str, ...], allowed: frozenset[str]) -> bool:
    """Whether every required node selector term rules out each of the `allowed` values of the
    node label `labels` names: the terms are ORed, so one that lets the pod land on such a node is
    enough."""
    node = affinity.get("nodeAffinity")
    required = node.get("requiredDuringSchedulingIgnoredDuringExecution") if isinstance(node, dict) else None
    terms = required.get("nodeSelectorTerms") if isinstance(required, dict) else None
    if not terms or not isinstance(terms, list):
        return False
    return all(isinstance(term, dict) and not _term_allows(term, labels, allowed) for term in terms)


def _term_allows(term: dict[str, Any], labels: tuple[str, ...], allowed: frozenset[str]) -> bool:
    """Whether a node with one of the `allowed` values meets the term's expressions on `labels`:
    they are ANDed, so what In keeps and NotIn leaves of `allowed` must not be empty (In [amd64,
    arm64] with NotIn [arm64] leaves amd64 only). Other operators (Exists; DoesNotExist, which a
    node without the deprecated beta label meets) rule no value out, nor does a malformed
    expression (values not a list of strings: `values: "arm64"` is not [arm64])."""
    expressions = term.get("matchExpressions")
    if not isinstance(expressions, list):
        return True
    left = allowed
    for expression in expressions:
        if not isinstance(expression, dict) or expression.get("key") not in labels:
            continue
        raw = expression.get("values")
        if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
            continue
        values = set(raw)
        operator = expression.get("operator")
        if operator == "In":
            left = left & values
        elif operator == "NotIn":
            left = left - values
    return bool(left)

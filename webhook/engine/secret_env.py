"""Which of a container's environment variables hold a Secret's value, for the forensics
collector: it writes the app's environment and its processes' command lines into a bundle on a
shared log directory, and its own rule (redact names that look secret: PASSWORD, TOKEN...)
misses a Secret delivered as DATABASE_URL or DSN, or through envFrom under any key names.

Only the webhook knows where a value comes from: env[].valueFrom.secretKeyRef names one
variable; envFrom[].secretRef brings every key of a Secret, unknown at admission, under its
prefix (an empty prefix: every name). env[].valueFrom.fileKeyRef (Kubernetes 1.34+) counts as a
Secret's too: its value is read from a file in a volume when the container starts, unseen here,
and such files are typically what an init container fetched from a vault. An explicit env entry
overrides envFrom, so a name the container declares with a literal value, a fieldRef, a
resourceFieldRef or a configMapKeyRef is not a Secret's even under such a prefix: those are the
plain names. Over-redaction is the safe
error: a name both a Secret's and declared plainly (twice in env) counts as a Secret's, and a
configMapRef after a secretRef may override keys nobody can see here, and a list too long for
one argument gives way to every name (FLAG_MAX).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from webhook.toolbox import argv as toolbox

# Each list is one argument, and Linux refuses an argument over MAX_ARG_STRLEN (128 KiB): the
# container would not start. The flags are on two command lines (the wrapper's and the preStop's),
# each within the exec's ARG_MAX (2 MiB with the usual 8 MiB stack) beside the container's
# environment: 32 KiB a list (about 850 names of 38 characters) leaves room for all of that.
# Longer: the safe side, every name (--redact-env-prefix=), and no --plain-env.
FLAG_MAX = 32 * 1024
# A valueFrom whose value the collector must not write: a Secret's key, or a file's (see above).
_SECRET_SOURCES = frozenset(("secretKeyRef", "fileKeyRef"))

def collector_flags(spec: Mapping[str, Any]) -> tuple[str, ...]:
    """The collector's flags for this container's Secret-sourced variables (toolbox.redact_flags);
    () for a container without any, the common case, which must stay near free (_any_value_from):
    Target.redact_flags() asks once per container for the wrapper and the preStop."""
    env, env_from = spec.get("env"), spec.get("envFrom")
    if not env_from and not (env and _any_value_from(env)):
        return ()
    names: list[str] = []
    plain: list[str] = []
    for entry in env if isinstance(env, list) else ():
        name = entry.get("name") if isinstance(entry, dict) else None
        if isinstance(name, str):
            source = entry.get("valueFrom")
            (names if isinstance(source, dict) and _SECRET_SOURCES.intersection(source) else plain).append(name)
    prefixes = [_prefix(entry) for entry in env_from if isinstance(entry, dict) and "secretRef" in entry] \
        if isinstance(env_from, list) else []
    if not names and not prefixes:
        return ()
    secret = set(names)
    plain = [name for name in plain if name not in secret]
    if _too_long(names) or _too_long(prefixes):
        names, prefixes = [], [""]
    return toolbox.redact_flags(names, prefixes, [] if _too_long(plain) else plain)


def _too_long(items: list[str]) -> bool:
    """Would "=".join(items) as one argument be over FLAG_MAX?"""
    return sum(map(len, items)) + len(items) > FLAG_MAX


def _any_value_from(env: Any) -> bool:
    """Has an entry of env a valueFrom (a Secret's perhaps)? Most have only name and value, and a
    20-container pod has hundreds: this plain loop is the cheapest test (faster than any() over a
    map in C). Anything odd (an entry that is no mapping) takes the full walk."""
    try:
        for entry in env:
            if "valueFrom" in entry:
                return True
    except TypeError:
        return True
    return False


def _prefix(env_from: Mapping[str, Any]) -> str:
    """The prefix an envFrom secretRef puts before the Secret's keys; none (or no string) is the
    empty prefix, which every name has: the Secret's keys are unknown at admission."""
    prefix = env_from.get("prefix")
    return prefix if isinstance(prefix, str) else ""

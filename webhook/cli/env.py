"""The environment equivalents of the command-line flags (each flag's help names its variable):
one reading of them for every command."""

from __future__ import annotations

import os
from typing import Any

_FLAG = {"true": True, "1": True, "false": False, "0": False, "": False}


def env(name: str, default: Any = None) -> Any:
    """The variable's value, else `default` (a flag's default when the variable is unset)."""
    return os.environ.get(name, default)


def env_flag(name: str) -> bool:
    """A boolean variable: true/1 or false/0 (any case), unset or empty is false. Anything else
    is a ValueError naming it, so PODMEDIC_QUARANTINE_DRY_RUN=0 never turns dry-run on and a
    typo never silently means either."""
    raw = os.environ.get(name, "")
    try:
        return _FLAG[raw.strip().lower()]
    except KeyError:
        raise ValueError(f"{name}={raw!r}: expected true, false, 1 or 0") from None

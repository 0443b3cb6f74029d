"""Resource quantities (resource.Quantity) read the way the API server does, exactly: the
quarantine's pre-flight sums them, the engine compares a container's requests to its limits
(init_resources: the pod's QoS class). Pure.
"""

from __future__ import annotations

import re
from fractions import Fraction


_QUANTITY = re.compile(r"^([+-]?[0-9.]+)(([eE][+-]?[0-9]+)|(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?)$")
_SUFFIX = {None: Fraction(1), "n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000),
           "k": Fraction(10**3), "M": Fraction(10**6), "G": Fraction(10**9), "T": Fraction(10**12),
           "P": Fraction(10**15), "E": Fraction(10**18), "Ki": Fraction(2**10), "Mi": Fraction(2**20),
           "Gi": Fraction(2**30), "Ti": Fraction(2**40), "Pi": Fraction(2**50), "Ei": Fraction(2**60)}


# The largest decimal exponent read. The API server keeps no quantity beyond 2^63-1 (about 9e18)
# or finer than 1n, so any value past 1e±100 is out of range either way; and the exact power
# of 1e10000000 takes seconds to compute (a larger one, forever), where a manifest given to the
# offline CLI may carry one.
_MAX_EXPONENT = 100


def quantity(raw: str | int | float) -> Fraction:
    """A resource.Quantity ("100m", "1Gi", "1e3", "2") as an exact number; ValueError otherwise."""
    match = _QUANTITY.match(str(raw).strip())
    if not match:
        raise ValueError(f"not a quantity: {raw!r}")
    number = Fraction(match.group(1))
    if match.group(3):
        exponent = int(match.group(3)[1:])
        if abs(exponent) > _MAX_EXPONENT:
            raise ValueError(f"quantity out of range: {raw!r}")
        return number * Fraction(10) ** exponent
    return number * _SUFFIX[match.group(4)]

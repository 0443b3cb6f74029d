"""Resource quantities read as the API server reads them, and input it would never send (the
offline CLI reads manifests as written) answered with a ValueError, at once."""

from __future__ import annotations

from fractions import Fraction

import pytest

from webhook.engine.quantity import quantity


@pytest.mark.parametrize("raw, expected", [
    ("100m", Fraction(1, 10)), ("1Gi", 2**30), ("1e3", 1000), ("2", 2), (2, 2), ("0.5", Fraction(1, 2)),
    ("500000n", Fraction(1, 2000)), ("1E-3", Fraction(1, 1000)), ("1e100", 10**100),
])
def test_a_quantity_is_read_exactly(raw, expected):
    assert quantity(raw) == expected


@pytest.mark.parametrize("raw", ["", "1Gx", "lots", "1e101", "1e-101", "1e10000000"])
def test_what_is_no_quantity_or_out_of_range_is_a_value_error(raw):
    """1e10000000 took 6 s to compute exactly, and a larger exponent never finished: a hang of
    `podmedic inject` on one manifest value."""
    with pytest.raises(ValueError):
        quantity(raw)

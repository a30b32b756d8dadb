"""Kubernetes resource quantities (``500m``, ``1.5Gi``, ``2e3``) as floats.

kubernetes-asyncio has no quantity parser; this one follows
``k8s.io/apimachinery/pkg/api/resource`` suffixes: decimal SI (n u m k M G T P E),
binary SI (Ki Mi Gi Ti Pi Ei) and decimal exponents (e/E).
"""

from __future__ import annotations

import re

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "": 1.0,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
}
_QUANTITY = re.compile(
    r"^(?P<number>[+-]?(?:\d+\.?\d*|\.\d+))(?:(?P<exp>[eE][+-]?\d+)|(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?)$"
)


class QuantityError(ValueError):
    """A string that is not a Kubernetes quantity."""


def parse_quantity(value: str | int | float) -> float:
    """Parse a quantity; numbers pass through unchanged."""
    if isinstance(value, bool):
        raise QuantityError(f"not a quantity: {value!r}")
    if isinstance(value, int | float):
        return float(value)
    text = value.strip()
    match = _QUANTITY.match(text)
    if match is None:
        raise QuantityError(f"not a quantity: {value!r}")
    number = float(match.group("number"))
    if match.group("exp"):
        return number * float(10 ** int(match.group("exp")[1:]))
    suffix = match.group("suffix") or ""
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    return number * _DECIMAL[suffix]

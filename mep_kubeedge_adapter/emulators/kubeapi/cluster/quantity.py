"""Kubernetes resource quantities for the cluster's scheduler and metrics-server.

Written here from the quantity format (``resource.Quantity``: a decimal number, optionally
with an exponent, then a binary suffix ``Ki``…``Ei`` or a decimal one ``n u m k M G T P E``),
independent of any parser the code under test has.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Final

__all__ = ["cpu_nanocores", "memory_bytes", "parse_quantity"]

_BINARY: Final = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL: Final = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
_FORM: Final = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")


def parse_quantity(text: str | int | float) -> Decimal:
    """The quantity's value in base units (cores, bytes, pods)."""
    match = _FORM.match(str(text).strip())
    if match is None:
        raise ValueError(f"not a quantity: {text!r}")
    number, suffix = match.groups()
    try:
        value = Decimal(number)
    except InvalidOperation as e:
        raise ValueError(f"not a quantity: {text!r}") from e
    if suffix in _BINARY:
        return value * _BINARY[suffix]
    if suffix in _DECIMAL:
        return value * _DECIMAL[suffix]
    raise ValueError(f"unknown quantity suffix in {text!r}")


def cpu_nanocores(text: str | int | float) -> int:
    return int(parse_quantity(text) * Decimal("1e9"))


def memory_bytes(text: str | int | float) -> int:
    return int(parse_quantity(text))

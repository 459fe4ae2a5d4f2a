"""Kubernetes resource quantities: parse to numbers, format canonically.

The grammar is Kubernetes' own (`resource.ParseQuantity`): an optionally signed
decimal number followed by a binary suffix (Ki..Ei), a decimal suffix (n, u, m,
k, M, G, T, P, E) or a decimal exponent (e3, E-2). Canonical output matters: the
apiserver stores quantities in canonical form, and rendering the same form keeps
an unchanged spec from looking like drift.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

_SUFFIXES = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("0.001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}
# The same grammar as an OpenAPI pattern (Go RE2: `$` is the end of the text).
QUANTITY_PATTERN = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([KMGTPE]i|[numkMGTPE]|[eE][+-]?[0-9]+)?$"
_PATTERN = re.compile(
    r"(?P<number>[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+))"
    r"(?P<suffix>[KMGTPE]i|[numkMGTPE]|[eE][+-]?[0-9]+)?"
)

KiB = 2**10
MiB = 2**20
GiB = 2**30
TiB = 2**40


class QuantityError(ValueError):
    pass


def parse_quantity(value: str | int | float) -> Decimal:
    """'2Gi' -> 2147483648, '500m' -> 0.5, '1e3' -> 1000. Raises QuantityError on
    anything else (also on a bool, NaN or infinity)."""
    if isinstance(value, bool):
        raise QuantityError(f"{value!r} is not a quantity")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise QuantityError(f"{value!r} is not a finite quantity")
        return Decimal(str(value))
    match = _PATTERN.fullmatch(value)
    if not match:
        raise QuantityError(
            f"{value!r} is not a quantity (a number with an optional suffix such as "
            "Mi, Gi, m or k, e.g. 4Gi or 500m)"
        )
    suffix = match["suffix"] or ""
    try:
        number = Decimal(match["number"])
        if suffix not in _SUFFIXES:  # a decimal exponent: e3, E-2
            return number.scaleb(int(suffix[1:]))
    except (InvalidOperation, ArithmeticError) as error:
        raise QuantityError(f"{value!r} is out of range for a quantity") from error
    return number * _SUFFIXES[suffix]


def parse_bytes(value: str | int | float) -> int:
    return math.ceil(parse_quantity(value))


def format_bytes(value: int) -> str:
    """The largest binary suffix that divides exactly, as the apiserver prints it."""
    for suffix, factor in (("Ti", TiB), ("Gi", GiB), ("Mi", MiB), ("Ki", KiB)):
        if value and value % factor == 0:
            return f"{value // factor}{suffix}"
    return str(value)


def round_up_bytes(value: float, step: int = 64 * MiB) -> int:
    """Round a derived memory size up to a step, so small input changes do not
    change the rendered limit (and roll the fleet) for a few bytes."""
    return max(step, math.ceil(value / step) * step)


def format_cpu(cores: Decimal) -> str:
    """Whole cores as '2', fractions as millicores '1500m' (canonical form)."""
    millis = int((cores * 1000).to_integral_value(rounding="ROUND_CEILING"))
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def human_bytes(value: float) -> str:
    """For messages: 1.5 GiB, 300 MiB."""
    for suffix, factor in (("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {suffix}"
    return f"{value:.0f} B"


def mib_per_minute(bytes_per_second: float) -> float:
    """A memory growth rate as people read it."""
    return bytes_per_second * 60 / MiB

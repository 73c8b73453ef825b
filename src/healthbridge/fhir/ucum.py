"""UCUM units in canonical form: https://ucum.org/ucum and https://hl7.org/fhir/R4/search.html#quantity.

Quantity search compares values "in canonical units where the system is UCUM": a query for
``5.4|http://unitsofmeasure.org|mg`` finds a stored ``0.0054 g``. :func:`canonical` converts a
value and a UCUM code to SI base units (``kilogram / meter ** 3`` for ``mg/dL``) with the
``ucumvert`` parser over Pint. Parsing a unit takes about 2 ms, so each code's linear conversion
(factor and offset; offsets only for ``Cel`` and ``[degF]``) is computed once and cached. Codes
that are not valid UCUM give None: such quantities are compared by their own code only.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from decimal import Decimal
from functools import cache, lru_cache
from typing import Any

UCUM = "http://unitsofmeasure.org"
_lock = threading.Lock()


SIGNIFICANT = 12
"""Canonical values are rounded to this many significant digits, so that equal quantities in
different units meet exactly (0.0054 g and 5.4 mg are both 5.4e-06 kg, not 5.400000000000001e-06)
despite the binary factors Pint computes (mg/dL is 0.009999999999999998 kg/m3)."""


def _rounded(value: Decimal) -> Decimal:
    if not value.is_finite() or value == 0:
        return value
    exponent = value.adjusted() - SIGNIFICANT + 1
    return value.quantize(Decimal(1).scaleb(exponent))


@dataclass(frozen=True, slots=True)
class Conversion:
    """``base = value * factor + offset`` in the SI base units named by ``canonical_code``,
    computed in decimal and rounded to :data:`SIGNIFICANT` digits."""

    canonical_code: str
    factor: Decimal
    offset: Decimal

    def __call__(self, value: Decimal | float) -> float:
        exact = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        return float(_rounded(exact * self.factor + self.offset))


@cache
def _registry() -> Any:
    from ucumvert import PintUcumRegistry

    return PintUcumRegistry()


def _convert(registry: Any, parsed: Any, value: float) -> Any:
    return registry.Quantity(value * parsed.magnitude, parsed.units).to_base_units()


@lru_cache(maxsize=4096)
def conversion(code: str) -> Conversion | None:
    """The conversion of UCUM ``code`` to base units, or None when ``code`` is not UCUM."""
    if not code or len(code) > 64:
        return None
    with _lock:  # Pint registries are not documented as thread-safe
        registry = _registry()
        try:
            parsed = registry.from_ucum(code)
            zero, one = _convert(registry, parsed, 0.0), _convert(registry, parsed, 1.0)
        except Exception:
            return None
    offset = Decimal(repr(float(zero.magnitude)))
    factor = Decimal(repr(float(one.magnitude))) - offset
    if factor <= 0:
        return None
    return Conversion(str(one.units), factor, offset)


def canonical(value: Decimal | float, code: str | None) -> tuple[float, str] | None:
    """``(value in base units, canonical unit code)`` or None when ``code`` is not UCUM."""
    found = conversion(code) if code else None
    return None if found is None else (found(value), found.canonical_code)

"""UCUM units in canonical form: https://ucum.org/ucum and https://hl7.org/fhir/R4/search.html#quantity.

Quantity search compares values "in canonical units where the system is UCUM": a query for
``5.4|http://unitsofmeasure.org|mg`` finds a stored ``0.0054 g``. :func:`canonical` converts a
value and a UCUM code to SI base units (``kilogram / meter ** 3`` for ``mg/dL``) with the
``ucumvert`` parser over Pint. Parsing a unit takes about 2 ms, so each code's linear conversion
(factor and offset; offsets only for ``Cel`` and ``[degF]``) is computed once and cached. Codes
that are not valid UCUM give None: such quantities are compared by their own code only.

:func:`is_valid_unit` and :func:`unit_problem` check a code against the UCUM grammar and its
table of units (the ``ucumvert`` grammar, which also rejects unknown atoms such as ``kgs``),
for the validation of ``Quantity.code`` where ``Quantity.system`` is UCUM. A code can be valid
and still have no conversion (``[pH]``, arbitrary units alone such as ``{score}``).
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


MAX_CODE = 256
"""Longer codes are refused without parsing (no clinical unit comes near it)."""
SUGGESTIONS = {
    "mgdl": "mg/dL",
    "mEq/L": "meq/L",
    "mEq": "meq",
    "kgs": "kg",
    "lbs": "[lb_av]",
    "lb": "[lb_av]",
    "in": "[in_i]",
    "mmHg": "mm[Hg]",
    "degF": "[degF]",
    "°F": "[degF]",
    "degC": "Cel",
    "°C": "Cel",
    "bpm": "/min",
    "IU/L": "[iU]/L",
    "IU": "[iU]",
    "mcg": "ug",
    "cc": "mL",
}
"""Common non-UCUM spellings and the UCUM code meant."""


@cache
def _parser() -> Any:
    from ucumvert import get_ucum_parser

    return get_ucum_parser()


@lru_cache(maxsize=4096)
def unit_problem(code: str) -> str | None:
    """Why ``code`` is not a valid UCUM unit code (a message that says what to use instead), or
    None when it is valid."""
    from ucumvert import InvalidUcumError, parse_ucum

    if not code or len(code) > MAX_CODE:
        reason = "it is empty" if not code else f"it is longer than {MAX_CODE} characters"
    else:
        with _lock:
            try:
                parse_ucum(code, _parser())
                return None
            except InvalidUcumError as exc:
                reason = str(exc).splitlines()[0].split(": ", 1)[-1].rstrip(".")
            except Exception as exc:  # any other parser failure: still not a usable code
                reason = type(exc).__name__
    hint = SUGGESTIONS.get(code.strip()) or SUGGESTIONS.get(code.replace(" ", ""))
    advice = f"; did you mean {hint}?" if hint else "."
    shown = code if len(code) <= 40 else f"{code[:40]}..."
    return (
        f"'{shown}' is not a valid UCUM unit ({reason}){advice} UCUM codes are case-sensitive "
        "and have no spaces, e.g. mg/dL, mmol/L, mm[Hg], /min, Cel, 10*3/uL "
        "(https://ucum.org/ucum)"
    )


def is_valid_unit(code: str) -> bool:
    """True when ``code`` is a valid UCUM unit code (https://ucum.org/ucum)."""
    return unit_problem(code) is None


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

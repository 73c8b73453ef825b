"""Value limits of an element: https://hl7.org/fhir/R4/elementdefinition-definitions.html#ElementDefinition.minValue_x_.

``ElementDefinition.minValue[x]`` and ``maxValue[x]`` bound the value of an element of type
date, dateTime, instant, time, decimal, integer (positiveInt, unsignedInt) or Quantity; the
limits are inclusive. ``maxLength`` caps the characters of a string-like primitive
(https://hl7.org/fhir/R4/elementdefinition-definitions.html#ElementDefinition.maxLength).

Comparisons: numbers exactly (as decimals); a partial date or dateTime denotes a period
(``2020`` is all of 2020) and is out of bounds only when its whole period is (so ``2020``
against a minimum of ``2020-06-01`` passes: it cannot be told to be earlier); times as clock
times; Quantities in UCUM canonical units when both are UCUM with a known conversion, otherwise
only when system and code are the same. Values of a different kind than the limit (a
``valueString`` under ``maxValueQuantity``) are not compared.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from healthbridge.fhir import ucum
from healthbridge.fhir.datetimes import period_micros

_NUMBERS: Final = frozenset({"Decimal", "Integer", "PositiveInt", "UnsignedInt"})
_MOMENTS: Final = frozenset({"Date", "DateTime", "Instant"})
_KINDS: Final = {
    **dict.fromkeys(_NUMBERS, "number"),
    **dict.fromkeys(_MOMENTS, "moment"),
    "Time": "time",
    "Quantity": "Quantity",
}
_TYPE_KINDS: Final = {
    **{t[:1].lower() + t[1:]: k for t, k in _KINDS.items()},
    **dict.fromkeys(
        ("Quantity", "Age", "Count", "Distance", "Duration", "MoneyQuantity"), "Quantity"
    ),
    "SimpleQuantity": "Quantity",
}


@dataclass(frozen=True, slots=True)
class Limit:
    """One ``minValue[x]`` or ``maxValue[x]``: ``kind`` is number, moment, time or Quantity;
    ``shown`` is the limit as written in the profile, for messages."""

    kind: str
    value: Any
    shown: str


@dataclass(frozen=True, slots=True)
class Limits:
    """The value limits of one element (any of them may be absent)."""

    minimum: Limit | None = None
    maximum: Limit | None = None
    max_length: int | None = None


def _limit(element: dict[str, Any], prefix: str) -> Limit | None:
    for key, raw in element.items():
        if key.startswith(prefix) and key[len(prefix) :] in _KINDS:
            kind = _KINDS[key[len(prefix) :]]
            shown = _show(raw) if kind == "Quantity" else str(raw)
            return Limit(kind, raw, shown)
    return None


def limits_of(element: dict[str, Any]) -> Limits | None:
    """The limits an element definition states; None when it states none."""
    minimum, maximum = _limit(element, "minValue"), _limit(element, "maxValue")
    raw_length = element.get("maxLength")
    length = raw_length if isinstance(raw_length, int) and raw_length > 0 else None
    if minimum is None and maximum is None and length is None:
        return None
    return Limits(minimum, maximum, length)


def _show(quantity: object) -> str:
    if not isinstance(quantity, dict):
        return str(quantity)
    unit = quantity.get("code") or quantity.get("unit") or ""
    return f"{quantity.get('value')} {unit}".strip()


def _decimal(raw: object) -> Decimal | None:
    if isinstance(raw, bool) or not isinstance(raw, int | float | Decimal | str):
        return None
    try:
        found = Decimal(str(raw))
    except InvalidOperation:
        return None
    return found if found.is_finite() else None


def _span(raw: object) -> tuple[int, int] | None:
    """``[start, end)`` microseconds of a date, dateTime or instant."""
    if not isinstance(raw, str):
        return None
    try:
        return period_micros(raw)
    except ValueError:
        return None


def _clock(raw: object) -> time | None:
    try:
        return time.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        return None


def _quantities(value: object, limit: object) -> tuple[Decimal, Decimal] | None:
    """The two magnitudes in comparable units, or None when the units cannot be compared."""
    if not isinstance(value, dict) or not isinstance(limit, dict):
        return None
    left, right = _decimal(value.get("value")), _decimal(limit.get("value"))
    if left is None or right is None:
        return None
    codes = (value.get("code"), limit.get("code"))
    systems = (value.get("system"), limit.get("system"))
    if systems == (ucum.UCUM, ucum.UCUM) and codes[0] != codes[1]:
        here = ucum.canonical(left, str(codes[0])) if codes[0] else None
        there = ucum.canonical(right, str(codes[1])) if codes[1] else None
        if here is None or there is None or here[1] != there[1]:
            return None
        return Decimal(repr(here[0])), Decimal(repr(there[0]))
    if codes[0] is None or codes[0] != codes[1] or systems[0] != systems[1]:
        return None
    return left, right


def compare(value: object, type_code: str, limit: Limit) -> int | None:
    """-1, 0 or 1 as ``value`` is below, within reach of, or above ``limit``; None when they
    cannot be compared (another kind of value, incomparable units, an unreadable value). For
    periods (partial dates), 0 means they overlap: neither wholly below nor wholly above."""
    if _TYPE_KINDS.get(type_code) != limit.kind:
        return None
    if limit.kind == "moment":
        here, there = _span(value), _span(limit.value)
        if here is None or there is None:
            return None
        return -1 if here[1] <= there[0] else (1 if here[0] >= there[1] else 0)
    pair = _pair(value, limit)
    if pair is None:
        return None
    return -1 if pair[0] < pair[1] else (1 if pair[0] > pair[1] else 0)


def _pair(value: object, limit: Limit) -> tuple[Any, Any] | None:
    """Value and limit as two comparable Python values (numbers, clock times, quantities)."""
    if limit.kind == "number":
        numbers = _decimal(value), _decimal(limit.value)
        return None if numbers[0] is None or numbers[1] is None else numbers
    if limit.kind == "time":
        clocks = _clock(value), _clock(limit.value)
        return None if clocks[0] is None or clocks[1] is None else clocks
    return _quantities(value, limit.value)


def problems(value: object, type_code: str, limits: Limits) -> list[str]:
    """What ``value`` (of FHIR type ``type_code``) breaks, one phrase per broken limit."""
    found: list[str] = []
    length = limits.max_length
    if length is not None and isinstance(value, str) and len(value) > length:
        found.append(f"is {len(value)} characters long, more than the maxLength {length}")
    if limits.minimum is not None and compare(value, type_code, limits.minimum) == -1:
        found.append(f"{_shown(value, type_code)} is below the minValue {limits.minimum.shown}")
    if limits.maximum is not None and compare(value, type_code, limits.maximum) == 1:
        found.append(f"{_shown(value, type_code)} is above the maxValue {limits.maximum.shown}")
    return found


def _shown(value: object, type_code: str) -> str:
    return _show(value) if type_code == "Quantity" else str(value)

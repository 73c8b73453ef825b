"""Number and quantity index values: https://hl7.org/fhir/R4/search.html#number and
https://hl7.org/fhir/R4/search.html#quantity.

A decimal stands for the range its precision implies: ``100`` is ``[99.5, 100.5)`` and
``100.00`` is ``[99.995, 100.005)``. A Quantity (or Age, Duration, Count, Distance, Money with
the ISO 4217 system) adds system, code and unit; a Range gives its low and high values.
SampledData is not indexed.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from healthbridge.fhir.search.values import NumberValue, QuantityValue

_ISO_4217 = "urn:iso:std:iso:4217"


def to_decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    return None


def precision_range(value: Decimal) -> tuple[Decimal, Decimal]:
    """``[low, high)`` implied by the significant digits of ``value``."""
    exponent = value.as_tuple().exponent
    if not isinstance(exponent, int):
        return value, value
    half = Decimal(5).scaleb(exponent - 1)
    return value - half, value + half


def number_values(node: Any, hint: str | None = None) -> list[NumberValue]:
    """Number rows of one selected element (a decimal/integer, or a Quantity's value)."""
    value = to_decimal(node.get("value") if isinstance(node, dict) else node)
    if value is None:
        return []
    return [NumberValue(value, *precision_range(value))]


def _text(node: dict[str, Any], key: str) -> str | None:
    value = node.get(key)
    return value if isinstance(value, str) else None


def _range_value(node: dict[str, Any]) -> QuantityValue | None:
    low, high = node.get("low"), node.get("high")
    low = low if isinstance(low, dict) else {}
    high = high if isinstance(high, dict) else {}
    unit_of = low if "value" in low else high
    low_value, high_value = to_decimal(low.get("value")), to_decimal(high.get("value"))
    if low_value is None and high_value is None:
        return None
    return QuantityValue(
        None,
        low_value,
        high_value,
        _text(unit_of, "system"),
        _text(unit_of, "code"),
        _text(unit_of, "unit"),
    )


def quantity_values(node: Any, hint: str | None = None) -> list[QuantityValue]:
    """Quantity rows of one selected element: Quantity-like, Money or Range."""
    if not isinstance(node, dict):
        return []
    if "low" in node or "high" in node:
        ranged = _range_value(node)
        return [ranged] if ranged else []
    value = to_decimal(node.get("value"))
    if value is None:
        return []
    low, high = precision_range(value)
    currency = _text(node, "currency")
    if currency is not None:
        return [QuantityValue(value, low, high, _ISO_4217, currency, currency)]
    system, code, unit = _text(node, "system"), _text(node, "code"), _text(node, "unit")
    return [QuantityValue(value, low, high, system, code, unit)]

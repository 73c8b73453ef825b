"""``fixed[x]`` and ``pattern[x]`` values: https://hl7.org/fhir/R4/elementdefinition-definitions.html#ElementDefinition.fixed_x_.

* fixed: "the value in the instance SHALL match this value exactly" (every property, no extras;
  decimals compared by value, so ``1.0`` matches ``1``).
* pattern (https://hl7.org/fhir/R4/elementdefinition-definitions.html#ElementDefinition.pattern_x_):
  "the instance SHALL contain the values in the pattern": every property of a pattern object must
  be present with a matching value, and each item of a pattern array must be matched by some
  item of the instance array; the instance may carry more.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final

from healthbridge.fhir import jsonformat

_SHOWN: Final = 160


def _same_scalar(a: object, b: object) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | Decimal | float) and isinstance(b, int | Decimal | float):
        return Decimal(str(a)) == Decimal(str(b))
    return a == b


def matches_fixed(value: object, fixed: object) -> bool:
    """True when ``value`` equals ``fixed`` exactly (objects and arrays compared deeply)."""
    if isinstance(fixed, dict):
        return (
            isinstance(value, dict)
            and value.keys() == fixed.keys()
            and all(matches_fixed(value[k], v) for k, v in fixed.items())
        )
    if isinstance(fixed, list):
        return (
            isinstance(value, list)
            and len(value) == len(fixed)
            and all(matches_fixed(a, b) for a, b in zip(value, fixed, strict=True))
        )
    return _same_scalar(value, fixed)


def matches_pattern(value: object, pattern: object) -> bool:
    """True when ``value`` contains everything in ``pattern``."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(
            key in value and matches_pattern(value[key], part) for key, part in pattern.items()
        )
    if isinstance(pattern, list):
        items = value if isinstance(value, list) else [value]
        return all(any(matches_pattern(item, part) for item in items) for part in pattern)
    return _same_scalar(value, pattern)


def show(value: object) -> str:
    """A short JSON rendering of a value for messages."""
    try:
        text = jsonformat.dumps(value).decode()
    except Exception:
        text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def fixed_or_pattern(element: dict[str, Any]) -> tuple[tuple[str, object] | None, ...]:
    """``(fixed, pattern)`` of one element definition, each ``(type suffix, value)`` or None."""
    fixed: tuple[str, object] | None = None
    pattern: tuple[str, object] | None = None
    for key, value in element.items():
        if key.startswith("fixed") and len(key) > 5:
            fixed = (key[5:], value)
        elif key.startswith("pattern") and len(key) > 7:
            pattern = (key[7:], value)
    return fixed, pattern

"""Primitive datatype rules: https://hl7.org/fhir/R4/datatypes.html#primitive and
https://hl7.org/fhir/R4/json.html#primitive.

Each check takes the decoded JSON value and returns ``None`` when it is valid, else a message that
says what was wrong and what is expected. The lexical regexes are the spec's own (read from the
generated definitions, compiled with ``re.ASCII`` so that ``\\s``/``\\S`` mean ASCII whitespace as
in XML Schema, not Unicode whitespace), with these documented departures:

* ``boolean``, ``integer``, ``positiveInt``, ``unsignedInt`` and ``decimal`` are checked by
  JSON type instead of regex (json.html: they are JSON booleans and numbers). ``integer`` types
  are 32-bit signed (datatypes.html). A ``decimal`` must be finite, have at most
  :data:`DECIMAL_MAX_DIGITS` significant digits (the precision of IEEE 754 decimal128; the spec
  asks implementations to support at least 18) and, unless zero, a magnitude in
  ``1e-308 <= |x| < 1e308`` (the normal range of an IEEE double, so every accepted value can
  also be indexed as a float). That keeps the spec's own extreme example (``Observation-decimal``,
  ``1.000000000000000000E-245``) and refuses absurd values such as ``1e400``.
* ``string`` and ``markdown``: the regexes (``[ \\r\\n\\t\\S]+``, ``\\s*(\\S|\\s)*``) say no more
  than "non-empty, no control characters", which every string-based type gets anyway.
* ``base64Binary`` uses an equivalent non-capturing form of the spec regex (the capturing form
  takes ~0.2 s per megabyte).

Every string-based value must be non-empty (json.html), contain no characters below U+0020
except tab, CR and LF, and be at most ``max_string_length`` characters (datatypes.html: strings
SHALL NOT exceed 1 MB). Dates must be real calendar dates (2023-02-30 is refused).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Final

PrimitiveCheck = Callable[[object], str | None]

DEFAULT_MAX_STRING_LENGTH: Final = 1_048_576
DEFAULT_MAX_NARRATIVE_LENGTH: Final = 4 * 1_048_576
DECIMAL_MAX_DIGITS: Final = 34
DECIMAL_MAX_EXPONENT: Final = 307  # adjusted exponent: |x| < 1e308
DECIMAL_MIN_EXPONENT: Final = -308  # |x| >= 1e-308
INT32_MIN: Final = -(2**31)
INT32_MAX: Final = 2**31 - 1

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_PLAIN = re.compile(r"[^\x00-\x08\x0b\x0c\x0e-\x1f]+")
_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)

#: Primitive types whose spec regex is replaced, with the reason (see the module docstring).
REGEX_OVERRIDES: Final[Mapping[str, str | None]] = {
    "boolean": None,
    "integer": None,
    "positiveInt": None,
    "unsignedInt": None,
    "decimal": None,
    "string": None,
    "markdown": None,
    "xhtml": None,
    "base64Binary": r"(?:[ \t\n\r]*[0-9a-zA-Z+/=]{4})+[ \t\n\r]*",
}

_DATE_TYPES = frozenset({"date", "dateTime", "instant"})


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_boolean(value: object) -> str | None:
    if type(value) is bool:
        return None
    return f"expected a JSON boolean (true or false), got {_shown(value)}"


def _integer_check(low: int, what: str) -> PrimitiveCheck:
    def check(value: object) -> str | None:
        if type(value) is not int:
            return f"expected a JSON integer ({what}), got {_shown(value)}"
        if value < low or value > INT32_MAX:
            return f"{value} is out of range: expected {what} in {low}..{INT32_MAX}"
        return None

    return check


check_integer = _integer_check(INT32_MIN, "32-bit signed integer")
check_positive_int = _integer_check(1, "positiveInt")
check_unsigned_int = _integer_check(0, "unsignedInt")


def _decimal_range(digits: int, adjusted: int, value: object) -> str | None:
    if digits > DECIMAL_MAX_DIGITS:
        return f"decimal {value} has {digits} digits; at most {DECIMAL_MAX_DIGITS} are accepted"
    if adjusted > DECIMAL_MAX_EXPONENT or adjusted < DECIMAL_MIN_EXPONENT:
        return f"decimal {value} is out of range: a non-zero |x| must be in 1e-308 .. 1e308"
    return None


def check_decimal(value: object) -> str | None:
    if type(value) is int:
        text = str(abs(value))
        return _decimal_range(len(text), len(text) - 1, value) if len(text) > 18 else None
    if type(value) is not Decimal:
        return f"expected a JSON number (decimal), got {_shown(value)}"
    if not value.is_finite():
        return f"decimal {value} is not a finite number"
    if not value:
        return None
    return _decimal_range(len(value.as_tuple().digits), value.adjusted(), value)


def calendar_error(text: str) -> str | None:
    """A message when a date-like value that matched its regex names a day that does not exist."""
    if len(text) < 10:
        return None
    year, month, day = int(text[0:4]), int(text[5:7]), int(text[8:10])
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    if day > _DAYS[month - 1] or (month == 2 and day == 29 and not leap):
        return f"{text[:10]} is not a calendar date"
    return None


def _string_problem(type_name: str, value: str, max_length: int) -> str | None:
    if not value:
        return f"empty string: a {type_name} SHALL NOT be empty (omit the element instead)"
    if len(value) > max_length:
        return f"{type_name} is {len(value):,} characters long; the limit is {max_length:,}"
    bad = _CONTROL.search(value)
    if bad is not None:
        return f"{type_name} contains control character U+{ord(bad.group()):04X}"
    return None


_REMEMBERED = 4096
"""Valid values each primitive type's check remembers (then it starts afresh)."""
_REMEMBERED_LENGTH = 128


def _string_check(
    type_name: str, pattern: re.Pattern[str] | None, max_length: int
) -> PrimitiveCheck:
    """Fast path: one ``fullmatch`` (plus a control-character scan when the spec regex admits
    any non-whitespace character); messages are worked out only for invalid values."""
    calendar = type_name in _DATE_TYPES
    fast = pattern or _PLAIN
    loose = pattern is not None and ("\\S" in pattern.pattern or "[^" in pattern.pattern)

    valid: dict[str, None] = {}  # recent valid values: codes, systems and dates recur

    def check(value: object) -> str | None:
        if type(value) is not str:
            return f"expected a JSON string ({type_name}), got {_shown(value)}"
        if value in valid:
            return None
        if fast.fullmatch(value) is None or (loose and _CONTROL.search(value) is not None):
            problem = _string_problem(type_name, value, max_length)
            return (
                problem or f"{_shown(value)} is not a valid {type_name} (expected {fast.pattern})"
            )
        if len(value) > max_length:
            return _string_problem(type_name, value, max_length)
        problem = calendar_error(value) if calendar else None
        if problem is None and len(value) <= _REMEMBERED_LENGTH:
            if len(valid) >= _REMEMBERED:
                valid.clear()
            valid[value] = None
        return problem

    return check


def build_primitive_checks(
    regexes: Mapping[str, str | None],
    max_string_length: int = DEFAULT_MAX_STRING_LENGTH,
    max_narrative_length: int = DEFAULT_MAX_NARRATIVE_LENGTH,
) -> dict[str, PrimitiveCheck]:
    """A check per primitive type name, from the spec regexes (type name -> regex).

    ``xhtml`` is not a string type (the 1 MB rule is about strings) and gets its own, larger
    limit; its XHTML content is checked separately (narrative.py).
    """
    checks: dict[str, PrimitiveCheck] = {
        "boolean": check_boolean,
        "integer": check_integer,
        "positiveInt": check_positive_int,
        "unsignedInt": check_unsigned_int,
        "decimal": check_decimal,
    }
    for name, regex in regexes.items():
        if name in checks:
            continue
        if name == "xhtml":
            checks[name] = _string_check(name, None, max_narrative_length)
            continue
        source = REGEX_OVERRIDES.get(name, regex)
        pattern = re.compile(source, re.ASCII) if source else None
        checks[name] = _string_check(name, pattern, max_string_length)
    return checks

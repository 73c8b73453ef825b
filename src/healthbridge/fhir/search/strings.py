"""String index values: https://hl7.org/fhir/R4/search.html#string.

"By default, a field matches a string query if the value of the field equals or starts with the
supplied parameter value, after both have been normalized by case and accent." We store the
normalized form (NFKD, combining marks removed, case-folded) and the exact value (``:exact``).
A HumanName or Address is searched on each of its parts.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from healthbridge.fhir.search.values import StringValue

_PARTS = (
    "text",
    "family",
    "given",
    "prefix",
    "suffix",
    "line",
    "city",
    "district",
    "state",
    "postalCode",
    "country",
)
"""HumanName (text, family, given, prefix, suffix) and Address (text, line, city, district,
state, postalCode, country) parts; the two types share only ``text``."""


def normalize(text: str) -> str:
    """Case- and accent-insensitive form: ``Zoë`` -> ``zoe``."""
    if text.isascii():  # no accents to remove; casefold() is lower() on ASCII
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def string_value(text: str) -> StringValue:
    return StringValue(normalize(text), text)


def string_values(node: Any, hint: str | None = None) -> list[StringValue]:
    """String rows of one selected element: a string/markdown, HumanName or Address."""
    if isinstance(node, str):
        return [string_value(node)]
    if not isinstance(node, dict):
        return []
    out: list[StringValue] = []
    for part in _PARTS:
        value = node.get(part)
        if isinstance(value, str):
            out.append(string_value(value))
        elif isinstance(value, list):
            out.extend(string_value(v) for v in value if isinstance(v, str))
    return out

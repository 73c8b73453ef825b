"""Parsing search values by parameter type: https://hl7.org/fhir/R4/search.html#ptypes.

``parser_for(definitions, parameter, modifier)`` returns a function from one (already unescaped,
comma-split) value to its typed query value; it raises ValueError with a message saying what
was expected.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal, InvalidOperation

from healthbridge.fhir.datetimes import period_micros
from healthbridge.fhir.definitions import Definitions, SearchParameter
from healthbridge.fhir.search.escaping import split_unescaped, unescape
from healthbridge.fhir.search.near import parse_near
from healthbridge.fhir.search.quantities import precision_range
from healthbridge.fhir.search.query import (
    PREFIXES,
    CompositeQuery,
    DateQuery,
    MissingQuery,
    NumberQuery,
    QuantityQuery,
    QueryValue,
    ReferenceQuery,
    StringQuery,
    TokenQuery,
    UriQuery,
)
from healthbridge.fhir.search.strings import normalize

ValueParser = Callable[[str], QueryValue]
_MAX_DECIMAL_CHARS = 40


def _prefix(raw: str) -> tuple[str, str]:
    """Split a leading comparator (search.html#prefix); ``eq`` by default."""
    head = raw[:2]
    if head in PREFIXES and len(raw) > 2 and (raw[2].isdigit() or raw[2] in "-+."):
        return head, raw[2:]
    return "eq", raw


def _decimal(text: str) -> Decimal:
    if len(text) > _MAX_DECIMAL_CHARS:
        raise ValueError(f"{text[:20]}... is too long for a number")
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a number") from None
    if not value.is_finite() or abs(value.adjusted()) > 308:
        raise ValueError(f"{text!r} is out of range")
    return value


def parse_number(raw: str) -> NumberQuery:
    prefix, text = _prefix(raw)
    value = _decimal(text)
    low, high = precision_range(value)
    return NumberQuery(prefix, value, low, high)


def parse_date(raw: str) -> DateQuery:
    prefix, text = _prefix(raw)
    try:
        start, end = period_micros(text)
    except (ValueError, OverflowError):
        raise ValueError(
            f"{raw!r} is not a date; use e.g. 2020, 2020-03, 2020-03-04 or "
            "2020-03-04T10:00:00Z, optionally after a prefix such as ge"
        ) from None
    return DateQuery(prefix, start, end)


def _split_bar(raw: str, parts: int) -> list[str]:
    return [unescape(p) for p in split_unescaped(raw, "|", parts - 1)]


def parse_quantity(raw: str) -> QuantityQuery:
    pieces = _split_bar(raw, 3)
    number = parse_number(pieces[0])
    system = pieces[1] if len(pieces) > 1 and pieces[1] else None
    code = pieces[2] if len(pieces) > 2 and pieces[2] else None
    if len(pieces) == 2:
        raise ValueError(f"{raw!r}: a quantity is number, number||code or number|system|code")
    return QuantityQuery(number.prefix, number.value, number.low, number.high, system, code)


def parse_token(raw: str) -> TokenQuery:
    pieces = _split_bar(raw, 2)
    if len(pieces) == 1:
        return TokenQuery(None, pieces[0])
    return TokenQuery(pieces[0], pieces[1] or None)


def parse_string(raw: str) -> StringQuery:
    value = unescape(raw)
    return StringQuery(value, normalize(value))


def parse_uri(raw: str) -> UriQuery:
    return UriQuery(unescape(raw))


def parse_missing(raw: str) -> MissingQuery:
    if raw not in ("true", "false"):
        raise ValueError(f":missing takes true or false, not {raw!r}")
    return MissingQuery(raw == "true")


def _reference_parser(
    definitions: Definitions, definition: SearchParameter, type_modifier: str | None
) -> ValueParser:
    single = definition.target[0] if len(definition.target) == 1 else None

    def parse(escaped: str) -> ReferenceQuery:
        raw = unescape(escaped)
        if raw.startswith(("http://", "https://", "urn:")):
            tail = raw.rstrip("/").split("/")
            if len(tail) >= 2 and definitions.is_resource_type(tail[-2]):
                return ReferenceQuery(tail[-2], tail[-1], raw)
            return ReferenceQuery(None, None, raw)
        parts = raw.split("/")
        if len(parts) >= 2:
            resource_type, id = parts[0], parts[1]
            if not definitions.is_resource_type(resource_type):
                raise ValueError(f"{raw!r}: {resource_type!r} is not a resource type")
            if type_modifier and resource_type != type_modifier:
                raise ValueError(f"{raw!r} does not match the :{type_modifier} modifier")
            return ReferenceQuery(resource_type, id)
        return ReferenceQuery(type_modifier or single, raw)

    return parse


def _composite_parser(definitions: Definitions, definition: SearchParameter) -> ValueParser:
    parts: list[ValueParser] = []
    for component in definition.component:
        target = definitions.search_parameter(component.definition)
        if target is None:
            raise ValueError(f"composite {definition.code} has an unknown component")
        parts.append(parser_for(definitions, target, None))

    def parse(raw: str) -> CompositeQuery:
        pieces = split_unescaped(raw, "$")
        if len(pieces) != len(parts):
            raise ValueError(f"{raw!r}: {definition.code} takes {len(parts)} values joined by '$'")
        return CompositeQuery(tuple(p(v) for p, v in zip(parts, pieces, strict=True)))

    return parse


def _of_type(raw: str) -> CompositeQuery:
    pieces = _split_bar(raw, 3)
    if len(pieces) != 3 or not all(pieces):
        raise ValueError(f"{raw!r}: :of-type takes system|code|value")
    return CompositeQuery((TokenQuery(pieces[0], pieces[1]), TokenQuery(None, pieces[2])))


_BY_TYPE: dict[str, ValueParser] = {
    "number": parse_number,
    "date": parse_date,
    "quantity": parse_quantity,
    "token": parse_token,
    "string": parse_string,
    "uri": parse_uri,
    "special": parse_string,
}


def parser_for(
    definitions: Definitions, definition: SearchParameter, modifier: str | None
) -> ValueParser:
    if modifier == "missing":
        return parse_missing
    kind = definition.type
    if kind == "token":
        if modifier == "text":
            return parse_string
        if modifier in ("in", "not-in"):
            return parse_uri
        if modifier == "of-type":
            return _of_type
    if kind == "reference":
        if modifier == "identifier":
            return parse_token
        if modifier in ("above", "below"):
            return parse_uri
        return _reference_parser(definitions, definition, modifier)
    if kind == "composite":
        return _composite_parser(definitions, definition)
    if kind == "special" and definition.code == "near":
        return parse_near
    return _BY_TYPE[kind]

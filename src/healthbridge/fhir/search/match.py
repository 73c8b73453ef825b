"""Matching a parsed search against one resource's index values, in memory.

https://hl7.org/fhir/R4/search.html: the semantics of each parameter type (#ptypes), prefixes
(#prefix) and modifiers (#modifiers). This is the reference implementation that the in-memory
repository and the subscription matcher use; the SQL planner must agree with it (the search
contract suite checks both). Clauses are ANDed, the values of a clause ORed; ``:not`` and
``:missing`` apply to the whole clause. Chains and ``_has`` need other resources and are not
evaluated here (:func:`matches` raises ``NotImplementedError`` for them; callers resolve them).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import Protocol

from healthbridge.fhir.search.filter import STRING_ENDS, STRING_EQUALS
from healthbridge.fhir.search.index import IndexRow
from healthbridge.fhir.search.near import distance_km
from healthbridge.fhir.search.query import (
    Clause,
    CompositeQuery,
    DateQuery,
    MissingQuery,
    NearQuery,
    NumberQuery,
    QuantityQuery,
    QueryValue,
    ReferenceQuery,
    StringQuery,
    TokenQuery,
    UriQuery,
)
from healthbridge.fhir.search.strings import normalize
from healthbridge.fhir.search.values import (
    CompositeValue,
    DateValue,
    IndexValue,
    NearValue,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    UriValue,
)
from healthbridge.fhir.ucum import UCUM, canonical, conversion

_TEN_PERCENT = Decimal("0.1")


def rows_by_param(rows: Iterable[IndexRow]) -> dict[str, list[IndexValue]]:
    grouped: dict[str, list[IndexValue]] = defaultdict(list)
    for row in rows:
        grouped[row.param].append(row.value)
    return grouped


class Rows(Protocol):
    """Index values by parameter code: a dict from :func:`rows_by_param`, or a
    :class:`~healthbridge.fhir.search.index.LazyRows`."""

    def get(self, code: str, default: list[IndexValue], /) -> list[IndexValue]: ...


def matches(clauses: Sequence[Clause], rows: Rows) -> bool:
    """True when every clause matches the resource whose index values are ``rows``."""
    return all(clause_matches(clause, rows.get(clause.param, [])) for clause in clauses)


def clause_matches(clause: Clause, values: list[IndexValue]) -> bool:
    if clause.chain or clause.has:
        raise NotImplementedError("chained and _has clauses are resolved by the caller")
    if clause.modifier == "missing":
        return any(isinstance(q, MissingQuery) and q.missing == (not values) for q in clause.values)
    if clause.modifier == "not":
        return not any(_token(q, v, None) for q in clause.values for v in values)
    if clause.modifier in ("above", "below", "in", "not-in") and clause.param_type == "token":
        raise NotImplementedError(f":{clause.modifier} needs the terminology service")
    return any(value_matches(q, v, clause.modifier) for q in clause.values for v in values)


def value_matches(query: QueryValue, value: IndexValue, modifier: str | None = None) -> bool:
    test = _TESTS.get((type(query), type(value)))
    return test is not None and test(query, value, modifier)


def _token(query: QueryValue, value: IndexValue, modifier: str | None) -> bool:
    if isinstance(query, StringQuery) and isinstance(value, TokenValue):  # :text
        return value.text is not None and normalize(value.text).startswith(query.normalized)
    if isinstance(query, CompositeQuery) and isinstance(value, TokenValue):  # :of-type
        kind, ident = query.parts
        return (
            isinstance(kind, TokenQuery)
            and isinstance(ident, TokenQuery)
            and (value.type_system, value.type_code) == (kind.system, kind.code)
            and value.code == ident.code
        )
    if not isinstance(query, TokenQuery) or not isinstance(value, TokenValue):
        return False
    if query.code is not None and value.code != query.code:
        return False
    if query.system is None:
        return query.code is not None
    if query.system == "":
        return value.system is None
    return value.system == query.system


def _string(query: QueryValue, value: IndexValue, modifier: str | None) -> bool:
    assert isinstance(query, StringQuery) and isinstance(value, StringValue)
    if modifier == "exact":
        return value.exact == query.value
    if modifier == "contains":
        return query.normalized in value.normalized
    if modifier == STRING_EQUALS:  # _filter eq
        return value.normalized == query.normalized
    if modifier == STRING_ENDS:  # _filter ew
        return value.normalized.endswith(query.normalized)
    return value.normalized.startswith(query.normalized)


def _date(query: QueryValue, value: IndexValue, modifier: str | None) -> bool:
    assert isinstance(query, DateQuery) and isinstance(value, DateValue)
    return _ranges(query.prefix, value.start, value.end, query.start, query.end)


def _ranges(prefix: str, start: int, end: int, q_start: int, q_end: int) -> bool:
    """Range semantics of search.html#prefix for dates: stored [start, end), query [q_start,
    q_end)."""
    contained = q_start <= start and end <= q_end
    if prefix == "eq":
        return contained
    if prefix == "ne":
        return not contained
    if prefix == "gt":
        return end > q_end
    if prefix == "lt":
        return start < q_start
    if prefix == "ge":
        return end > q_end or contained
    if prefix == "le":
        return start < q_start or contained
    if prefix == "sa":
        return start >= q_end
    if prefix == "eb":
        return end <= q_start
    return start < q_end and q_start < end  # ap: overlaps


def _compare(prefix: str, value: Decimal, low: Decimal, high: Decimal, target: Decimal) -> bool:
    """Number semantics (search.html#number): eq/ne use the query's precision range, ap is
    within 10 %. Comparisons are made in IEEE double precision, as the SQL index stores numbers:
    the bounds are computed exactly and then rounded once, the stored value rounded once; so
    numbers agree to about 15 significant digits (far beyond clinical precision)."""
    if prefix == "ap":
        margin = abs(target) * _TEN_PERCENT
        low, high = target - margin, target + margin
        return float(low) <= float(value) <= float(high)
    number, low_f, high_f, target_f = float(value), float(low), float(high), float(target)
    if prefix == "eq":
        return low_f <= number < high_f
    if prefix == "ne":
        return not low_f <= number < high_f
    if prefix in ("gt", "sa"):
        return number > target_f
    if prefix in ("lt", "eb"):
        return number < target_f
    if prefix == "ge":
        return number >= target_f
    return number <= target_f  # le


def _number(query: QueryValue, value: IndexValue, modifier: str | None) -> bool:
    assert isinstance(query, NumberQuery) and isinstance(value, NumberValue)
    return _compare(query.prefix, value.value, query.low, query.high, query.value)


def _quantity(query: QueryValue, value: IndexValue, modifier: str | None) -> bool:
    assert isinstance(query, QuantityQuery) and isinstance(value, QuantityValue)
    return _same_units(query, value) or _canonically(query, value)


def _same_units(query: QuantityQuery, value: QuantityValue) -> bool:
    if query.system is not None and value.system != query.system:
        return False
    if query.code is not None and query.code not in (value.code, value.unit):
        return False
    if value.value is None:  # a Range: compare its bounds
        low = value.low if value.low is not None else Decimal("-Infinity")
        high = value.high if value.high is not None else Decimal("Infinity")
        return _compare(query.prefix, low, query.low, query.high, query.value) or _compare(
            query.prefix, high, query.low, query.high, query.value
        )
    return _compare(query.prefix, value.value, query.low, query.high, query.value)


def canonical_query(query: QuantityQuery) -> tuple[str, Decimal, Decimal, Decimal] | None:
    """A UCUM query in base units: (canonical code, value, low, high), else None."""
    if query.system != UCUM or query.code is None:
        return None
    found = conversion(query.code)
    if found is None:
        return None
    low, value, high = (Decimal(repr(found(v))) for v in (query.low, query.value, query.high))
    return found.canonical_code, value, low, high


def _canonically(query: QuantityQuery, value: QuantityValue) -> bool:
    """search.html#quantity: UCUM quantities compare in canonical units (mg vs g)."""
    wanted = canonical_query(query)
    if wanted is None or value.value is None or value.system != UCUM:
        return False
    stored = canonical(value.value, value.code)
    if stored is None or stored[1] != wanted[0]:
        return False
    _, target, low, high = wanted
    return _compare(query.prefix, Decimal(repr(stored[0])), low, high, target)


def _reference(query: QueryValue, value: IndexValue, modifier: str | None) -> bool:
    assert isinstance(query, ReferenceQuery) and isinstance(value, ReferenceValue)
    if query.url is not None and value.url == query.url:
        return True
    if query.id is None or value.target_id != query.id:
        return False
    return query.resource_type is None or value.target_type == query.resource_type


def _identifier(query: QueryValue, value: IndexValue, modifier: str | None) -> bool:
    assert isinstance(query, TokenQuery) and isinstance(value, ReferenceValue)
    if modifier != "identifier" or value.identifier_value is None:
        return False
    token = TokenValue(value.identifier_system, value.identifier_value)
    return _token(query, token, None)


def _uri(query: QueryValue, value: IndexValue, modifier: str | None) -> bool:
    assert isinstance(query, UriQuery)
    uri = value.uri if isinstance(value, UriValue) else getattr(value, "url", None)
    if uri is None:
        return False
    if modifier == "below":
        return uri.startswith(query.value)
    if modifier == "above":
        return query.value.startswith(uri)
    return uri == query.value


def _composite(query: QueryValue, value: IndexValue, modifier: str | None) -> bool:
    assert isinstance(query, CompositeQuery) and isinstance(value, CompositeValue)
    if len(query.parts) != len(value.components):
        return False
    return all(value_matches(q, v) for q, v in zip(query.parts, value.components, strict=True))


def _near(query: QueryValue, value: IndexValue, modifier: str | None) -> bool:
    assert isinstance(query, NearQuery) and isinstance(value, NearValue)
    away = distance_km(
        query.latitude, query.longitude, float(value.latitude), float(value.longitude)
    )
    return away <= query.distance_km


Test = Callable[[QueryValue, IndexValue, str | None], bool]
_TESTS: dict[tuple[type, type], Test] = {
    (TokenQuery, TokenValue): _token,
    (StringQuery, TokenValue): _token,
    (CompositeQuery, TokenValue): _token,
    (StringQuery, StringValue): _string,
    (DateQuery, DateValue): _date,
    (NumberQuery, NumberValue): _number,
    (QuantityQuery, QuantityValue): _quantity,
    (ReferenceQuery, ReferenceValue): _reference,
    (TokenQuery, ReferenceValue): _identifier,
    (UriQuery, UriValue): _uri,
    (UriQuery, ReferenceValue): _uri,
    (CompositeQuery, CompositeValue): _composite,
    (NearQuery, NearValue): _near,
}

"""Result order and keyset cursors of the memory fake's search:
https://hl7.org/fhir/R4/search.html#sort and search.html#count (paging).

The agreed order (the SQL planner follows it too): without ``_sort``, ascending
``resource_key(type, id)``. With ``_sort``, per key the resource's value is the LOWEST of its
values when ascending and the HIGHEST when descending (date: lowest start / highest end; string:
normalized form; token: code; number; quantity value, a Range's low / high; uri; reference: the
target's resource key, URL-only references count as no value; ``_id``: the id;
``_lastUpdated``: the stored instant). Resources without a value come LAST in both directions;
ties go by ascending resource key.

A cursor is the position of the last resource of a page (its sort values and resource key) plus
a fingerprint of the search; the next page holds what sorts strictly after it, so writes between
pages never repeat or skip a resource that stayed put. Anything that does not decode to a
position of this search is an InvalidRequest naming ``_cursor``.
"""

from __future__ import annotations

import base64
from decimal import Decimal, InvalidOperation
from functools import total_ordering
from hashlib import blake2b
from typing import TYPE_CHECKING, Any

import msgspec

from healthbridge.fhir.datetimes import to_micros
from healthbridge.fhir.errors import InvalidRequest
from healthbridge.fhir.search import (
    DateValue,
    IndexValue,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    UriValue,
)
from healthbridge.fhir.search.query import SearchQuery, SortKey
from healthbridge.store.keys import resource_key

if TYPE_CHECKING:
    from healthbridge.store.memory_search import Indexed

SortValue = str | int | Decimal
Position = tuple[Any, ...]
"""``((missing, value), ..., resource key)``: compares in result order."""


@total_ordering
class Descending:
    """Wraps a sort value so that larger values come first."""

    __slots__ = ("value",)

    def __init__(self, value: SortValue) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Descending) and self.value == other.value

    def __lt__(self, other: Descending) -> bool:
        return other.value < self.value  # type: ignore[operator]

    def __hash__(self) -> int:
        return hash(self.value)


def _candidate(value: IndexValue, descending: bool) -> SortValue | None:
    if isinstance(value, StringValue):
        return value.normalized
    if isinstance(value, TokenValue):
        return value.code
    if isinstance(value, DateValue):
        return value.end if descending else value.start
    if isinstance(value, NumberValue):
        return value.value
    if isinstance(value, QuantityValue):
        if value.value is not None:
            return value.value
        return value.high if descending else value.low
    if isinstance(value, UriValue):
        return value.uri
    if isinstance(value, ReferenceValue) and value.target_type and value.target_id:
        return resource_key(value.target_type, value.target_id)
    return None


def sort_value(key: SortKey, resource: Indexed) -> SortValue | None:
    """The value ``resource`` sorts by under ``key`` (None: it has none)."""
    if key.param == "_lastUpdated":
        return to_micros(resource.stored.last_updated)
    if key.param == "_id":
        return resource.stored.id
    found = [
        c for v in resource.values(key.param) if (c := _candidate(v, key.descending)) is not None
    ]
    if not found:
        return None
    return max(found) if key.descending else min(found)


def _kind(key: SortKey) -> type:
    if key.param == "_lastUpdated" or key.param_type in ("date", "reference"):
        return int
    if key.param_type in ("number", "quantity"):
        return Decimal
    return str


def _bad_cursor(why: str) -> InvalidRequest:
    return InvalidRequest(
        f"_cursor: {why}; follow the next link of the previous page, or search again",
        code="value",
        expression="_cursor",
    )


class SortOrder:
    """Positions and cursors of one search."""

    def __init__(self, query: SearchQuery) -> None:
        self.keys = query.sort
        scope = (query.resource_type, query.types, query.compartment, query.clauses, query.sort)
        self.fingerprint = blake2b(repr(scope).encode(), digest_size=6).hexdigest()

    def position(self, resource: Indexed) -> Position:
        parts: list[Any] = []
        for key in self.keys:
            value = sort_value(key, resource)
            parts.append(self._part(key, value))
        parts.append(resource.rkey)
        return tuple(parts)

    @staticmethod
    def _part(key: SortKey, value: SortValue | None) -> tuple[int, Any]:
        if value is None:
            return (1, None)
        return (0, Descending(value) if key.descending else value)

    def encode(self, position: Position) -> str:
        values = []
        for missing, value in position[:-1]:
            raw = value.value if isinstance(value, Descending) else value
            values.append(None if missing else (str(raw) if isinstance(raw, Decimal) else raw))
        payload = msgspec.json.encode([self.fingerprint, values, position[-1]])
        return base64.urlsafe_b64encode(payload).decode("ascii").rstrip("=")

    def decode(self, cursor: str) -> Position:
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            fingerprint, values, rkey = msgspec.json.decode(
                raw, type=tuple[str, list[str | int | None], int]
            )
        except (ValueError, msgspec.DecodeError):
            raise _bad_cursor("not a cursor of this server") from None
        if fingerprint != self.fingerprint or len(values) != len(self.keys):
            raise _bad_cursor("the cursor belongs to another search")
        parts = [self._decoded(key, value) for key, value in zip(self.keys, values, strict=True)]
        return (*parts, rkey)

    def _decoded(self, key: SortKey, value: str | int | None) -> tuple[int, Any]:
        if value is None:
            return self._part(key, None)
        kind = _kind(key)
        if kind is Decimal and isinstance(value, str):
            try:
                number = Decimal(value)
            except InvalidOperation:
                raise _bad_cursor("a sort value is malformed") from None
            if not number.is_finite():
                raise _bad_cursor("a sort value is malformed")
            return self._part(key, number)
        if type(value) is not kind:
            raise _bad_cursor("a sort value is malformed")
        return self._part(key, value)

"""Opaque keyset cursors for search paging: https://hl7.org/fhir/R4/search.html#paging.

A cursor names the last resource of a page by its position in the result order (its sort values
and its resource key) plus a fingerprint of the search it belongs to: base64url of a small JSON
array. Decoding checks every part, so a truncated, edited or foreign cursor is an InvalidRequest
(400), never a server error, and a cursor can never resume a different search.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Sequence
from functools import partial
from hashlib import blake2b
from typing import Any

import msgspec

from healthbridge.fhir.errors import InvalidRequest
from healthbridge.fhir.search.query import SearchQuery
from healthbridge.store.sql.search.memo import Recent
from healthbridge.store.sql.search.sort import SortColumn

_INT64 = (-(2**63), 2**63 - 1)
MAX_CURSOR_CHARS = 4096
_FINGERPRINTS: Recent[str] = Recent()


def fingerprint(query: SearchQuery) -> str:
    """What the order and the result set of ``query`` depend on (not the page size); the
    recent ones remembered (a repr of the query's clauses costs more than the digest)."""
    return _FINGERPRINTS.get(query, partial(_fingerprint, query))


def _fingerprint(query: SearchQuery) -> str:
    shape = (
        query.resource_type,
        query.clauses,
        query.filter,
        query.sort,
        query.types,
        query.compartment,
    )
    return blake2b(repr(shape).encode(), digest_size=9).hexdigest()


def encode(query: SearchQuery, values: Sequence[Any], sorts: Sequence[SortColumn]) -> str:
    """``values``: the sort values of the last resource of a page, then its resource key."""
    kinds = [s.kind for s in sorts] + ["int"]
    items = [
        repr(float(v)) if kind == "float" else v for v, kind in zip(values, kinds, strict=True)
    ]
    raw = msgspec.json.encode([fingerprint(query), items])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _bad() -> InvalidRequest:
    return InvalidRequest(
        "The paging cursor is malformed or belongs to another search; start the search again",
        expression="_cursor",
    )


def _value(item: Any, kind: str) -> Any:
    if kind == "str" and isinstance(item, str):
        return item
    if kind == "int" and type(item) is int and _INT64[0] <= item <= _INT64[1]:
        return item
    if kind == "float" and isinstance(item, str) and len(item) < 40:
        try:
            number = float(item)
        except ValueError:
            raise _bad() from None
        if not math.isnan(number):
            return number
    raise _bad()


def decode(query: SearchQuery, cursor: str, sorts: Sequence[SortColumn]) -> list[Any]:
    """The position ``encode`` wrote: one value per sort column, then the resource key."""
    if len(cursor) > MAX_CURSOR_CHARS:
        raise _bad()
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        decoded = msgspec.json.decode(raw)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise _bad() from None
    if not isinstance(decoded, list) or len(decoded) != 2:
        raise _bad()
    mark, items = decoded
    if mark != fingerprint(query) or not isinstance(items, list):
        raise _bad()
    kinds = [s.kind for s in sorts] + ["int"]
    if len(items) != len(kinds):
        raise _bad()
    return [_value(item, kind) for item, kind in zip(items, kinds, strict=True)]

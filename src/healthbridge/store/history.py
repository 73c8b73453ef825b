"""History paging: https://hl7.org/fhir/R4/http.html#history.

Entries are ordered newest first by ``(last_updated, version_id, type, id)`` descending, a total
order on every backend. Pages are cut with a keyset cursor (the position of the last entry
returned), never an OFFSET, so inserts that happen while a client pages never shift or repeat
entries. The cursor is opaque to clients; the other query fields (level, ``_since``, ``_at``,
``_count``) must be repeated with it. :func:`page_of` is the in-memory implementation used by the
memory fake; the SQL backends express the same rules as SQL.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass

import msgspec

from healthbridge.fhir.errors import InvalidRequest
from healthbridge.store.instants import to_micros, utc
from healthbridge.store.repository import HistoryPage, HistoryQuery, StoredResource


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """Where an entry sits in the newest-first order (compare ascending = oldest first)."""

    last_updated: int  # microseconds since the epoch
    version_id: int
    resource_type: str
    id: str

    def encode(self) -> str:
        raw = msgspec.json.encode([self.last_updated, self.version_id, self.resource_type, self.id])
        return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")

    @classmethod
    def decode(cls, cursor: str) -> Position:
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            micros, version_id, resource_type, id = msgspec.json.decode(
                raw, type=tuple[int, int, str, str]
            )
        except (ValueError, msgspec.DecodeError):
            raise InvalidRequest("The history paging cursor is not valid", code="value") from None
        return cls(micros, version_id, resource_type, id)

    @classmethod
    def of(cls, stored: StoredResource) -> Position:
        return cls(
            to_micros(stored.last_updated), stored.version_id, stored.resource_type, stored.id
        )


def _in_scope(stored: StoredResource, query: HistoryQuery) -> bool:
    if query.resource_type is not None and stored.resource_type != query.resource_type:
        return False
    return query.id is None or stored.id == query.id


def _current_at(versions: Iterable[StoredResource], query: HistoryQuery) -> list[StoredResource]:
    """Per resource, the version current at ``query.at`` (the newest not after it)."""
    assert query.at is not None
    at = utc(query.at)
    chosen: dict[tuple[str, str], StoredResource] = {}
    for stored in versions:
        if stored.last_updated > at:
            continue
        key = (stored.resource_type, stored.id)
        best = chosen.get(key)
        if best is None or stored.version_id > best.version_id:
            chosen[key] = stored
    return list(chosen.values())


def page_of(versions: Iterable[StoredResource], query: HistoryQuery) -> HistoryPage:
    """One page of history over all stored ``versions`` (any order)."""
    matching = [v for v in versions if _in_scope(v, query)]
    if query.at is not None:
        matching = _current_at(matching, query)
    if query.since is not None:
        since = utc(query.since)
        matching = [v for v in matching if v.last_updated >= since]
    ordered = sorted(matching, key=Position.of, reverse=True)
    if query.cursor is not None:
        after = Position.decode(query.cursor)
        ordered = [v for v in ordered if Position.of(v) < after]
    count = max(query.count, 0)
    entries = ordered[:count]
    more = len(ordered) > count > 0
    next_cursor = Position.of(entries[-1]).encode() if more else None
    return HistoryPage(entries, next_cursor, len(matching))

"""The in-memory :class:`~healthbridge.store.audit.AuditLog` (same contract as :mod:`.sql.audit`).

Rows live in a list in seq order; appends take turns by running without awaiting. Nothing
survives the process. Shapes: https://hl7.org/fhir/R4/auditevent.html.
"""

from __future__ import annotations

from collections.abc import Sequence

from healthbridge.fhir.errors import NotFound
from healthbridge.store.audit import (
    AuditEntry,
    AuditHead,
    AuditPage,
    AuditQuery,
    StoredAuditEvent,
    chained,
    decode_cursor,
    encode_cursor,
    unique_sources,
)


def _matches(row: StoredAuditEvent, query: AuditQuery) -> bool:
    wanted = (
        (query.patient, row.patient),
        (query.agent, row.agent),
        (query.type, row.type),
        (query.subtype, row.subtype),
        (query.action, row.action),
        (query.outcome, row.outcome),
    )
    if any(values and value not in values for values, value in wanted):
        return False
    if query.since is not None and row.recorded < query.since:
        return False
    return query.before is None or row.recorded < query.before


class MemoryAuditLog:
    def __init__(self) -> None:
        self.rows: list[StoredAuditEvent] = []  # tests tamper with these
        self.stored_head: AuditHead | None = None
        self._sources: set[int] = set()

    async def append(self, entries: Sequence[AuditEntry], key: bytes) -> list[int]:
        kept = unique_sources(entries, self._sources)
        if not kept:
            return []
        rows, head = chained(kept, key, self.stored_head)
        self.rows.extend(rows)
        self._sources.update(r.source_seq for r in rows if r.source_seq is not None)
        self.stored_head = head
        return [row.seq for row in rows]

    async def read(self, seq: int) -> StoredAuditEvent:
        for row in self.rows:
            if row.seq == seq:
                return row
        raise NotFound(f"AuditEvent {seq} is not known")

    async def search(self, query: AuditQuery, cursor: str | None = None) -> AuditPage:
        found = [row for row in self.rows if _matches(row, query)]
        found.sort(key=lambda r: (r.recorded, r.seq), reverse=query.descending)
        total = len(found) if query.total else None
        if cursor is not None:
            after = decode_cursor(cursor, query)
            if query.descending:
                found = [r for r in found if (r.recorded, r.seq) < after]
            else:
                found = [r for r in found if (r.recorded, r.seq) > after]
        page = found[: query.count]
        more = len(found) > query.count
        next_cursor = encode_cursor(page[-1], query) if more and page else None
        return AuditPage(page, next_cursor, total)

    async def scan(self, after_seq: int, limit: int) -> list[StoredAuditEvent]:
        return [row for row in self.rows if row.seq > after_seq][: max(limit, 0)]

    async def head(self) -> AuditHead | None:
        return self.stored_head

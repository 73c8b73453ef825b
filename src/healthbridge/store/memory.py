"""In-memory :class:`~healthbridge.store.repository.Repository` for tests and demos.

It passes the same contract suite as the SQL backends (tests/store), following the FHIR RESTful
API (https://hl7.org/fhir/R4/http.html): versions, history, If-Match, delete as a version, and one
outbox event per committed change (with the actor of :mod:`.actor`). One unit of work runs at a
time (an asyncio.Lock); its writes are buffered and become visible to others only when it
commits, so a rollback leaves nothing.
Search (https://hl7.org/fhir/R4/search.html) is evaluated in memory by
:mod:`healthbridge.store.memory_search`. Nothing survives the process.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager

from healthbridge.fhir.definitions import Definitions, load_definitions
from healthbridge.fhir.search.query import SearchQuery
from healthbridge.fhir.types import Resource
from healthbridge.store.actor import current_actor
from healthbridge.store.autocommit import AutocommitWrites
from healthbridge.store.history import page_of
from healthbridge.store.instants import Clock, system_clock
from healthbridge.store.keys import resource_key
from healthbridge.store.memory_audit import MemoryAuditLog
from healthbridge.store.memory_jobs import MemoryJobs
from healthbridge.store.memory_records import MemoryRecords
from healthbridge.store.memory_search import MemorySearch
from healthbridge.store.memory_subscriptions import MemorySubscriptions
from healthbridge.store.memory_terminology import MemoryTerminology
from healthbridge.store.reindexing import ReindexBatch
from healthbridge.store.repository import (
    HistoryPage,
    HistoryQuery,
    OutboxEvent,
    SearchPage,
    StoredResource,
    Transaction,
    VersionKey,
)
from healthbridge.store.versioning import (
    Current,
    VersionWriter,
    is_valid_key,
    not_found,
    require_live,
)

Key = tuple[str, str]


class _State:
    def __init__(self) -> None:
        self.current: dict[Key, StoredResource] = {}
        self.by_type: dict[str, dict[str, StoredResource]] = {}  # the same, by type then id
        self.versions: dict[Key, dict[int, StoredResource]] = {}
        self.outbox: list[OutboxEvent] = []

    def apply(self, written: list[StoredResource], actor: str | None) -> None:
        for stored in written:
            key = (stored.resource_type, stored.id)
            self.current[key] = stored
            self.by_type.setdefault(stored.resource_type, {})[stored.id] = stored
            self.versions.setdefault(key, {})[stored.version_id] = stored
            event = OutboxEvent(
                len(self.outbox) + 1,
                stored.resource_type,
                stored.id,
                stored.version_id,
                stored.method,
                stored.last_updated,
                actor,
            )
            self.outbox.append(event)


class MemoryTransaction(VersionWriter):
    """Buffers its writes; reads see them first, then the committed state."""

    def __init__(self, state: _State, clock: Clock) -> None:
        super().__init__(clock)
        self._state = state
        self._pending: dict[Key, StoredResource] = {}
        self.written: list[StoredResource] = []

    def _lookup(self, key: Key) -> StoredResource | None:
        return self._pending.get(key) or self._state.current.get(key)

    async def read(self, resource_type: str, id: str) -> StoredResource:
        stored = self._lookup((resource_type, id))
        if stored is None:
            raise not_found(resource_type, id)
        return require_live(stored)

    async def lock(self, name: str) -> None:
        """Units of work take turns already (the repository's lock)."""

    async def _current(self, resource_type: str, id: str) -> Current | None:
        stored = self._lookup((resource_type, id))
        if stored is None:
            return None
        return Current(stored.version_id, stored.last_updated, stored.deleted)

    async def _insert_first(self, stored: StoredResource, resource: Resource) -> bool:
        key = (stored.resource_type, stored.id)
        if key in self._pending or key in self._state.versions:
            return False
        return await self._insert_next(stored, resource)

    async def _insert_next(self, stored: StoredResource, resource: Resource | None) -> bool:
        # The unit of work holds the repository's lock, so the version read is still current.
        self._pending[(stored.resource_type, stored.id)] = stored
        self.written.append(stored)
        return True


class MemoryReindexer:
    """The memory fake extracts index rows when it searches (with the definitions in force),
    so a reindex only walks the resources, in resource-key order, to report progress."""

    def __init__(self, by_type: Mapping[str, Mapping[str, StoredResource]]) -> None:
        self._by_type = by_type

    def _keys(self, types: Sequence[str] | None) -> list[int]:
        chosen = types or list(self._by_type)
        return sorted(
            resource_key(t, id)
            for t in chosen
            for id, stored in self._by_type.get(t, {}).items()
            if not stored.deleted
        )

    async def count(self, types: Sequence[str] | None) -> int:
        return len(self._keys(types))

    async def batch(
        self, types: Sequence[str] | None, after: int | None, limit: int
    ) -> ReindexBatch:
        keys = [k for k in self._keys(types) if after is None or k > after][:limit]
        return ReindexBatch(len(keys), keys[-1] if len(keys) == limit else None)


class MemoryRepository(AutocommitWrites):
    def __init__(
        self, *, clock: Clock = system_clock, definitions: Definitions | None = None
    ) -> None:
        self._clock = clock
        self._state = _State()
        self._lock = asyncio.Lock()
        self._definitions = definitions
        self._search: MemorySearch | None = None
        self.jobs = MemoryJobs(clock)
        self.records = MemoryRecords(clock)
        self.terminology = MemoryTerminology()
        self.audit = MemoryAuditLog()
        self.subscriptions = MemorySubscriptions(clock)
        self.reindexer = MemoryReindexer(self._state.by_type)

    def use_definitions(self, definitions: Definitions) -> None:
        """Search and index with ``definitions`` from now on (custom SearchParameters); index
        rows are extracted afresh on the next search."""
        self._definitions = definitions
        self._search = None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        actor = current_actor()  # in the caller's task, as the SQL backends take it
        async with self._lock:
            tx = MemoryTransaction(self._state, self._clock)
            yield tx
            self._state.apply(tx.written, actor)

    async def read(self, resource_type: str, id: str) -> StoredResource:
        stored = self._state.current.get((resource_type, id))
        if stored is None:
            raise not_found(resource_type, id)
        return require_live(stored)

    async def vread(self, resource_type: str, id: str, version_id: int) -> StoredResource:
        stored = self._state.versions.get((resource_type, id), {}).get(version_id)
        if stored is None:
            raise not_found(resource_type, id, version_id)
        return require_live(stored)

    async def versions(self, keys: Sequence[VersionKey]) -> list[StoredResource | None]:
        versions = self._state.versions
        return [versions.get((type_, id), {}).get(version) for type_, id, version in keys]

    async def history(self, query: HistoryQuery) -> HistoryPage:
        if query.id is not None:
            key = (query.resource_type or "", query.id)
            if not is_valid_key(*key) or key not in self._state.versions:
                raise not_found(*key)
            versions = list(self._state.versions[key].values())
        else:
            versions = [v for by_id in self._state.versions.values() for v in by_id.values()]
        return page_of(versions, query)

    async def outbox_since(self, after_seq: int, limit: int = 100) -> list[OutboxEvent]:
        start = max(after_seq, 0)
        return self._state.outbox[start : start + max(limit, 0)]

    async def search(self, query: SearchQuery, cursor: str | None = None) -> SearchPage:
        """Evaluated without awaiting, so it sees one committed state."""
        if self._search is None:
            definitions = self._definitions or load_definitions()
            self._search = MemorySearch(definitions, self._state.by_type)
        return self._search.search(query, cursor)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None

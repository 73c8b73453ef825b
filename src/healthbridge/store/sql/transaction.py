"""One SQL unit of work: https://hl7.org/fhir/R4/http.html#transaction (one FHIR transaction is
one database transaction).

The version rules live in :class:`~healthbridge.store.versioning.VersionWriter`; this module
supplies its storage primitives. In a unit of work, ``_current`` locks the current row
(``SELECT ... FOR UPDATE`` on PostgreSQL; on SQLite the unit of work already holds the database's
write lock), so concurrent updates get consecutive versions. A single change outside a unit of
work (``locking=False``) reads without a lock and relies on the writes being conditional
(:mod:`.writes`): ``_insert_first`` is ``INSERT ... ON CONFLICT DO NOTHING`` (of several writers
creating the same id at once, one wins and the others see the row), ``_insert_next`` replaces
only the version that was read; a writer that lost the race reads again.
"""

from __future__ import annotations

from collections.abc import Sequence

from healthbridge.fhir.errors import FhirError
from healthbridge.fhir.types import Resource
from healthbridge.store.instants import Clock, from_micros, to_micros
from healthbridge.store.keys import key, resource_key
from healthbridge.store.repository import Applied, Change, ChangeFailed, StoredResource
from healthbridge.store.sql.compiled import Statement
from healthbridge.store.sql.engine import Row, Session
from healthbridge.store.sql.indexing import IndexRows, VersionIndex
from healthbridge.store.sql.statements import Statements
from healthbridge.store.versioning import (
    ATTEMPTS,
    Current,
    VersionWriter,
    is_valid_key,
    next_version,
    not_found,
    require_live,
    require_valid_key,
)

Prepared = tuple[Resource, VersionIndex]
"""A resource and its index, extracted before the change runs (see SqlRepository)."""

OPTIMISTIC_ATTEMPTS = 2
"""Lock-free tries of one change before it falls back to a locking unit of work."""


def to_stored(row: Row) -> StoredResource:
    """A row in :data:`~.statements.VERSION_COLUMNS` order."""
    resource_type, id, version_id, last_updated, deleted, method, content = row
    return StoredResource(
        resource_type, id, version_id, from_micros(last_updated), bool(deleted), content, method
    )


def prepare(index: IndexRows, changes: Sequence[Change]) -> list[Prepared]:
    """The index of every version ``changes`` write, extracted now (before the database's
    write lock is taken, where the caller can)."""
    return [
        (change.resource, index.rows(change.resource_type, change.id, change.resource))
        for change in changes
        if change.resource is not None and is_valid_key(change.resource_type, change.id)
    ]


class SqlTransaction(VersionWriter):
    def __init__(
        self,
        session: Session,
        sql: Statements,
        clock: Clock,
        index: IndexRows,
        *,
        locking: bool = True,
        prepared: Sequence[Prepared] = (),
    ) -> None:
        super().__init__(clock, ATTEMPTS if locking else OPTIMISTIC_ATTEMPTS)
        self._session = session
        self._sql = sql
        self._index = index
        self._prepared = {id(resource): (resource, rows) for resource, rows in prepared}
        self.locking = locking
        self._read_current = sql.lock_current if locking else sql.current

    async def read(self, resource_type: str, id: str) -> StoredResource:
        row = await self._session.fetch_one(self._sql.read_current, (resource_type, id))
        if row is None:
            raise not_found(resource_type, id)
        return require_live(to_stored(row))

    async def lock(self, name: str) -> None:
        statement = Statement(self._sql.dialect.named_lock, ("key",), {})
        await self._session.fetch_one(statement, (key(f"lock:{name}"),))

    async def _current(self, resource_type: str, id: str) -> Current | None:
        row = await self._session.fetch_one(self._read_current, (resource_type, id))
        if row is None:
            return None
        version_id, last_updated, deleted = row
        return Current(version_id, from_micros(last_updated), bool(deleted))

    def _values(self, stored: StoredResource) -> dict[str, object]:
        return {
            "type": stored.resource_type,
            "id": stored.id,
            "version_id": stored.version_id,
            "last_updated": to_micros(stored.last_updated),
            "deleted": stored.deleted,
            "method": stored.method,
            "content": stored.content,
            "rkey": resource_key(stored.resource_type, stored.id),
        }

    def _rows(self, stored: StoredResource, resource: Resource | None) -> VersionIndex:
        if resource is not None:
            found = self._prepared.get(id(resource))
            if found is not None and found[0] is resource:
                return found[1]
        return self._index.rows(stored.resource_type, stored.id, resource)

    async def apply(self, changes: Sequence[Change]) -> list[Applied]:
        """All ``changes`` in one call to the session (on SQLite: one hop to the writer thread
        for the whole group instead of one per statement)."""
        prepared = prepare(self._index, changes)

        async def work(session: Session) -> list[Applied]:
            inner = SqlTransaction(
                session,
                self._sql,
                self._clock,
                self._index,
                locking=self.locking,
                prepared=prepared,
            )
            return await inner.apply_direct(changes)

        return await self._session.run_direct(work)

    async def apply_direct(self, changes: Sequence[Change]) -> list[Applied]:
        """``changes`` in order on this session, runs of two or more creates together
        (:mod:`.bulk_writes`)."""
        applied: list[Applied] = []
        run: list[int] = []
        for index, change in enumerate(changes):
            if change.method == "create" and change.resource is not None:
                run.append(index)
                continue
            applied += await self._creates(changes, run)
            run = []
            try:
                applied.append(await self._apply_one(change))
            except FhirError as exc:
                raise ChangeFailed(index, exc) from exc
        applied += await self._creates(changes, run)
        return applied

    async def _creates(self, changes: Sequence[Change], run: list[int]) -> list[Applied]:
        if len(run) < 2:
            return await VersionWriter.apply(self, [changes[i] for i in run]) if run else []
        versions = []
        applied = []
        for index in run:
            change = changes[index]
            assert change.resource is not None
            try:
                require_valid_key(change.resource_type, change.id)
            except FhirError as exc:
                raise ChangeFailed(index, exc) from exc
            stored = next_version(
                self._clock,
                change.resource_type,
                change.id,
                current=None,
                method="create",
                resource=change.resource,
            )
            versions.append((self._values(stored), self._rows(stored, change.resource)))
            applied.append(Applied(stored, True))
        try:
            await self._session.execute(self._sql.bulk.steps(versions))
        except FhirError as exc:
            raise ChangeFailed(run[0], exc) from exc
        return applied

    async def _insert_first(self, stored: StoredResource, resource: Resource) -> bool:
        rows = self._rows(stored, resource)
        first, then = self._sql.writes.first(self._values(stored), rows)
        return await self._session.execute_chain(first, then)

    async def _insert_next(self, stored: StoredResource, resource: Resource | None) -> bool:
        rows = self._rows(stored, resource)
        first, then = self._sql.writes.next(self._values(stored), rows)
        return await self._session.execute_chain(first, then)

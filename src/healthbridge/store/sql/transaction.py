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
from dataclasses import dataclass

from healthbridge.fhir.errors import FhirError
from healthbridge.fhir.types import Resource
from healthbridge.store.instants import Clock, from_micros, to_micros
from healthbridge.store.keys import key, resource_key
from healthbridge.store.repository import Applied, Change, ChangeFailed, StoredResource
from healthbridge.store.sql.compiled import Statement, Step
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


def version_values(stored: StoredResource, actor: str | None) -> dict[str, object]:
    """The column values of a version row, and the ``actor`` of its outbox row."""
    return {
        "type": stored.resource_type,
        "id": stored.id,
        "version_id": stored.version_id,
        "last_updated": to_micros(stored.last_updated),
        "deleted": stored.deleted,
        "method": stored.method,
        "content": stored.content,
        "rkey": resource_key(stored.resource_type, stored.id),
        "actor": actor,
    }


@dataclass(frozen=True, slots=True)
class Run:
    """Consecutive creates written together (:mod:`.bulk_writes`): their change indexes, what
    they will have written, and the statements."""

    indexes: list[int]
    applied: list[Applied]
    steps: list[Step]


@dataclass(frozen=True, slots=True)
class Planned:
    """A group of changes made ready before the write lock is taken: every version's index,
    and the runs of creates stamped and turned into statements (on SQLite the lock is held
    only while the statements run)."""

    prepared: list[Prepared]
    runs: dict[int, Run]  # by the index of the run's first change


def plan(
    index: IndexRows,
    sql: Statements,
    clock: Clock,
    changes: Sequence[Change],
    actor: str | None,
) -> Planned:
    prepared = prepare(index, changes)
    rows = {id(resource): version_index for resource, version_index in prepared}
    runs: dict[int, Run] = {}
    for indexes in _create_runs(changes):
        versions = []
        applied = []
        for position in indexes:
            change = changes[position]
            assert change.resource is not None
            try:
                require_valid_key(change.resource_type, change.id)
            except FhirError as exc:
                raise ChangeFailed(position, exc) from exc
            stored = next_version(
                clock,
                change.resource_type,
                change.id,
                current=None,
                method="create",
                resource=change.resource,
            )
            versions.append((version_values(stored, actor), rows[id(change.resource)]))
            applied.append(Applied(stored, True))
        runs[indexes[0]] = Run(indexes, applied, sql.bulk.steps(versions))
    return Planned(prepared, runs)


def _create_runs(changes: Sequence[Change]) -> list[list[int]]:
    """Runs of two or more consecutive creates."""
    runs: list[list[int]] = []
    current: list[int] = []
    for position, change in enumerate(changes):
        if change.method == "create" and change.resource is not None:
            current.append(position)
            continue
        if len(current) > 1:
            runs.append(current)
        current = []
    if len(current) > 1:
        runs.append(current)
    return runs


class SqlTransaction(VersionWriter):
    """``actor`` (:mod:`healthbridge.store.actor`) goes into every outbox row; the repository
    takes it in the caller's task, since the writes may run in another (SQLite's writer
    thread)."""

    def __init__(
        self,
        session: Session,
        sql: Statements,
        clock: Clock,
        index: IndexRows,
        *,
        actor: str | None,
        locking: bool = True,
        prepared: Sequence[Prepared] = (),
    ) -> None:
        super().__init__(clock, ATTEMPTS if locking else OPTIMISTIC_ATTEMPTS)
        self._session = session
        self._actor = actor
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

    def _rows(self, stored: StoredResource, resource: Resource | None) -> VersionIndex:
        if resource is not None:
            found = self._prepared.get(id(resource))
            if found is not None and found[0] is resource:
                return found[1]
        return self._index.rows(stored.resource_type, stored.id, resource)

    async def apply(self, changes: Sequence[Change]) -> list[Applied]:
        """All ``changes`` in one call to the session (on SQLite: one hop to the writer thread
        for the whole group instead of one per statement), made ready before it."""
        planned = plan(self._index, self._sql, self._clock, changes, self._actor)

        async def work(session: Session) -> list[Applied]:
            inner = SqlTransaction(
                session,
                self._sql,
                self._clock,
                self._index,
                actor=self._actor,
                locking=self.locking,
                prepared=planned.prepared,
            )
            return await inner.apply_planned(changes, planned)

        return await self._session.run_direct(work)

    async def apply_planned(self, changes: Sequence[Change], planned: Planned) -> list[Applied]:
        """``changes`` in order on this session: the planned runs of creates by their
        statements, every other change on its own."""
        applied: list[Applied] = []
        position = 0
        while position < len(changes):
            run = planned.runs.get(position)
            try:
                if run is not None:
                    await self._session.execute(run.steps)
                    applied += run.applied
                    position = run.indexes[-1] + 1
                    continue
                applied.append(await self._apply_one(changes[position]))
            except FhirError as exc:
                raise ChangeFailed(position, exc) from exc
            position += 1
        return applied

    async def _insert_first(self, stored: StoredResource, resource: Resource) -> bool:
        rows = self._rows(stored, resource)
        first, then = self._sql.writes.first(version_values(stored, self._actor), rows)
        return await self._session.execute_chain(first, then)

    async def _insert_next(self, stored: StoredResource, resource: Resource | None) -> bool:
        rows = self._rows(stored, resource)
        first, then = self._sql.writes.next(version_values(stored, self._actor), rows)
        return await self._session.execute_chain(first, then)

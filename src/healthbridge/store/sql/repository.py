"""The SQL :class:`~healthbridge.store.repository.Repository` over SQLite or PostgreSQL.

Implements the FHIR RESTful API's storage side (https://hl7.org/fhir/R4/http.html): read and
vread return the stored bytes verbatim, history (http.html#history, :mod:`.history`) is
keyset-paged newest first, and every committed change writes its outbox row in the same database
transaction (:mod:`.transaction`), naming the request's actor (:mod:`..actor`). The driver
(:mod:`.apsw_engine` or :mod:`.asyncpg_engine`) is chosen in
:func:`healthbridge.store.sql.open_repository`; nothing here depends on which it is.

A single create, update or delete (the plain REST interactions) runs through the engine's
``write_one`` without locks: group-committed on SQLite, one autocommitted statement per step on
PostgreSQL. Only when other writers keep changing the same resource does it fall back to a
locking unit of work, which always makes progress.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from healthbridge.fhir.definitions import Definitions, load_definitions
from healthbridge.fhir.search import Indexer
from healthbridge.fhir.search.query import SearchQuery
from healthbridge.fhir.types import Resource
from healthbridge.store.actor import current_actor
from healthbridge.store.instants import Clock, from_micros
from healthbridge.store.repository import (
    Applied,
    Change,
    HistoryPage,
    HistoryQuery,
    OutboxEvent,
    SearchPage,
    StoredResource,
    Transaction,
    VersionKey,
)
from healthbridge.store.signals import ChangeSignal
from healthbridge.store.sql.audit import SqlAuditLog
from healthbridge.store.sql.engine import Engine, Row, Session
from healthbridge.store.sql.history import history_page
from healthbridge.store.sql.indexing import IndexRows
from healthbridge.store.sql.jobs import SqlJobs
from healthbridge.store.sql.records import SqlRecords
from healthbridge.store.sql.reindex import SqlReindex
from healthbridge.store.sql.search import DEFAULT_TIMEOUT_S, SqlSearch
from healthbridge.store.sql.statements import Statements
from healthbridge.store.sql.subscriptions import SqlSubscriptions
from healthbridge.store.sql.terminology import SqlTerminology
from healthbridge.store.sql.transaction import Prepared, SqlTransaction, plan, to_stored
from healthbridge.store.versioning import (
    Contended,
    is_valid_key,
    new_id,
    not_found,
    require_live,
)

T = TypeVar("T")
OneChange = Callable[[SqlTransaction], Coroutine[Any, Any, T]]


def _event(row: Row) -> OutboxEvent:
    seq, resource_type, id, version_id, method, recorded, actor = row
    return OutboxEvent(seq, resource_type, id, version_id, method, from_micros(recorded), actor)


class SqlRepository:
    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        index: IndexRows | None = None,
        *,
        search_timeout_s: float = DEFAULT_TIMEOUT_S,
        signal: ChangeSignal | None = None,
    ) -> None:
        self._engine = engine
        self._sql = Statements(engine.dialect)
        self._clock = clock
        self._index = index or IndexRows(Indexer(load_definitions()))
        self._search_timeout_s = search_timeout_s
        self._search = SqlSearch(engine, self._index.indexer.definitions, search_timeout_s)
        self.jobs = SqlJobs(engine, clock)
        self.records = SqlRecords(engine, clock, signal)
        self.terminology = SqlTerminology(engine)
        self.audit = SqlAuditLog(engine)
        self.subscriptions = SqlSubscriptions(engine, clock)
        self.reindexer = SqlReindex(engine, self._index)

    def use_definitions(self, definitions: Definitions) -> None:
        """Index writes and search with ``definitions`` from now on (custom SearchParameters)."""
        self._index.indexer = Indexer(definitions)
        self._search = SqlSearch(self._engine, definitions, self._search_timeout_s)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        actor = current_actor()
        async with self._engine.unit_of_work() as session:
            yield SqlTransaction(session, self._sql, self._clock, self._index, actor=actor)

    async def apply(self, changes: Sequence[Change]) -> list[Applied]:
        """One atomic group, made ready here before any lock is taken (index extracted, runs
        of creates stamped and turned into statements); on SQLite it is one change of a group
        commit (one hop, shared fsync), on PostgreSQL a unit of work."""
        actor = current_actor()
        planned = plan(self._index, self._sql, self._clock, changes, actor)

        async def work(session: Session) -> list[Applied]:
            tx = SqlTransaction(
                session,
                self._sql,
                self._clock,
                self._index,
                actor=actor,
                prepared=planned.prepared,
            )
            return await tx.apply_planned(changes, planned)

        return await self._engine.write_all(work)

    def _prepared(self, resource_type: str, id: str, resource: Resource) -> Prepared | None:
        """The index of a version about to be written, extracted here, on the caller's thread:
        on SQLite the change itself runs on the writer thread while it holds the database's
        write lock, which other server processes wait for (measured: SQLite creates over HTTP
        with 2 workers 695/s when extracted under the lock)."""
        if not is_valid_key(resource_type, id):
            return None  # the change refuses the key anyway
        return resource, self._index.rows(resource_type, id, resource)

    async def create(
        self, resource_type: str, resource: Resource, id: str | None = None
    ) -> StoredResource:
        if id is None:
            id = new_id()
        prepared = self._prepared(resource_type, id, resource)
        return await self._write_one(lambda tx: tx.create(resource_type, resource, id), prepared)

    async def update(
        self, resource_type: str, id: str, resource: Resource, if_match: int | None = None
    ) -> tuple[StoredResource, bool]:
        prepared = self._prepared(resource_type, id, resource)
        return await self._write_one(
            lambda tx: tx.update(resource_type, id, resource, if_match), prepared
        )

    async def delete(
        self, resource_type: str, id: str, if_match: int | None = None
    ) -> StoredResource | None:
        return await self._write_one(lambda tx: tx.delete(resource_type, id, if_match))

    async def _write_one(self, change: OneChange[T], prepared: Prepared | None = None) -> T:
        actor = current_actor()  # here, in the caller's task: the work may run on another thread

        def lock_free(session: Session) -> Coroutine[Any, Any, T]:
            return change(
                SqlTransaction(
                    session,
                    self._sql,
                    self._clock,
                    self._index,
                    actor=actor,
                    locking=False,
                    prepared=() if prepared is None else (prepared,),
                )
            )

        try:
            return await self._engine.write_one(lock_free)
        except Contended:
            async with self._engine.unit_of_work() as session:
                tx = SqlTransaction(session, self._sql, self._clock, self._index, actor=actor)
                return await change(tx)

    async def read(self, resource_type: str, id: str) -> StoredResource:
        if not is_valid_key(resource_type, id):
            raise not_found(resource_type, id)
        row = await self._engine.fetch_one(self._sql.read_current, (resource_type, id))
        if row is None:
            raise not_found(resource_type, id)
        return require_live(to_stored(row))

    async def vread(self, resource_type: str, id: str, version_id: int) -> StoredResource:
        if not is_valid_key(resource_type, id):
            raise not_found(resource_type, id, version_id)
        args = self._sql.read_version.bind(type=resource_type, id=id, version_id=version_id)
        row = await self._engine.fetch_one(self._sql.read_version, args)
        if row is None:
            raise not_found(resource_type, id, version_id)
        return require_live(to_stored(row))

    async def versions(self, keys: Sequence[VersionKey]) -> list[StoredResource | None]:
        wanted = [key for key in dict.fromkeys(keys) if is_valid_key(key[0], key[1])]
        found: dict[VersionKey, StoredResource] = {}
        if wanted:
            statement, args = self._sql.read_versions(wanted)
            for row in await self._engine.fetch_all(statement, args):
                stored = to_stored(row)
                found[(stored.resource_type, stored.id, stored.version_id)] = stored
        return [found.get(key) for key in keys]

    async def history(self, query: HistoryQuery) -> HistoryPage:
        if query.id is not None:
            key = (query.resource_type or "", query.id)
            if not is_valid_key(*key):
                raise not_found(*key)
        async with self._engine.snapshot() as reader:
            if query.id is not None and await reader.fetch_one(self._sql.read_current, key) is None:
                raise not_found(*key)
            return await history_page(reader, self._engine.dialect, query)

    async def outbox_since(self, after_seq: int, limit: int = 100) -> list[OutboxEvent]:
        args = self._sql.outbox_since.bind(after=after_seq, limit=max(limit, 0))
        return [_event(row) for row in await self._engine.fetch_all(self._sql.outbox_since, args)]

    async def search(self, query: SearchQuery, cursor: str | None = None) -> SearchPage:
        return await self._search.search(query, cursor)

    async def explain(self, query: SearchQuery) -> str:
        """For administrators: the SQL of the first page of ``query`` and the database's plan."""
        return await self._search.explain(query)

    async def ping(self) -> None:
        await self._engine.fetch_one(self._sql.ping, ())

    async def close(self) -> None:
        await self.records.signal.close()
        await self.subscriptions.close()
        await self._engine.close()

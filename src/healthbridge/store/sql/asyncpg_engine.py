"""PostgreSQL through an asyncpg connection pool (https://magicstack.github.io/asyncpg/).

A unit of work holds one pooled connection and one database transaction (READ COMMITTED);
version increments are made race-free by the statements themselves (``SELECT ... FOR UPDATE`` on
the current row, ``INSERT ... ON CONFLICT DO NOTHING`` for a first version). Connection trouble of
any kind (refused, lost, pool exhausted, server shutting down) surfaces as ``Unavailable`` and the
open transaction is rolled back by the server, so nothing is half-written.

Serves the FHIR RESTful API (https://hl7.org/fhir/R4/http.html) through :mod:`.repository`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any, TypeVar

import asyncpg

from healthbridge.store.sql.compiled import Statement
from healthbridge.store.sql.dialects import POSTGRESQL, Dialect
from healthbridge.store.sql.engine import Args, Reader, Row, Session, Step
from healthbridge.store.sql.statements import SCHEMA_REVISION
from healthbridge.store.sql.urls import DatabaseUrl

T = TypeVar("T")
CONNECT_TIMEOUT_S = 5.0
ACQUIRE_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 10.0


def _lost(connection: Any) -> bool:
    try:
        return bool(connection.is_closed())
    except asyncpg.InterfaceError:  # the pool took it back when the server closed it
        return True


async def _guarded(work: Awaitable[T], where: str, connection: Any = None) -> T:
    """Await ``work``, mapping driver errors to the FHIR error vocabulary.

    A connection the server dropped can fail with odd client-side errors (asyncpg's
    InternalClientError, or "released back to the pool") before it knows it is closed; those
    count as connection loss too.
    """
    try:
        return await work
    except Exception as exc:
        mapped = POSTGRESQL.map_error(exc, where)
        if mapped is None and connection is not None and _lost(connection):
            mapped = POSTGRESQL.map_error(ConnectionError(f"connection lost: {exc}"), where)
        if mapped is None:
            raise
        raise mapped from exc


async def _keep_session(connection: Any) -> None:
    """Pool reset hook: HealthBridge sets no session state (no SET, LISTEN, session locks), so
    skip asyncpg's default reset query, a round trip on every release. An open transaction is
    still rolled back by asyncpg itself."""


class _Connection:
    """Statements on one held connection (a unit of work or a snapshot)."""

    def __init__(self, connection: Any, where: str) -> None:
        self._connection = connection
        self._where = where

    async def _invoke(self, method: str, statement: Statement, args: Args) -> Any:
        # Inside a coroutine, so that even a synchronous raise (the pool took the connection
        # back when the server dropped it) reaches _guarded.
        return await getattr(self._connection, method)(statement.sql, *args)

    async def call(self, method: str, statement: Statement, args: Args) -> Any:
        return await _guarded(self._invoke(method, statement, args), self._where, self._connection)

    async def fetch_one(self, statement: Statement, args: Args) -> Row | None:
        row: Row | None = await self.call("fetchrow", statement, args)
        return row

    async def fetch_all(self, statement: Statement, args: Args) -> list[Row]:
        rows: list[Row] = await self.call("fetch", statement, args)
        return rows

    async def execute_chain(self, first: Step, then: Sequence[Step]) -> bool:
        if await self.fetch_one(*first) is None:
            return False
        await self.execute(then)
        return True

    async def execute(self, steps: Sequence[Step]) -> None:
        for statement, args in steps:
            await self.call("execute", statement, args)


class AsyncpgEngine:
    def __init__(self, db: DatabaseUrl, pool: Any) -> None:
        self._where = str(db)
        self._pool = pool
        self._idle_readers: list[Any] = []
        self._max_idle_readers = max(1, pool.get_max_size() // 4)
        self._closing = False

    @classmethod
    async def open(cls, db: DatabaseUrl, pool_size: int) -> AsyncpgEngine:
        pool = await _guarded(
            asyncpg.create_pool(
                db.dsn,
                min_size=1,
                max_size=pool_size,
                timeout=CONNECT_TIMEOUT_S,
                reset=_keep_session,
                server_settings={"application_name": "healthbridge"},
            ),
            str(db),
        )
        return cls(db, pool)

    @property
    def dialect(self) -> Dialect:
        return POSTGRESQL

    @asynccontextmanager
    async def _held(self) -> AsyncIterator[Any]:
        connection = await _guarded(self._pool.acquire(timeout=ACQUIRE_TIMEOUT_S), self._where)
        try:
            yield connection
        finally:
            await self._pool.release(connection)

    async def _reader(self) -> Any:
        while self._idle_readers:
            connection = self._idle_readers.pop()
            if not _lost(connection):
                return connection
            await self._pool.release(connection)  # the server dropped it: the pool replaces it
        return await _guarded(self._pool.acquire(timeout=ACQUIRE_TIMEOUT_S), self._where)

    async def _read(self, method: str, statement: Statement, args: Args) -> Any:
        """One autocommitted read on a kept reader connection (no pool round trip), else pooled.

        asyncpg's pool acquire and release cost about as much as the query itself, so up to
        ``pool_size // 4`` idle connections stay checked out for single-statement reads, which
        leave no session state behind. A connection that failed goes back to the pool, which
        replaces it if it is broken.
        """
        connection = await self._reader()
        try:
            result = await _Connection(connection, self._where).call(method, statement, args)
        except BaseException:
            await self._pool.release(connection)
            raise
        if len(self._idle_readers) < self._max_idle_readers and not self._closing:
            self._idle_readers.append(connection)
        else:
            await self._pool.release(connection)
        return result

    async def fetch_one(self, statement: Statement, args: Args) -> Row | None:
        row: Row | None = await self._read("fetchrow", statement, args)
        return row

    async def fetch_all(self, statement: Statement, args: Args) -> list[Row]:
        rows: list[Row] = await self._read("fetch", statement, args)
        return rows

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[Reader]:
        async with self._held() as connection:
            transaction = connection.transaction(isolation="repeatable_read", readonly=True)
            await _guarded(transaction.start(), self._where)
            try:
                yield _Connection(connection, self._where)
            finally:
                with suppress(Exception):
                    await transaction.rollback()

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[Session]:
        async with self._held() as connection:
            transaction = connection.transaction()
            await _guarded(transaction.start(), self._where)
            try:
                yield _Connection(connection, self._where)
            except BaseException:
                with suppress(Exception):  # a lost connection rolls back on the server anyway
                    await transaction.rollback()
                raise
            await _guarded(transaction.commit(), self._where, connection)

    async def schema_revision(self) -> str | None:
        try:
            row = await self.fetch_one(Statement(SCHEMA_REVISION, (), {}), ())
        except asyncpg.exceptions.UndefinedTableError:
            return None
        return None if row is None else str(row[0])

    async def close(self) -> None:
        self._closing = True
        while self._idle_readers:
            await self._pool.release(self._idle_readers.pop())
        try:
            await asyncio.wait_for(self._pool.close(), CLOSE_TIMEOUT_S)
        except TimeoutError:
            self._pool.terminate()  # a connection was never released: do not hang shutdown

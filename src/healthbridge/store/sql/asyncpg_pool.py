"""PostgreSQL connections for :mod:`.asyncpg_engine`: asyncpg's pool behind a stack of idle ones.

asyncpg's ``Pool.acquire`` and ``release`` cost about as much as a point query (a timeout
context, a shielded task, several event-loop turns), so a point read through them ran at a third
of the speed of one on a held connection (https://magicstack.github.io/asyncpg/current/api/
index.html#connection-pools). :class:`Connections` therefore keeps idle connections checked out
and hands them out most recently used first. It asks the pool only when none is idle (to open
one more, up to the pool's size, or to wait for one) and gives back to the pool every connection
that may not be clean: broken, still in a transaction, interrupted mid-query (cancelled), or one
a task waiting in the pool needs. HealthBridge sets no session state (no SET, LISTEN, advisory
locks or prepared statements of its own beyond asyncpg's per-connection statement cache), so a
connection that finished its statements cleanly is as good as a fresh one.

Connection trouble of any kind maps to ``Unavailable`` (https://hl7.org/fhir/R4/http.html: 503,
nothing written) through :func:`map_driver_error`: so does any refusal while connecting (a
database not accepting connections, ...) and a statement left unanswered for
:data:`COMMAND_TIMEOUT_S` (a network that drops packets resets and refuses nothing, and would
otherwise hold the request forever); such a connection is closed, never reused.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any, TypeVar

import asyncpg

from healthbridge.fhir.errors import FhirError
from healthbridge.store.sql.dialects import POSTGRESQL

T = TypeVar("T")
ACQUIRE_TIMEOUT_S = 10.0
COMMAND_TIMEOUT_S = 30.0
"""Longest wait for the answer to one statement (asyncpg's ``command_timeout``); searches stop
sooner by their own ``statement_timeout``."""


def lost(connection: Any) -> bool:
    try:
        return bool(connection.is_closed())
    except asyncpg.InterfaceError:  # the pool took it back when the server closed it
        return True


def map_driver_error(
    exc: Exception, where: str, connection: Any = None, *, connecting: bool = False
) -> FhirError | None:
    """The FHIR error for a driver exception, or None to let it propagate as it is.

    A connection the server dropped can fail with odd client-side errors (asyncpg's
    InternalClientError, or "released back to the pool") before it knows it is closed; those
    count as connection loss too. So does any server error while ``connecting`` (such as
    "database is not currently accepting connections").
    """
    mapped = POSTGRESQL.map_error(exc, where)
    if mapped is None and isinstance(exc, asyncpg.exceptions.InternalClientError):
        # The client's protocol state is broken (seen when the server drops the connection in
        # the middle of a COPY): the connection cannot be used again, so it is closed, and the
        # server rolls back whatever the transaction wrote.
        if connection is not None:
            with suppress(Exception):
                connection.terminate()
        mapped = POSTGRESQL.map_error(ConnectionError(f"connection broken: {exc}"), where)
    if mapped is None and connecting and isinstance(exc, asyncpg.PostgresError):
        mapped = POSTGRESQL.map_error(ConnectionError(f"cannot connect: {exc}"), where)
    if mapped is None and connection is not None and lost(connection):
        mapped = POSTGRESQL.map_error(ConnectionError(f"connection lost: {exc}"), where)
    return mapped


def _protocol(connection: Any) -> Any:
    """asyncpg's protocol of ``connection``: its ``queries_count`` counts the statements put on
    the wire (one only once it is sent; there is no public counter). Taken at checkout: a
    connection terminated on error is at once detached from the pool's proxy."""
    return connection._protocol


def _unsent(exc: BaseException, protocol: Any, sent: int) -> bool:
    """``exc`` is connection trouble met before anything of this checkout was sent.

    The case: PostgreSQL terminated an idle connection (a restart, a failover,
    ``pg_terminate_backend``) and its notice has arrived but not yet its close. asyncpg then
    refuses every statement on it ("cannot switch to state ...; another operation (2) is in
    progress") without counting it closed, so :func:`lost` cannot see it at checkout.
    """
    return (
        isinstance(exc, FhirError)
        and isinstance(exc.__cause__, (asyncpg.InterfaceError, asyncpg.InternalClientError))
        and protocol.queries_count == sent
    )


def _timed_out(exc: BaseException) -> bool:
    return isinstance(exc, TimeoutError) or isinstance(exc.__cause__, TimeoutError)


async def _keep_session(connection: Any) -> None:
    """Pool reset hook: skip asyncpg's default reset query, a round trip on every release (see
    the module docstring). An open transaction is still rolled back by asyncpg itself."""


async def create_pool(dsn: str, size: int, connect_timeout_s: float) -> Any:
    return await asyncpg.create_pool(
        dsn,
        min_size=1,
        max_size=size,
        timeout=connect_timeout_s,
        command_timeout=COMMAND_TIMEOUT_S,
        reset=_keep_session,
        server_settings={"application_name": "healthbridge"},
    )


class Connections:
    """The pool's connections, idle ones kept checked out (see the module docstring)."""

    def __init__(self, pool: Any, where: str) -> None:
        self._pool = pool
        self._where = where
        self._idle: list[Any] = []
        self._waiting = 0  # tasks inside pool.acquire(): released connections go to them
        self._closing = False

    async def checkout(self) -> Any:
        while self._idle:
            connection = self._idle.pop()
            if not lost(connection):
                return connection
            await self._give_back(connection)  # the server dropped it: the pool replaces it
        self._waiting += 1
        try:
            return await self._pool.acquire(timeout=ACQUIRE_TIMEOUT_S)
        except Exception as exc:
            raise map_driver_error(exc, self._where, connecting=True) or exc from exc
        finally:
            self._waiting -= 1

    async def checkin(self, connection: Any) -> None:
        """Keep ``connection`` for the next task if it is clean; else give it to the pool."""
        if self._closing or self._waiting or lost(connection) or connection.is_in_transaction():
            await self._give_back(connection)
        else:
            self._idle.append(connection)

    async def _give_back(self, connection: Any) -> None:
        # asyncpg terminates a connection it cannot reset before raising: nothing to do then.
        with suppress(Exception):
            await self._pool.release(connection)

    async def run(self, work: Callable[[Any], Awaitable[T]]) -> T:
        """``work(connection)`` on a checked-out connection, returned as by :meth:`_after`.
        (Not a context manager: on the hot path that would cost more than the rest.)"""
        connection, result = await self._opened(work)
        await self.checkin(connection)
        return result

    @asynccontextmanager
    async def held(self, opening: Callable[[Any], Awaitable[T]]) -> AsyncIterator[tuple[Any, T]]:
        """A connection for the block, with what ``opening(connection)`` returned (a begun
        transaction, say); returned as by :meth:`_after`."""
        connection, opened = await self._opened(opening)
        try:
            yield connection, opened
        except BaseException as exc:
            await self._after(connection, exc)
            raise
        await self.checkin(connection)

    async def _opened(self, work: Callable[[Any], Awaitable[T]]) -> tuple[Any, T]:
        """A checked-out connection and ``work(connection)``. A connection that fails before it
        sent anything (see :func:`_unsent`) is dropped and ``work`` runs again on another:
        nothing of it reached the server."""
        for attempt in range(self._pool.get_max_size() + 1):
            connection = await self.checkout()
            protocol = _protocol(connection)
            sent = protocol.queries_count
            try:
                return connection, await work(connection)
            except BaseException as exc:
                again = attempt < self._pool.get_max_size() and _unsent(exc, protocol, sent)
                await self._after(connection, exc)
                if not again:
                    raise
        raise AssertionError("unreachable")  # the last attempt returns or raises

    async def _after(self, connection: Any, exc: BaseException) -> None:
        """A FHIR error (raised after a statement completed, or a mapped driver error) keeps the
        connection if it is clean; any other exception (a cancelled query, an unexpected driver
        error) gives it back to the pool, which waits for it or replaces it. A connection whose
        statement timed out is closed first: its statement may still run."""
        if _timed_out(exc):
            connection.terminate()
        if isinstance(exc, FhirError):
            await self.checkin(connection)
        else:
            await self._give_back(connection)

    async def close(self, timeout_s: float) -> None:
        self._closing = True
        while self._idle:
            await self._give_back(self._idle.pop())
        try:
            await asyncio.wait_for(self._pool.close(), timeout_s)
        except TimeoutError:
            self._pool.terminate()  # a connection was never released: do not hang shutdown

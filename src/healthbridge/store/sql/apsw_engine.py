"""SQLite through apsw: WAL, one writer thread, reads on the event loop (https://sqlite.org/wal.html).

* Writes run on a dedicated writer thread per process (:mod:`.group_commit`) inside
  ``BEGIN IMMEDIATE``: fsync and waits for other processes' write locks (``busy_timeout``) never
  block the event loop. Single changes (:meth:`ApswEngine.write_one`) are group-committed; a unit
  of work claims the thread for itself. Several server processes may share the file; their
  writers take turns through SQLite's lock.
* Reads use a separate connection directly on the event-loop thread: a point read takes a few
  microseconds, and WAL gives each statement a committed snapshot.
* ``synchronous=FULL``: a commit that returned survives power loss.

Serves the FHIR RESTful API (https://hl7.org/fhir/R4/http.html) through :mod:`.repository`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import NoReturn, TypeVar, cast

import apsw

from healthbridge.fhir.errors import TooCostly, Unavailable
from healthbridge.store.sql.compiled import Statement
from healthbridge.store.sql.dialects import SQLITE, Dialect
from healthbridge.store.sql.engine import Args, Reader, Row, Session, Step, Work
from healthbridge.store.sql.group_commit import GroupCommitWriter, Unit
from healthbridge.store.sql.schema import SchemaNotReady, missing_database
from healthbridge.store.sql.statements import SCHEMA_REVISION
from healthbridge.store.sql.urls import DatabaseUrl

T = TypeVar("T")
BUSY_TIMEOUT_MS = 10_000
SEARCH_CONNECTIONS = 4
"""Reader connections for searches, each used by one search at a time in a worker thread."""
WRITER_CACHE_KIB = 64 * 1024
WRITER_PRAGMAS = (f"cache_size=-{WRITER_CACHE_KIB}",)
"""A transaction Bundle dirties thousands of pages; with SQLite's default 2 MB page cache they
spill to the WAL (and are written again) before the commit: 15% less time in the statements of
Synthea bundles with 64-128 MB. (Checkpoints stay SQLite's automatic ones: a background
checkpointer measured slower over HTTP with two server processes, 939-1,035 against 1,089-1,191
resources/s, since its RESTART checkpoints stalled both writers.)"""
PROGRESS_STEPS = 1000
"""Virtual machine steps between two checks of a bounded statement's deadline."""


def connect(path: str, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> apsw.Connection:
    """An apsw connection to an existing database file, configured for HealthBridge."""
    connection = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READWRITE)
    connection.set_busy_timeout(busy_timeout_ms)
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON"):
        connection.execute(f"PRAGMA {pragma}").fetchall()
    return connection


def poll_for_the_lock(timeout_ms: int) -> Callable[[int], bool]:
    """A busy handler (https://sqlite.org/c3ref/busy_handler.html) for the writer connection:
    retry every 0.1 to 1 ms until ``timeout_ms`` have passed.

    SQLite's own handler sleeps 1, 2, 5, 10, ... 100 ms between tries, so a second server process
    waiting for the write lock slept on long after the first had committed; measured with two
    Granian workers on one file, the p99 create latency fell from ~0.8 s to ~60 ms with this one.
    """
    limit_s = timeout_ms / 1000
    started = 0.0

    def busy(prior_calls: int) -> bool:
        nonlocal started
        now = time.monotonic()
        if prior_calls == 0:
            started = now
        if now - started >= limit_s:
            return False
        time.sleep(min(0.0001 * (prior_calls + 1), 0.001))
        return True

    return busy


def _fetch(connection: apsw.Connection, sql: str, args: Args) -> list[Row]:
    # fetchall() finishes the statement, so no read transaction stays open behind our back.
    return cast(list[Row], connection.execute(sql, args).fetchall())


def _execute(connection: apsw.Connection, steps: Sequence[Step]) -> None:
    for statement, args in steps:
        if statement.many:
            connection.executemany(statement.sql, args).fetchall()
        else:
            connection.execute(statement.sql, args).fetchall()


def _chain(connection: apsw.Connection, first: Step, then: Sequence[Step]) -> bool:
    if not _fetch(connection, first[0].sql, first[1]):
        return False
    _execute(connection, then)
    return True


class _Statements:
    """The session methods over one primitive, :meth:`_run` (``call(writer_connection, ...)``)."""

    async def _run(self, call: Callable[..., T], *args: object) -> T:
        raise NotImplementedError

    async def fetch_one(self, statement: Statement, args: Args) -> Row | None:
        rows = await self.fetch_all(statement, args)
        return rows[0] if rows else None

    async def fetch_all(self, statement: Statement, args: Args) -> list[Row]:
        return await self._run(_fetch, statement.sql, args)

    async def execute(self, steps: Sequence[Step]) -> None:
        await self._run(_execute, steps)

    async def execute_chain(self, first: Step, then: Sequence[Step]) -> bool:
        return await self._run(_chain, first, then)


class _DirectSession(_Statements):
    """On the writer thread, inside a batch: calls the connection directly, never suspends."""

    def __init__(self, connection: apsw.Connection) -> None:
        self._connection = connection

    async def _run(self, call: Callable[..., T], *args: object) -> T:
        try:
            return call(self._connection, *args)
        except apsw.Error as exc:  # mapped here, so that the work can tell which step failed
            mapped = SQLITE.map_error(exc, "the SQLite database")
            if mapped is None:
                raise
            raise mapped from exc

    async def run_direct(self, work: Work[T]) -> T:
        return await work(self)


def _drive(work: Work[T], connection: apsw.Connection) -> T:
    """Run ``work`` to completion on this thread: over a direct session it never suspends."""
    coroutine = work(_DirectSession(connection))
    try:
        coroutine.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    coroutine.close()
    raise RuntimeError("a single change awaited something other than its session")


class _UnitSession(_Statements):
    """Statements of an open unit of work, each call one hop to the writer thread (which begins
    the transaction with the first of them), and one more hop to end it."""

    def __init__(self, unit: Unit) -> None:
        self._unit = unit

    async def _run(self, call: Callable[..., T], *args: object) -> T:
        return await self._unit.run(lambda connection: call(connection, *args))

    async def run_direct(self, work: Work[T]) -> T:
        return await self._unit.run(partial(_drive, work))


def too_costly(timeout_s: float) -> TooCostly:
    return TooCostly(
        f"The search ran longer than {timeout_s:g} s and was stopped; narrow it (more specific "
        "parameters, a smaller _count) and try again"
    )


class _BoundedReader:
    """Reads on one search connection, each in a worker thread (apsw releases the GIL while
    SQLite works, so a long search does not stall the event loop) and each interrupted
    (https://sqlite.org/c3ref/progress_handler.html) once it has run ``timeout_s`` seconds."""

    def __init__(self, engine: ApswEngine, connection: apsw.Connection, timeout_s: float) -> None:
        self._engine = engine
        self._connection = connection
        self._timeout_s = timeout_s

    async def fetch_one(self, statement: Statement, args: Args) -> Row | None:
        rows = await self.fetch_all(statement, args)
        return rows[0] if rows else None

    def _bounded_fetch(self, statement: Statement, args: Args) -> list[Row]:
        deadline = time.monotonic() + self._timeout_s
        self._connection.set_progress_handler(lambda: time.monotonic() > deadline, PROGRESS_STEPS)
        try:
            return _fetch(self._connection, statement.sql, args)
        finally:
            self._connection.set_progress_handler(None)

    async def fetch_all(self, statement: Statement, args: Args) -> list[Row]:
        try:
            return await asyncio.to_thread(self._bounded_fetch, statement, args)
        except apsw.InterruptError:
            raise too_costly(self._timeout_s) from None
        except apsw.Error as exc:
            self._engine._raise(exc)


class _SearchConnections:
    """Up to ``size`` extra reader connections for bounded (search) snapshots, opened on first
    use; a snapshot holds one for its whole duration."""

    def __init__(self, path: str, size: int) -> None:
        self._path = path
        self._idle: list[apsw.Connection] = []
        self._available = asyncio.Semaphore(size)
        self._closed = False

    async def acquire(self) -> apsw.Connection:
        await self._available.acquire()
        if self._idle:
            return self._idle.pop()
        try:
            connection = await asyncio.to_thread(connect, self._path)
        except BaseException:
            self._available.release()
            raise
        return connection

    def release(self, connection: apsw.Connection) -> None:
        if self._closed:
            connection.close()
        else:
            self._idle.append(connection)
        self._available.release()

    def close(self) -> None:
        self._closed = True
        for connection in self._idle:
            connection.close()
        self._idle.clear()


class ApswEngine:
    def __init__(self, db: DatabaseUrl, reader: apsw.Connection, writer: apsw.Connection) -> None:
        self._db = db
        self._reader = reader
        self._writer = GroupCommitWriter(writer, str(db))
        self._searchers = _SearchConnections(str(db.path), SEARCH_CONNECTIONS)
        self._closed = False

    @classmethod
    async def open(cls, db: DatabaseUrl, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> ApswEngine:
        if not db.path.is_file():
            raise SchemaNotReady(missing_database(str(db)))
        connections: list[apsw.Connection] = []
        try:
            connections.append(connect(str(db.path), busy_timeout_ms))
            connections.append(await asyncio.to_thread(connect, str(db.path), busy_timeout_ms))
        except apsw.Error as exc:
            for connection in connections:
                connection.close()
            raise SQLITE.map_error(exc, str(db)) or exc from exc
        reader, writer = connections
        writer.set_busy_handler(poll_for_the_lock(busy_timeout_ms))
        for pragma in WRITER_PRAGMAS:
            writer.execute(f"PRAGMA {pragma}").fetchall()
        return cls(db, reader, writer)

    @property
    def dialect(self) -> Dialect:
        return SQLITE

    def _raise(self, exc: apsw.Error) -> NoReturn:
        mapped = SQLITE.map_error(exc, str(self._db))
        if mapped is None:
            raise exc
        raise mapped from exc

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable(f"The SQLite database {self._db} was closed by this server")

    async def write_one(self, work: Work[T]) -> T:
        """``work`` as one change of the writer's next batch (group commit)."""
        self._check_open()
        return await self._writer.submit(partial(_drive, work))

    async def write_all(self, work: Work[T]) -> T:
        """Atomic already: a change of a group commit runs in a savepoint of its own."""
        return await self.write_one(work)

    async def on_writer(self, call: Callable[[apsw.Connection], T]) -> T:
        """Run ``call(writer_connection)`` on the writer thread, outside any transaction."""
        self._check_open()
        unit = self._writer.claim()
        done = unit.run_bare(call)
        unit.finish(commit=False)
        return await done

    async def fetch_one(self, statement: Statement, args: Args) -> Row | None:
        rows = await self.fetch_all(statement, args)
        return rows[0] if rows else None

    async def fetch_all(self, statement: Statement, args: Args) -> list[Row]:
        try:
            return _fetch(self._reader, statement.sql, args)
        except apsw.Error as exc:
            self._raise(exc)

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[Reader]:
        # The reads in between never suspend, so no other task can interleave on this connection.
        if self._reader.in_transaction:
            yield self
            return
        self._reader.execute("BEGIN")
        try:
            yield self
        finally:
            self._reader.execute("COMMIT")

    @asynccontextmanager
    async def bounded_snapshot(self, timeout_s: float) -> AsyncIterator[Reader]:
        """Several reads on one committed state, each bounded by ``timeout_s``, on a search
        connection of their own and off the event loop."""
        self._check_open()
        try:
            connection = await self._searchers.acquire()
        except apsw.Error as exc:
            self._raise(exc)
        try:
            await asyncio.to_thread(connection.execute, "BEGIN")
            try:
                yield _BoundedReader(self, connection, timeout_s)
            finally:
                if connection.in_transaction:  # an interrupt may have ended it
                    await asyncio.to_thread(connection.execute, "COMMIT")
        finally:
            self._searchers.release(connection)

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[Session]:
        self._check_open()
        unit = self._writer.claim()
        try:
            yield _UnitSession(unit)
        except BaseException:
            await unit.finish(commit=False)
            raise
        await unit.finish(commit=True)

    async def schema_revision(self) -> str | None:
        try:
            rows = self._reader.execute(SCHEMA_REVISION).fetchall()
        except apsw.SQLError:
            return None
        return str(rows[0][0]) if rows else None

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._reader.close()
        self._searchers.close()
        await self._writer.stop()

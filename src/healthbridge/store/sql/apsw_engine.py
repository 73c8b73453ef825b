"""SQLite through apsw: WAL, one writer thread, reads on the event loop (https://sqlite.org/wal.html).

* Write units of work run on a dedicated single writer thread per process (a one-thread
  executor), one at a time (an asyncio.Lock), inside ``BEGIN IMMEDIATE``: fsync and waits for
  other processes' write locks (``busy_timeout``) never block the event loop. Several server
  processes may share the file; their writers take turns through SQLite's lock.
* Reads use a separate connection directly on the event-loop thread: a point read takes a few
  microseconds, and WAL gives each statement a committed snapshot.
* ``synchronous=FULL``: a commit that returned survives power loss.

Serves the FHIR RESTful API (https://hl7.org/fhir/R4/http.html) through :mod:`.repository`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from typing import NoReturn, TypeVar, cast

import apsw

from healthbridge.fhir.errors import Unavailable
from healthbridge.store.sql.compiled import Statement
from healthbridge.store.sql.dialects import SQLITE, Dialect
from healthbridge.store.sql.engine import Args, Reader, Row, Session, Step
from healthbridge.store.sql.schema import SchemaNotReady, missing_database
from healthbridge.store.sql.statements import SCHEMA_REVISION
from healthbridge.store.sql.urls import DatabaseUrl

T = TypeVar("T")
BUSY_TIMEOUT_MS = 10_000


def connect(path: str, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> apsw.Connection:
    """An apsw connection to an existing database file, configured for HealthBridge."""
    connection = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READWRITE)
    connection.set_busy_timeout(busy_timeout_ms)
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON"):
        connection.execute(f"PRAGMA {pragma}").fetchall()
    return connection


def _fetch(connection: apsw.Connection, sql: str, args: Args) -> list[Row]:
    # fetchall() finishes the statement, so no read transaction stays open behind our back.
    return cast(list[Row], connection.execute(sql, args).fetchall())


def _execute(connection: apsw.Connection, steps: Sequence[Step]) -> None:
    for statement, args in steps:
        connection.execute(statement.sql, args).fetchall()


def _rollback(connection: apsw.Connection) -> None:
    # Never raises: it runs while another error propagates; _begin checks again anyway.
    with suppress(apsw.Error):
        if connection.in_transaction:
            connection.execute("ROLLBACK")


def _begin(connection: apsw.Connection) -> None:
    _rollback(connection)  # a unit of work abandoned by cancellation before it could end
    connection.execute("BEGIN IMMEDIATE")


def _commit(connection: apsw.Connection) -> None:
    try:
        connection.execute("COMMIT")
    except BaseException:
        _rollback(connection)
        raise


def _chain(connection: apsw.Connection, first: Step, then: Sequence[Step]) -> bool:
    if not _fetch(connection, first[0].sql, first[1]):
        return False
    _execute(connection, then)
    return True


def _in_transaction(
    connection: apsw.Connection, begin: bool, call: Callable[..., T], *args: object
) -> T:
    if begin:
        _begin(connection)
    return call(connection, *args)


class _WriterSession:
    """Statements of the open unit of work, each call one hop to the writer thread.

    ``BEGIN IMMEDIATE`` rides along with the first statement, so a unit of work that writes
    nothing costs nothing, and a create costs two hops (statements, then COMMIT).
    """

    def __init__(self, engine: ApswEngine) -> None:
        self._engine = engine
        self.begun = False

    async def _run(self, call: Callable[..., T], *args: object) -> T:
        begin, self.begun = not self.begun, True
        return await self._engine.on_writer(_in_transaction, begin, call, *args)

    async def fetch_one(self, statement: Statement, args: Args) -> Row | None:
        rows = await self.fetch_all(statement, args)
        return rows[0] if rows else None

    async def fetch_all(self, statement: Statement, args: Args) -> list[Row]:
        return await self._run(_fetch, statement.sql, args)

    async def execute(self, steps: Sequence[Step]) -> None:
        await self._run(_execute, steps)

    async def execute_chain(self, first: Step, then: Sequence[Step]) -> bool:
        return await self._run(_chain, first, then)


class ApswEngine:
    def __init__(self, db: DatabaseUrl, reader: apsw.Connection) -> None:
        self._db = db
        self._reader = reader
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="healthbridge-sqlite-writer")
        self._writer: apsw.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._closed = False

    @classmethod
    async def open(cls, db: DatabaseUrl, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> ApswEngine:
        if not db.path.is_file():
            raise SchemaNotReady(missing_database(str(db)))
        try:
            engine = cls(db, connect(str(db.path), busy_timeout_ms))
        except apsw.Error as exc:
            raise SQLITE.map_error(exc, str(db)) or exc from exc
        try:
            engine._writer = await engine._on_thread(connect, str(db.path), busy_timeout_ms)
        except BaseException:
            await engine.close()
            raise
        return engine

    @property
    def dialect(self) -> Dialect:
        return SQLITE

    def _raise(self, exc: apsw.Error) -> NoReturn:
        mapped = SQLITE.map_error(exc, str(self._db))
        if mapped is None:
            raise exc
        raise mapped from exc

    async def _on_thread(self, call: Callable[..., T], *args: object) -> T:
        if self._closed:
            raise Unavailable(f"The SQLite database {self._db} was closed by this server")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, call, *args)
        except apsw.Error as exc:
            self._raise(exc)

    async def on_writer(self, call: Callable[..., T], *args: object) -> T:
        """Run ``call(writer_connection, *args)`` on the writer thread."""
        return await self._on_thread(call, self._writer, *args)

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
    async def unit_of_work(self) -> AsyncIterator[Session]:
        async with self._write_lock:
            session = _WriterSession(self)
            try:
                yield session
            except BaseException:
                if session.begun:
                    await self.on_writer(_rollback)
                raise
            if session.begun:
                await self.on_writer(_commit)

    async def schema_revision(self) -> str | None:
        try:
            rows = self._reader.execute(SCHEMA_REVISION).fetchall()
        except apsw.SQLError:
            return None
        return str(rows[0][0]) if rows else None

    async def close(self) -> None:
        self._reader.close()
        if self._writer is not None:
            await self.on_writer(apsw.Connection.close)
            self._writer = None
        self._closed = True
        self._executor.shutdown(wait=False)

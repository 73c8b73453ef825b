"""The driver port the SQL repository runs on (https://hl7.org/fhir/R4/http.html).

Two drivers implement it: :mod:`.apsw_engine` (SQLite) and :mod:`.asyncpg_engine`
(PostgreSQL). They execute the pre-compiled :class:`~.compiled.Statement` text directly, map
driver errors to the FHIR error vocabulary, and offer

* autocommitted single reads (the hot path: one statement, no transaction bookkeeping),
* a read snapshot for multi-statement reads (a history page and its total),
* a unit of work: one connection, one database transaction, committed when the block ends
  normally and rolled back on any exception,
* a single change (:meth:`Engine.write_one`): the cheapest way each database makes one change
  durable and atomic. SQLite group-commits concurrent changes (:mod:`.group_commit`), PostgreSQL
  runs the change's statements in autocommit mode, each atomic by itself.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, TypeVar

from healthbridge.store.sql.compiled import Statement, Step
from healthbridge.store.sql.dialects import Dialect

Row = Sequence[Any]
Args = Sequence[Any]
T = TypeVar("T")
__all__ = ["Args", "Engine", "Reader", "Row", "Session", "Statement", "Step", "Work"]


class Reader(Protocol):
    async def fetch_one(self, statement: Statement, args: Args) -> Row | None: ...

    async def fetch_all(self, statement: Statement, args: Args) -> list[Row]: ...


class Session(Reader, Protocol):
    async def execute(self, steps: Sequence[Step]) -> None:
        """Run the statements in order, ignoring any rows they return."""
        ...

    async def execute_chain(self, first: Step, then: Sequence[Step]) -> bool:
        """Run ``first``; only if it returned a row, run ``then``. True when it did."""
        ...

    async def run_direct(self, work: Work[T]) -> T:
        """``work`` over this session's connection in one go (SQLite: one hop to the writer
        thread, where it must await nothing but its session)."""
        ...


Work = Callable[[Session], Coroutine[Any, Any, T]]
"""One single change over a session. It must be correct without locks held between its
statements: each write is conditional (:mod:`.writes`) and the work reads again when one wrote
nothing. On SQLite it runs on the writer thread and must await nothing but the session."""


class Engine(Reader, Protocol):
    """A connected database; its own reads run outside any unit of work (autocommit)."""

    @property
    def dialect(self) -> Dialect: ...

    def snapshot(self) -> AbstractAsyncContextManager[Reader]:
        """Several reads that see one consistent committed state."""
        ...

    def bounded_snapshot(self, timeout_s: float) -> AbstractAsyncContextManager[Reader]:
        """A :meth:`snapshot` whose statements each stop after ``timeout_s`` seconds with
        :class:`~healthbridge.fhir.errors.TooCostly` (searches)."""
        ...

    def unit_of_work(self) -> AbstractAsyncContextManager[Session]: ...

    async def write_one(self, work: Work[T]) -> T:
        """Run ``work`` and make what it wrote durable before returning its result.

        All or nothing: when this raises, nothing ``work`` wrote was committed (``Unavailable``
        when the database failed to commit), save when the connection was lost while the server
        committed, and save when the caller was cancelled: the write may still commit (SQLite's
        writer thread goes on), so a caller that must know awaits it shielded (the subscription
        worker's claim). Errors ``work`` raises reach only this caller.
        """
        ...

    async def write_all(self, work: Work[T]) -> T:
        """Run ``work`` as one atomic database transaction and make it durable before
        returning (SQLite: group-committed like :meth:`write_one`; PostgreSQL: a unit of
        work). When this raises, nothing ``work`` wrote was committed (save as for
        :meth:`write_one`)."""
        ...

    async def schema_revision(self) -> str | None:
        """The Alembic revision the database is at; None when it was never migrated."""
        ...

    async def close(self) -> None: ...

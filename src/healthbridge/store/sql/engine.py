"""The driver port the SQL repository runs on (https://hl7.org/fhir/R4/http.html).

Two drivers implement it: :mod:`.apsw_engine` (SQLite) and :mod:`.asyncpg_engine`
(PostgreSQL). They execute the pre-compiled :class:`~.compiled.Statement` text directly, map
driver errors to the FHIR error vocabulary, and offer

* autocommitted single reads (the hot path: one statement, no transaction bookkeeping),
* a read snapshot for multi-statement reads (a history page and its total),
* a unit of work: one connection, one database transaction, committed when the block ends
  normally and rolled back on any exception.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from healthbridge.store.sql.compiled import Statement, Step
from healthbridge.store.sql.dialects import Dialect

Row = Sequence[Any]
Args = Sequence[Any]
__all__ = ["Args", "Engine", "Reader", "Row", "Session", "Statement", "Step"]


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


class Engine(Reader, Protocol):
    """A connected database; its own reads run outside any unit of work (autocommit)."""

    @property
    def dialect(self) -> Dialect: ...

    def snapshot(self) -> AbstractAsyncContextManager[Reader]:
        """Several reads that see one consistent committed state."""
        ...

    def unit_of_work(self) -> AbstractAsyncContextManager[Session]: ...

    async def schema_revision(self) -> str | None:
        """The Alembic revision the database is at; None when it was never migrated."""
        ...

    async def close(self) -> None: ...

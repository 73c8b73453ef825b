"""The only place where SQLite and PostgreSQL differ (https://hl7.org/fhir/R4/http.html).

Statements are built once with SQLAlchemy Core and compiled per dialect (``?`` placeholders for
apsw, ``$1`` for asyncpg). Here live the dialect objects, the insert-if-absent construct (the same
``INSERT ... ON CONFLICT DO NOTHING`` SQL, built by each dialect's own ``insert``), the lock that
serialises concurrent migrations, and the mapping of driver errors to the FHIR error vocabulary:
connection trouble becomes ``Unavailable`` (503, nothing written), values the database rejects
(such as NUL characters in text) become ``InvalidRequest``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import apsw
import asyncpg
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    CompoundSelect,
    Select,
    Table,
    Text,
    any_,
    bindparam,
    func,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import asyncpg as sa_asyncpg
from sqlalchemy.engine import Dialect as SaDialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.visitors import InternalTraversal

from healthbridge.fhir.errors import Conflict, FhirError, InvalidRequest, Unavailable

ErrorMap = Callable[[BaseException, str], FhirError | None]


@dataclass(frozen=True, slots=True)
class Dialect:
    name: Literal["sqlite", "postgresql"]
    sa: SaDialect
    insert_if_absent: Callable[[Table], Insert]
    map_error: ErrorMap
    """The FHIR error for a driver exception (``where`` names the database), or None."""
    migration_lock: str | None
    """SQL run first in the migration transaction so concurrent migrations take turns."""
    writes_in_one_statement: bool
    """INSERT/UPDATE ... RETURNING usable in WITH, feeding further INSERTs (PostgreSQL)."""
    named_lock: str
    """Takes a lock named by a 64-bit key (``$1``/``?``) until the transaction ends. SQLite's
    unit of work holds the database's write lock already: any statement makes it take it."""


# No conflict target: a first version may collide on the primary key (type, id) or, when two
# writers create the same resource at once, on the unique resource key (rkey) as well; either way
# the row exists and the insert writes nothing (a target would let the second index raise).


def _sqlite_insert_if_absent(table: Table) -> Insert:
    return sqlite.insert(table).on_conflict_do_nothing()


def _postgres_insert_if_absent(table: Table) -> Insert:
    return postgresql.insert(table).on_conflict_do_nothing()


def _sqlite_error(exc: BaseException, where: str) -> FhirError | None:
    if isinstance(exc, apsw.BusyError | apsw.LockedError):
        return Unavailable(
            f"The SQLite database {where} stayed locked by another writer longer than the busy "
            "timeout; nothing was written, retry later"
        )
    if isinstance(exc, apsw.FullError):
        return Unavailable(f"The disk holding {where} is full; nothing was written")
    unavailable = (
        apsw.CantOpenError,
        apsw.IOError,
        apsw.ReadOnlyError,
        apsw.PermissionsError,
        apsw.ConnectionClosedError,
    )
    if isinstance(exc, unavailable):
        return Unavailable(f"The SQLite database {where} is unavailable ({exc}); nothing written")
    if isinstance(exc, apsw.ConstraintError):
        return Conflict(f"The change conflicts with stored data ({exc})")
    if isinstance(exc, apsw.TooBigError):
        return InvalidRequest(f"A value is too large to store ({exc})", code="too-costly")
    return None


def _postgres_error(exc: BaseException, where: str) -> FhirError | None:
    unavailable = (
        asyncpg.PostgresConnectionError,  # includes ConnectionDoesNotExistError
        asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, cannot connect now
        asyncpg.exceptions.InsufficientResourcesError,  # too many connections, disk full
        asyncpg.exceptions.InvalidAuthorizationSpecificationError,
        asyncpg.exceptions.InvalidCatalogNameError,  # no such database
        OSError,  # refused, unreachable, DNS; TimeoutError (pool acquire, connect)
    )
    if isinstance(exc, unavailable) or (
        isinstance(exc, asyncpg.InterfaceError) and "closed" in str(exc)
    ):
        return Unavailable(
            f"PostgreSQL at {where} is unavailable ({type(exc).__name__}: {exc}); "
            "nothing was written, retry later"
        )
    if isinstance(exc, asyncpg.exceptions.DataError):
        return InvalidRequest(f"The database rejected a value: {exc}", code="value")
    if isinstance(exc, asyncpg.exceptions.TransactionRollbackError):
        return Conflict(f"A concurrent transaction conflicted ({exc}); retry")
    if isinstance(exc, asyncpg.exceptions.IntegrityConstraintViolationError):
        return Conflict(f"The change conflicts with stored data ({exc})")
    return None


SQLITE = Dialect(
    name="sqlite",
    sa=sqlite.dialect(),
    insert_if_absent=_sqlite_insert_if_absent,
    map_error=_sqlite_error,
    migration_lock=None,  # the migration transaction starts with BEGIN IMMEDIATE instead
    named_lock="SELECT ?",
    writes_in_one_statement=False,
)

POSTGRESQL = Dialect(
    name="postgresql",
    sa=sa_asyncpg.dialect(),  # type: ignore[no-untyped-call]
    insert_if_absent=_postgres_insert_if_absent,
    map_error=_postgres_error,
    migration_lock="SELECT pg_advisory_xact_lock(7242024001)",
    named_lock="SELECT pg_advisory_xact_lock($1)",
    writes_in_one_statement=True,
)


def upsert_insert(dialect: Dialect, table: Table) -> postgresql.Insert | sqlite.Insert:
    """The dialect's own INSERT, which offers ``on_conflict_do_update`` (``INSERT ... ON
    CONFLICT (...) DO UPDATE ... WHERE ...``, the same SQL on both databases) and ``excluded``."""
    if dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


# --- search (https://hl7.org/fhir/R4/search.html): the planner's few dialect differences -------


def among_keys(
    dialect: Dialect, column: ColumnElement[int], keys: Sequence[int]
) -> ColumnElement[bool]:
    """``column`` is one of ``keys``, bound as ONE parameter whatever their number (so that the
    statement text, and its compiled form, does not depend on it): a BIGINT[] on PostgreSQL,
    a JSON array read with ``json_each`` on SQLite."""
    if dialect.name == "postgresql":
        return column == any_(bindparam(None, list(keys), type_=ARRAY(BigInteger)))
    each = func.json_each(bindparam(None, json.dumps(list(keys)), type_=Text))
    return column.in_(select(each.table_valued("value").c.value))


def among_texts(
    dialect: Dialect, column: ColumnElement[str], values: Sequence[str]
) -> ColumnElement[bool]:
    """``column`` is one of ``values``, bound as ONE parameter (as :func:`among_keys`): a
    TEXT[] on PostgreSQL, a JSON array on SQLite. Thousands of codes (a token ``:in`` or
    ``:below`` expanded) stay one shallow expression instead of a tree SQLite refuses."""
    if dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=ARRAY(Text)))
    each = func.json_each(bindparam(None, json.dumps(list(values)), type_=Text))
    return column.in_(select(each.table_valued("value").c.value))


class _ArrayOf(ColumnElement[Any]):
    """PostgreSQL's ``ARRAY(SELECT ...)``: the subquery's rows as one array value."""

    inherit_cache = True
    _traverse_internals = [("query", InternalTraversal.dp_clauseelement)]
    type = ARRAY(BigInteger())

    def __init__(self, query: Select[Any] | CompoundSelect[Any]) -> None:
        self.query = query


@compiles(_ArrayOf)
def _compile_array_of(element: _ArrayOf, compiler: Any, **kw: Any) -> str:
    return f"ARRAY({compiler.process(element.query, **kw)})"


def keys_from(
    dialect: Dialect, column: ColumnElement[int], driver: Select[Any] | CompoundSelect[Any]
) -> ColumnElement[bool]:
    """``column`` is one of the keys ``driver`` selects, with the driver run first.

    On PostgreSQL ``column = ANY(ARRAY(driver))``: the driver runs once as an init plan and the
    candidates are fetched through the unique key index. Written as ``IN (driver)`` PostgreSQL
    may flatten it into a join and, misled by its row estimates on the index tables (off by 10x
    at 1M resources), turn it inside out: ``Patient?_has:Observation:patient:code=X&birthdate=lt``
    probed every observation of 2,656 patients (775 ms) instead of collecting the 10,120 coded
    observations' patients once. SQLite materialises ``IN (driver)`` anyway."""
    if dialect.name == "postgresql":
        return column == any_(_ArrayOf(driver))
    return column.in_(driver)


def explain_prefix(dialect: Dialect) -> str:
    """What turns a SELECT into its plan: one row per plan node on either database."""
    return "EXPLAIN QUERY PLAN " if dialect.name == "sqlite" else "EXPLAIN "


class _Unindexed(ColumnElement[Any]):
    """An expression the SQLite planner must not look up by an index (a unary ``+``,
    https://sqlite.org/optoverview.html#disqualifying_where_clause_terms_using_unary_)."""

    inherit_cache = True
    _traverse_internals = [("inner", InternalTraversal.dp_clauseelement)]

    def __init__(self, inner: ColumnElement[Any]) -> None:
        self.inner = inner
        self.type = inner.type


@compiles(_Unindexed)
def _plain(element: _Unindexed, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.inner, **kw)


@compiles(_Unindexed, "sqlite")
def _plus(element: _Unindexed, compiler: SQLCompiler, **kw: Any) -> str:
    return "+" + compiler.process(element.inner, **kw)


def not_by_index(column: ColumnElement[Any]) -> ColumnElement[Any]:
    """``column`` as a term SQLite will not use an index for. A search that finds resources
    by key (``rkey IN (...)``) filters ``resource.type`` this way: without statistics SQLite's
    planner prefers the (type, ...) indexes and reads every resource of the type, where the
    driving keys need a few lookups of the unique rkey index. PostgreSQL plans from its
    statistics and gets the column as it is."""
    return _Unindexed(column)

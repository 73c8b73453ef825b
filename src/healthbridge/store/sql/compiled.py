"""Compiled SQL: SQLAlchemy Core statements turned into driver-ready text once, at start-up.

The hot paths (https://hl7.org/fhir/R4/http.html#read and the write interactions) execute this
text directly through apsw (``?`` placeholders) or asyncpg (``$1``), bypassing SQLAlchemy's
execution layer. Rows come back as plain tuples in the column order of :data:`VERSION_COLUMNS`
and :data:`OUTBOX_COLUMNS`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, Table, bindparam, select
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from healthbridge.store.sql.dialects import Dialect

VERSION_COLUMNS = ("type", "id", "version_id", "last_updated", "deleted", "method", "content")
OUTBOX_COLUMNS = ("seq", "type", "id", "version_id", "method", "recorded", "actor")


@dataclass(frozen=True, slots=True)
class Statement:
    """Compiled SQL text and the order of its positional parameters."""

    sql: str
    names: tuple[str, ...]
    defaults: Mapping[str, Any]
    many: bool = False
    """Run once per row of its arguments (executemany): the step's args are a list of rows."""
    copy: str | None = None
    """PostgreSQL only: not SQL but ``COPY`` of the step's rows (tuples in ``names`` order) into
    this table (https://www.postgresql.org/docs/current/sql-copy.html)."""

    def bind(self, **values: Any) -> tuple[Any, ...]:
        return tuple(values[n] if n in values else self.defaults[n] for n in self.names)


Step = tuple[Statement, Sequence[Any]]
"""A statement with its bound arguments (a list of argument rows when ``statement.many``)."""


def compile_statement(
    statement: ClauseElement, dialect: Dialect, *, many: bool = False
) -> Statement:
    compiled = statement.compile(dialect=dialect.sa)
    assert isinstance(compiled, SQLCompiler)
    names = tuple(compiled.positiontup or ())
    return Statement(str(compiled), names, dict(compiled.params), many)


def key_filter(table: Table) -> list[ColumnElement[bool]]:
    """``type = :type AND id = :id``."""
    return [table.c.type == bindparam("type"), table.c.id == bindparam("id")]


def bound_values(table: Table, *, skip: tuple[str, ...] = ("seq",)) -> dict[str, Any]:
    """``{column: :column}`` for an INSERT or UPDATE of ``table``."""
    return {c.name: bindparam(c.name) for c in table.columns if c.name not in skip}


def select_versions(table: Table) -> Select[Any]:
    return select(*(table.c[name] for name in VERSION_COLUMNS))

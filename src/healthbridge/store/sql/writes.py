"""Writing one version: the current row, a history row and an outbox row, all or nothing.

https://hl7.org/fhir/R4/http.html#versioning keeps every version; each committed change also
feeds the outbox. On SQLite the three rows are three statements run together on the writer
thread. On PostgreSQL they are one statement (data-modifying ``WITH`` clauses): one network round
trip, and atomic by itself, so a single change needs no explicit transaction; the version row is
sent once and the history and outbox rows are copied from what was written.

Both kinds of write are conditional, so that they are race-free without holding a lock between
reading the current version and writing the next one: version 1 is ``INSERT ... ON CONFLICT DO
NOTHING``, a later version is ``UPDATE ... WHERE version_id = :previous`` (compare-and-set).
Each returns a row only when it wrote; otherwise nothing at all is written.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import CTE, Select, bindparam, select, update

from healthbridge.store.sql.compiled import (
    Statement,
    Step,
    bound_values,
    compile_statement,
    key_filter,
)
from healthbridge.store.sql.dialects import Dialect
from healthbridge.store.sql.tables import outbox, resource, resource_history

_EVENT_COLUMNS = ("type", "id", "version_id", "method", "recorded")


def _with_history_and_outbox(written: CTE) -> Select[Any]:
    """``written`` (a version row) also copied into resource_history and the outbox."""
    columns = [column.name for column in resource_history.columns]
    history = resource_history.insert().from_select(
        columns, select(*(written.c[name] for name in columns))
    )
    event = (written.c.type, written.c.id, written.c.version_id, written.c.method)
    events = outbox.insert().from_select(_EVENT_COLUMNS, select(*event, written.c.last_updated))
    return select(written.c.version_id).add_cte(history.cte("history"), events.cte("events"))


class VersionWrites:
    """Steps that store a version, given its column values (``type``, ``id``, ...)."""

    def __init__(self, dialect: Dialect) -> None:
        c = compile_statement
        insert = dialect.insert_if_absent(resource).values(**bound_values(resource))
        replace = (
            update(resource)
            .where(*key_filter(resource), resource.c.version_id == bindparam("previous"))
            .values(**bound_values(resource, skip=("type", "id")))
        )
        self._combined = dialect.writes_in_one_statement
        if self._combined:
            written = insert.returning(*resource.columns).cte("written")
            self._first = c(_with_history_and_outbox(written), dialect)
            written = replace.returning(*resource.columns).cte("written")
            self._next = c(_with_history_and_outbox(written), dialect)
        else:
            self._first = c(insert.returning(resource.c.version_id), dialect)
            self._next = c(replace.returning(resource.c.version_id), dialect)
        self._history = c(
            resource_history.insert().values(**bound_values(resource_history)), dialect
        )
        self._outbox = c(outbox.insert().inline().values(**bound_values(outbox)), dialect)

    def _step(self, statement: Statement, values: dict[str, Any]) -> Step:
        return statement, statement.bind(**values)

    def _history_and_outbox(self, values: dict[str, Any]) -> list[Step]:
        if self._combined:
            return []
        event = values | {"recorded": values["last_updated"]}
        return [self._step(self._history, values), self._step(self._outbox, event)]

    def first(self, values: dict[str, Any]) -> tuple[Step, list[Step]]:
        """Version 1: the first step returns a row only if the id was free; run the rest then."""
        return self._step(self._first, values), self._history_and_outbox(values)

    def next(self, values: dict[str, Any]) -> tuple[Step, list[Step]]:
        """A later version: the first step returns a row only if it replaced version
        ``previous`` (``version_id - 1``); run the rest then."""
        values = values | {"previous": values["version_id"] - 1}
        return self._step(self._next, values), self._history_and_outbox(values)

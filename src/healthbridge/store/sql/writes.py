"""Writing one version: the current row, a history row and an outbox row, all or nothing.

https://hl7.org/fhir/R4/http.html#versioning keeps every version; each committed change also
feeds the outbox. On SQLite the three rows are three statements run together on the writer
thread. On PostgreSQL they are one statement (data-modifying ``WITH`` clauses): one network round
trip, and atomic by itself, so a single change needs no explicit transaction; the version row is
sent once and the history and outbox rows are copied from what was written.

The search index rows of the version (:mod:`.indexing`) are written with it: the rows of the
previous version are deleted and the new ones inserted. On SQLite that is one DELETE per index
table and one ``executemany`` INSERT per table that has rows, in the same transaction. On
PostgreSQL the rows travel as one array per column and are inserted by further ``WITH`` clauses
of the same statement (``INSERT ... SELECT FROM unnest(...)``), each guarded by the version write
having happened; all clauses of one statement see the same snapshot, so the DELETE removes only
the previous version's rows.

Both kinds of write are conditional, so that they are race-free without holding a lock between
reading the current version and writing the next one: version 1 is ``INSERT ... ON CONFLICT DO
NOTHING``, a later version is ``UPDATE ... WHERE version_id = :previous`` (compare-and-set).
Each returns a row only when it wrote; otherwise nothing at all is written.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import CTE, Select, bindparam, cast, exists, func, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.dml import Delete, Insert

from healthbridge.store.sql import text_index
from healthbridge.store.sql.compiled import (
    Statement,
    Step,
    bound_values,
    compile_statement,
    key_filter,
)
from healthbridge.store.sql.dialects import Dialect
from healthbridge.store.sql.indexing import VersionIndex
from healthbridge.store.sql.tables import SEARCH_TABLES, outbox, resource, resource_history

_EVENT_COLUMNS = ("type", "id", "version_id", "method", "recorded", "actor")


def _array_name(table: str, column: str) -> str:
    return f"{table}__{column}"


def _index_inserts(written: CTE) -> list[Insert]:
    """Per index table: insert the rows sent as one array per column, if ``written`` wrote."""
    inserts = []
    for table in SEARCH_TABLES:
        values = [c for c in table.columns if c.name != "rkey"]
        arrays = [cast(bindparam(_array_name(table.name, c.name)), ARRAY(c.type)) for c in values]
        rows = func.unnest(*arrays).table_valued(*(c.name for c in values)).render_derived("r")
        chosen = select(
            *(rows.c[c.name] for c in values), bindparam("rkey", type_=table.c.rkey.type)
        ).where(exists(select(written.c.version_id)))
        inserts.append(table.insert().from_select([*(c.name for c in values), "rkey"], chosen))
    return inserts


def _index_deletes(written: CTE) -> list[Delete]:
    return [
        table.delete().where(
            table.c.rkey == bindparam("rkey"), exists(select(written.c.version_id))
        )
        for table in SEARCH_TABLES
    ]


def _with_history_outbox_and_index(written: CTE, *, replace: bool) -> Select[Any]:
    """``written`` (a version row) also copied into resource_history and the outbox, and its
    index rows written (replacing the previous version's when ``replace``)."""
    columns = [column.name for column in resource_history.columns]
    history = resource_history.insert().from_select(
        columns, select(*(written.c[name] for name in columns))
    )
    event = (written.c.type, written.c.id, written.c.version_id, written.c.method)
    actor = bindparam("actor", type_=outbox.c.actor.type)  # who made it (store.actor)
    events = outbox.insert().from_select(
        _EVENT_COLUMNS, select(*event, written.c.last_updated, actor)
    )
    ctes = [history.cte("history"), events.cte("events")]
    if replace:
        ctes += [
            d.cte(f"d_{t.name}")
            for d, t in zip(_index_deletes(written), SEARCH_TABLES, strict=True)
        ]
    ctes += [
        i.cte(f"i_{t.name}") for i, t in zip(_index_inserts(written), SEARCH_TABLES, strict=True)
    ]
    ctes += text_index.postgres_ctes(written, replace=replace)
    return select(written.c.version_id).add_cte(*ctes)


class VersionWrites:
    """Steps that store a version, given its column values (``type``, ``id``, ``rkey``...,
    and ``actor`` for the outbox row) and its index rows."""

    def __init__(self, dialect: Dialect) -> None:
        c = compile_statement
        insert = dialect.insert_if_absent(resource).values(**bound_values(resource))
        replace = (
            update(resource)
            .where(*key_filter(resource), resource.c.version_id == bindparam("previous"))
            .values(**bound_values(resource, skip=("type", "id", "rkey")))
        )
        self._combined = dialect.writes_in_one_statement
        if self._combined:
            written = insert.returning(*resource.columns).cte("written")
            self._first = c(_with_history_outbox_and_index(written, replace=False), dialect)
            written = replace.returning(*resource.columns).cte("written")
            self._next = c(_with_history_outbox_and_index(written, replace=True), dialect)
        else:
            self._first = c(insert.returning(resource.c.version_id), dialect)
            self._next = c(replace.returning(resource.c.version_id), dialect)
        self._history = c(
            resource_history.insert().values(**bound_values(resource_history)), dialect
        )
        self._outbox = c(outbox.insert().inline().values(**bound_values(outbox)), dialect)
        self._index_delete = [
            c(table.delete().where(table.c.rkey == bindparam("rkey")), dialect)
            for table in SEARCH_TABLES
        ]
        self._index_insert = {
            table.name: c(table.insert().values(**bound_values(table)), dialect, many=True)
            for table in SEARCH_TABLES
        }
        self._text_delete = Statement(text_index.SQLITE_DELETE, ("rkey",), {})
        self._text_insert = Statement(
            text_index.SQLITE_INSERT, ("rkey", "narrative", "content"), {}
        )

    def _step(self, statement: Statement, values: dict[str, Any]) -> Step:
        return statement, statement.bind(**values)

    def _then(self, values: dict[str, Any], index: VersionIndex, *, replace: bool) -> list[Step]:
        """The steps after the version row, where the version row is a statement of its own."""
        if self._combined:
            return []
        event = values | {"recorded": values["last_updated"]}
        steps = [self._step(self._history, values), self._step(self._outbox, event)]
        rkey = values["rkey"]
        if replace:
            steps += [(statement, (rkey,)) for statement in self._index_delete]
            steps.append((self._text_delete, (rkey,)))
        steps += [(self._index_insert[name], rows) for name, rows in index.tables.items() if rows]
        if index.text is not None:
            steps.append((self._text_insert, (rkey, *index.text)))
        return steps

    def _with_arrays(self, values: dict[str, Any], index: VersionIndex) -> dict[str, Any]:
        """``values`` plus one array per index column and the text (the combined statement's
        parameters)."""
        if not self._combined:
            return values
        narrative, content = index.text or ("", "")
        arrays: dict[str, Any] = {
            "text_present": index.text is not None,
            "text_narrative": narrative,
            "text_content": content,
        }
        for table in SEARCH_TABLES:
            rows = index.tables.get(table.name, [])
            for position, column in enumerate(table.columns):
                if column.name != "rkey":
                    arrays[_array_name(table.name, column.name)] = [row[position] for row in rows]
        return values | arrays

    def first(self, values: dict[str, Any], index: VersionIndex) -> tuple[Step, list[Step]]:
        """Version 1: the first step returns a row only if the id was free; run the rest then."""
        first = self._step(self._first, self._with_arrays(values, index))
        return first, self._then(values, index, replace=False)

    def next(self, values: dict[str, Any], index: VersionIndex) -> tuple[Step, list[Step]]:
        """A later version: the first step returns a row only if it replaced version
        ``previous`` (``version_id - 1``); run the rest then."""
        values = values | {"previous": values["version_id"] - 1}
        first = self._step(self._next, self._with_arrays(values, index))
        return first, self._then(values, index, replace=True)

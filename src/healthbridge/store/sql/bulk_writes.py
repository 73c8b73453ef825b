"""Creating many resources at once: the creates of a transaction Bundle
(https://hl7.org/fhir/R4/http.html#transaction) written with a few statements per table instead
of a few per resource.

Every create of a group is version 1 of a new id, so nothing needs reading first: the current
rows, history rows, outbox rows and every index row of the whole group go in one statement per
table. On SQLite each is one ``executemany`` (one call into SQLite instead of one per resource);
on PostgreSQL one statement takes each column as an array and inserts from ``unnest`` (one round
trip per table; the version, history and outbox rows share one statement). An id that already
exists violates the primary key, which fails the whole group with a Conflict (plain INSERT, not
``ON CONFLICT DO NOTHING``): the unit of work is then rolled back, so nothing is half-written.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, bindparam, cast, func, select
from sqlalchemy.dialects.postgresql import ARRAY

from healthbridge.store.sql import text_index
from healthbridge.store.sql.compiled import Statement, Step, bound_values, compile_statement
from healthbridge.store.sql.dialects import Dialect
from healthbridge.store.sql.indexing import VersionIndex
from healthbridge.store.sql.tables import SEARCH_TABLES, outbox, resource, resource_history

Version = tuple[dict[str, Any], VersionIndex]
"""A version's column values (as :mod:`.writes` takes them) and its index."""

_VERSION = ("type", "id", "version_id", "last_updated", "deleted", "method", "content")
_EVENT = ("type", "id", "version_id", "method", "recorded")
_PG_TEXT_INSERT = (
    f"INSERT INTO {text_index.TABLE} (rkey, narrative, content) "
    "SELECT r, n, c FROM unnest($1::bigint[], $2::tsvector[], $3::tsvector[]) AS t(r, n, c)"
)


def _unnest(table: Table, columns: Sequence[str]) -> Any:
    """``SELECT * FROM unnest(:col1::type[], ...)`` over ``table``'s ``columns``."""
    arrays = [cast(bindparam(name), ARRAY(table.c[name].type)) for name in columns]
    rows = func.unnest(*arrays).table_valued(*columns).render_derived("r")
    return select(*(rows.c[name] for name in columns))


class BulkCreates:
    def __init__(self, dialect: Dialect) -> None:
        self._arrays = dialect.writes_in_one_statement  # PostgreSQL
        index_columns = {t.name: [c.name for c in t.columns] for t in SEARCH_TABLES}
        self._index_columns = index_columns
        if self._arrays:
            columns = [c.name for c in resource.columns]
            written = (
                resource.insert()
                .from_select(columns, _unnest(resource, columns))
                .returning(*(resource.c[name] for name in _VERSION))
                .cte("written")
            )
            history = resource_history.insert().from_select(
                list(_VERSION), select(*(written.c[name] for name in _VERSION))
            )
            event = select(*(written.c[name] for name in _VERSION if name in _EVENT))
            events = outbox.insert().from_select(
                list(_EVENT), event.add_columns(written.c.last_updated)
            )
            self._versions = compile_statement(events.add_cte(history.cte("history")), dialect)
            self._index = {
                t.name: compile_statement(
                    t.insert().from_select(
                        index_columns[t.name], _unnest(t, index_columns[t.name])
                    ),
                    dialect,
                )
                for t in SEARCH_TABLES
            }
            self._text = Statement(_PG_TEXT_INSERT, ("rkey", "narrative", "content"), {})
        else:
            many = {"many": True}
            self._resource = compile_statement(
                resource.insert().values(**bound_values(resource)), dialect, **many
            )
            self._history = compile_statement(
                resource_history.insert().values(**bound_values(resource_history)),
                dialect,
                **many,
            )
            self._outbox = compile_statement(
                outbox.insert().values(**bound_values(outbox)), dialect, **many
            )
            self._index = {
                t.name: compile_statement(t.insert().values(**bound_values(t)), dialect, **many)
                for t in SEARCH_TABLES
            }
            self._text = Statement(
                text_index.SQLITE_INSERT, ("rkey", "narrative", "content"), {}, many=True
            )

    def steps(self, versions: Sequence[Version]) -> list[Step]:
        """The statements that store every version of ``versions`` (all version 1)."""
        tables: dict[str, list[Any]] = {}
        texts: list[tuple[int, str, str]] = []
        for values, index in versions:
            for name, index_rows in index.tables.items():
                if index_rows:
                    tables.setdefault(name, []).extend(index_rows)
            if index.text is not None:
                texts.append((values["rkey"], *index.text))
        if self._arrays:
            return self._array_steps([v for v, _ in versions], tables, texts)
        rows = [v for v, _ in versions]
        steps: list[Step] = [
            (self._resource, [self._resource.bind(**v) for v in rows]),
            (self._history, [self._history.bind(**v) for v in rows]),
            (self._outbox, [self._outbox.bind(**v, recorded=v["last_updated"]) for v in rows]),
        ]
        steps += [(self._index[name], table_rows) for name, table_rows in tables.items()]
        if texts:
            steps.append((self._text, texts))
        return steps

    def _array_steps(
        self,
        rows: list[dict[str, Any]],
        tables: dict[str, list[Any]],
        texts: list[tuple[int, str, str]],
    ) -> list[Step]:
        columns = {name: [row[name] for row in rows] for name in rows[0]}
        steps: list[Step] = [(self._versions, self._versions.bind(**columns))]
        for name, table_rows in tables.items():
            statement = self._index[name]
            arrays = {
                column: [row[position] for row in table_rows]
                for position, column in enumerate(self._index_columns[name])
            }
            steps.append((statement, statement.bind(**arrays)))
        if texts:
            steps.append((self._text, tuple(list(column) for column in zip(*texts, strict=True))))
        return steps

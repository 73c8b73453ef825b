"""Creating many resources at once: the creates of a transaction Bundle
(https://hl7.org/fhir/R4/http.html#transaction) written with a few statements per table instead
of a few per resource.

Every create of a group is version 1 of a new id, so nothing needs reading first: the current
rows, history rows, outbox rows and every index row of the whole group go in one statement per
table. On SQLite each is one ``executemany`` (one call into SQLite instead of one per resource);
on PostgreSQL a binary ``COPY`` per table (no statement per row, no array encoding), and one
``unnest`` statement for the full text.
An id that already exists violates the primary key, which fails the whole group with a Conflict
(plain INSERT or COPY, not ``ON CONFLICT DO NOTHING``): the unit of work is then rolled back, so
nothing is half-written.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table

from healthbridge.store.sql import text_index
from healthbridge.store.sql.compiled import Statement, Step, bound_values, compile_statement
from healthbridge.store.sql.dialects import Dialect
from healthbridge.store.sql.indexing import VersionIndex
from healthbridge.store.sql.tables import SEARCH_TABLES, outbox, resource, resource_history

Version = tuple[dict[str, Any], VersionIndex]
"""A version's column values (as :mod:`.writes` takes them) and its index."""

_PG_TEXT_INSERT = (
    f"INSERT INTO {text_index.TABLE} (rkey, narrative, content) "
    "SELECT r, n::tsvector, c::tsvector "
    "FROM unnest($1::bigint[], $2::text[], $3::text[]) AS t(r, n, c) "
    # A text row left without its resource (none should be) is replaced, as single writes do.
    "ON CONFLICT (rkey) DO UPDATE SET narrative = excluded.narrative, content = excluded.content"
)


class BulkCreates:
    def __init__(self, dialect: Dialect) -> None:
        if dialect.writes_in_one_statement:  # PostgreSQL
            self._resource = _copy(resource)
            self._history = _copy(resource_history)
            self._outbox = _copy(outbox)
            self._index = {t.name: _copy(t) for t in SEARCH_TABLES}
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
        rows = [v for v, _ in versions]
        steps: list[Step] = [
            (self._resource, [self._resource.bind(**v) for v in rows]),
            (self._history, [self._history.bind(**v) for v in rows]),
            (self._outbox, [self._outbox.bind(**v, recorded=v["last_updated"]) for v in rows]),
        ]
        steps += [(self._index[name], table_rows) for name, table_rows in tables.items()]
        if texts:  # PostgreSQL takes them as three arrays (binary COPY has no tsvector codec)
            columns = tuple(list(column) for column in zip(*texts, strict=True))
            steps.append((self._text, texts if self._text.many else columns))
        return steps


def _copy(table: Table) -> Statement:
    """COPY into ``table`` (every column but an automatic ``seq``), rows in column order."""
    columns = tuple(c.name for c in table.columns if c.name != "seq")
    return Statement("", columns, {}, copy=table.name)

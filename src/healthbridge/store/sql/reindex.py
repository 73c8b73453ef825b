"""Re-extracting the search index of stored resources (after custom SearchParameters change).

https://hl7.org/fhir/R4/searchparameter.html: a new search parameter only finds resources that
were indexed with it. :meth:`SqlReindex.batch` rebuilds the index rows (all tables and the
full-text row) of the next ``limit`` live resources in resource-key order, in one unit of work
that holds their rows locked (``FOR UPDATE`` on PostgreSQL; SQLite's unit of work holds the write
lock), so a concurrent update of one of them waits and then writes its own rows over them: the
index always describes the current version. A job (:mod:`healthbridge.jobs.reindex`) calls it
until it returns no next key, saving the key as its resume cursor after each batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, bindparam, func, literal, or_, select

from healthbridge.fhir import jsonformat
from healthbridge.store.reindexing import ReindexBatch
from healthbridge.store.sql import text_index
from healthbridge.store.sql.compiled import Statement, Step, bound_values, compile_statement
from healthbridge.store.sql.engine import Engine
from healthbridge.store.sql.indexing import IndexRows
from healthbridge.store.sql.tables import SEARCH_TABLES, resource


class SqlReindex:
    def __init__(self, engine: Engine, index: IndexRows) -> None:
        self._engine = engine
        self._index = index
        dialect = engine.dialect
        c = compile_statement
        self._delete = [
            c(t.delete().where(t.c.rkey == bindparam("rkey")), dialect, many=True)
            for t in SEARCH_TABLES
        ]
        self._insert = {
            t.name: c(t.insert().values(**bound_values(t)), dialect, many=True)
            for t in SEARCH_TABLES
        }
        self._text_delete = Statement(text_index.delete_sql(dialect), ("rkey",), {}, many=True)
        self._text_insert = Statement(
            text_index.insert_sql(dialect), ("rkey", "narrative", "content"), {}, many=True
        )

    def _live(self, types: Sequence[str] | None) -> Select[Any]:
        query = select(resource.c.rkey).where(resource.c.deleted.is_(False))
        if not types:
            return query
        # One bound parameter per type (compiled statements take no expanding IN lists).
        return query.where(or_(*(resource.c.type == literal(t) for t in types)))

    async def count(self, types: Sequence[str] | None) -> int:
        subquery = self._live(types).subquery()
        statement = compile_statement(
            select(func.count()).select_from(subquery), self._engine.dialect
        )
        row = await self._engine.fetch_one(statement, statement.bind())
        return int(row[0]) if row else 0

    def _page(self, types: Sequence[str] | None, after: int | None, limit: int) -> Statement:
        query = self._live(types).add_columns(resource.c.type, resource.c.id, resource.c.content)
        if after is not None:
            query = query.where(resource.c.rkey > after)
        query = query.order_by(resource.c.rkey).limit(limit)
        if self._engine.dialect.name == "postgresql":
            query = query.with_for_update()
        return compile_statement(query, self._engine.dialect)

    async def batch(
        self, types: Sequence[str] | None, after: int | None, limit: int
    ) -> ReindexBatch:
        page = self._page(types, after, limit)
        async with self._engine.unit_of_work() as session:
            rows = await session.fetch_all(page, page.bind())
            if not rows:
                return ReindexBatch(0, None)
            await session.execute(self._steps(rows))
        return ReindexBatch(len(rows), rows[-1][0] if len(rows) == limit else None)

    def _steps(self, rows: Sequence[Sequence[Any]]) -> list[Step]:
        keys = [(row[0],) for row in rows]
        steps: list[Step] = [(statement, keys) for statement in self._delete]
        steps.append((self._text_delete, keys))
        tables: dict[str, list[tuple[Any, ...]]] = {}
        texts: list[tuple[Any, ...]] = []
        for rkey, resource_type, id, content in rows:
            version = self._index.rows(resource_type, id, jsonformat.loads(bytes(content)))
            for name, table_rows in version.tables.items():
                tables.setdefault(name, []).extend(table_rows)
            if version.text is not None:
                texts.append((rkey, *version.text))
        steps += [(self._insert[name], table_rows) for name, table_rows in tables.items()]
        if texts:
            steps.append((self._text_insert, texts))
        return steps

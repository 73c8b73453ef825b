"""Running a search on the SQL backend: https://hl7.org/fhir/R4/search.html.

:class:`SqlSearch` plans the statements (:mod:`.planner`), compiles them once per shape
(:mod:`.compiler`) and runs the page, the total and the includes in one read snapshot, so that
they agree with each other. Every statement runs under a timeout; one that passes it stops with
TooCostly (400 too-costly) rather than holding the database. :meth:`SqlSearch.explain` shows
an administrator the SQL of a search and the database's plan for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.sql import ClauseElement

from healthbridge.fhir.definitions import Definitions, load_definitions
from healthbridge.fhir.search.query import SearchQuery
from healthbridge.store.repository import MAX_INCLUDED, SearchPage
from healthbridge.store.sql.compiled import Statement
from healthbridge.store.sql.dialects import explain_prefix
from healthbridge.store.sql.engine import Engine, Reader, Row
from healthbridge.store.sql.search import cursor as cursors
from healthbridge.store.sql.search.compiler import Compiler
from healthbridge.store.sql.search.include import (
    INCLUDE_DEPTH,
    Found,
    include_statement,
    remaining_limit,
)
from healthbridge.store.sql.search.memo import Recent
from healthbridge.store.sql.search.planner import (
    PAGE_COLUMNS,
    Plan,
    Planner,
    count_statement,
    page_statement,
)
from healthbridge.store.sql.transaction import to_stored

DEFAULT_TIMEOUT_S = 10.0


def _found(row: Row) -> Found:
    return Found(row[0], row[-1], row)


class SqlSearch:
    def __init__(
        self,
        engine: Engine,
        definitions: Definitions | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self._engine = engine
        self._definitions = definitions
        self._planner: Planner | None = None
        self._compiler = Compiler(engine.dialect)
        self._pages: Recent[tuple[Statement, tuple[Any, ...]]] = Recent()
        self.timeout_s = timeout_s

    @property
    def planner(self) -> Planner:
        if self._planner is None:
            definitions = self._definitions or load_definitions()
            self._planner = Planner(definitions, self._engine.dialect)
        return self._planner

    async def search(self, query: SearchQuery, cursor: str | None = None) -> SearchPage:
        plan = self.planner.plan(query)
        position = cursors.decode(query, cursor, plan.sorts) if cursor is not None else None
        async with self._engine.bounded_snapshot(self.timeout_s) as reader:
            if query.summary == "count":
                return SearchPage([], [], None, await self._count(reader, plan))
            return await self._page(reader, plan, position)

    async def _page(self, reader: Reader, plan: Plan, position: list[Any] | None) -> SearchPage:
        query = plan.query
        count = max(query.count, 0)
        key = (query, None if position is None else tuple(position), count + 1)
        compiled, args = self._pages.get(
            key, lambda: self._compiler.compile(page_statement(plan, position, count + 1))
        )
        rows = await reader.fetch_all(compiled, args)
        page = rows[:count]
        next_cursor = None
        if len(rows) > count > 0:
            next_cursor = cursors.encode(query, page[-1][PAGE_COLUMNS:], plan.sorts)
        total = None
        if query.total in ("accurate", "estimate"):
            total = await self._count(reader, plan)
        elif query.total != "none" and position is None and len(rows) <= count:
            total = len(rows)
        found = [_found(row) for row in page]
        included, truncated = await self._included(reader, plan, found)
        return SearchPage(
            [to_stored(row[:PAGE_COLUMNS]) for row in page],
            [to_stored(f.row[:PAGE_COLUMNS]) for f in included],
            next_cursor,
            total,
            truncated,
        )

    async def _count(self, reader: Reader, plan: Plan) -> int:
        rows = await self._fetch(reader, count_statement(plan))
        return int(rows[0][0]) if rows else 0

    async def _included(
        self, reader: Reader, plan: Plan, matches: list[Found]
    ) -> tuple[list[Found], bool]:
        includes = plan.query.includes
        seen = {f.rkey for f in matches}
        out: list[Found] = []
        frontier, active = matches, list(includes)
        for _ in range(INCLUDE_DEPTH):
            if not frontier or not active:
                break
            added: dict[int, Found] = {}
            for include in active:
                limit = remaining_limit(len(out) + len(added), len(seen))
                statement = include_statement(plan.scope, include, frontier, limit)
                rows = await self._fetch(reader, statement) if statement is not None else []
                for found in map(_found, rows):
                    if found.rkey not in seen and found.rkey not in added:
                        added[found.rkey] = found
            frontier = sorted(added.values(), key=lambda f: f.rkey)
            seen.update(added)
            out.extend(frontier)
            if len(out) > MAX_INCLUDED:
                return out[:MAX_INCLUDED], True
            active = [i for i in includes if i.iterate]
        return out, False

    async def _fetch(self, reader: Reader, statement: ClauseElement) -> list[Row]:
        compiled, args = self._compiler.compile(statement)
        return await reader.fetch_all(compiled, args)

    async def explain(self, query: SearchQuery) -> str:
        """The SQL of the first page of ``query``, its parameters and the database's plan."""
        plan = self.planner.plan(query)
        statement = count_statement(plan) if query.summary == "count" else None
        if statement is None:
            statement = page_statement(plan, None, max(query.count, 0) + 1)
        compiled, args = self._compiler.compile(statement)
        prefix = explain_prefix(self._engine.dialect)
        explained = Statement(prefix + compiled.sql, compiled.names, {})
        async with self._engine.bounded_snapshot(self.timeout_s) as reader:
            rows = await reader.fetch_all(explained, args)
        return "\n".join(
            ["-- SQL", compiled.sql, "", "-- parameters", _args(args), "", "-- plan", _plan(rows)]
        )


def _args(args: Sequence[Any]) -> str:
    return "\n".join(f"{i}: {arg!r}"[:200] for i, arg in enumerate(args, 1))


def _plan(rows: Sequence[Row]) -> str:
    """PostgreSQL's plan lines as they come; SQLite's (id, parent, _, detail) as a tree."""
    if rows and len(rows[0]) == 1:
        return "\n".join(str(row[0]) for row in rows)
    depth: dict[int, int] = {0: -1}
    lines = []
    for node, parent, _, detail in rows:
        depth[node] = depth.get(parent, -1) + 1
        lines.append("  " * depth[node] + str(detail))
    return "\n".join(lines)

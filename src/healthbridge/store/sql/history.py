"""History in SQL: https://hl7.org/fhir/R4/http.html#history.

One statement per variant (level, ``_since``, ``_at``, cursor), compiled on first use and cached:
newest first by ``(last_updated, version_id, type, id)`` descending, cut with a keyset condition
``(last_updated, version_id, type, id) < cursor`` (never OFFSET), the same order and cursor as the
memory fake (:mod:`healthbridge.store.history`). ``_at`` keeps, per resource, the newest version
not after the instant. The page and its total are read in one snapshot.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Literal

from sqlalchemy import ColumnElement, bindparam, exists, func, select, tuple_

from healthbridge.store.history import Position
from healthbridge.store.instants import to_micros
from healthbridge.store.repository import HistoryPage, HistoryQuery, StoredResource
from healthbridge.store.sql.compiled import Statement, compile_statement, select_versions
from healthbridge.store.sql.dialects import Dialect
from healthbridge.store.sql.engine import Reader
from healthbridge.store.sql.tables import resource_history
from healthbridge.store.sql.transaction import to_stored

Level = Literal["system", "type", "instance"]
_CURSOR = ("after_last_updated", "after_version_id", "after_type", "after_id")


def level_of(query: HistoryQuery) -> Level:
    if query.id is not None:
        return "instance"
    return "system" if query.resource_type is None else "type"


def _filters(level: Level, since: bool, at: bool) -> list[ColumnElement[bool]]:
    h = resource_history
    filters: list[ColumnElement[bool]] = []
    if level != "system":
        filters.append(h.c.type == bindparam("type"))
    if level == "instance":
        filters.append(h.c.id == bindparam("id"))
    if since:
        filters.append(h.c.last_updated >= bindparam("since"))
    if at:
        # The version current at `at`: not after it, and no later version that is not after it.
        later = h.alias("later")
        filters.append(h.c.last_updated <= bindparam("at"))
        filters.append(
            ~exists().where(
                later.c.type == h.c.type,
                later.c.id == h.c.id,
                later.c.version_id > h.c.version_id,
                later.c.last_updated <= bindparam("at"),
            )
        )
    return filters


@cache
def page_statement(
    dialect: Dialect, level: Level, since: bool, at: bool, cursor: bool
) -> Statement:
    h = resource_history
    order = (h.c.last_updated, h.c.version_id, h.c.type, h.c.id)
    statement = select_versions(h).where(*_filters(level, since, at))
    if cursor:
        statement = statement.where(tuple_(*order) < tuple_(*map(bindparam, _CURSOR)))
    statement = statement.order_by(*(c.desc() for c in order)).limit(bindparam("limit"))
    return compile_statement(statement, dialect)


@cache
def count_statement(dialect: Dialect, level: Level, since: bool, at: bool) -> Statement:
    statement = select(func.count()).select_from(resource_history)
    return compile_statement(statement.where(*_filters(level, since, at)), dialect)


def _arguments(query: HistoryQuery) -> dict[str, Any]:
    args: dict[str, Any] = {"type": query.resource_type, "id": query.id}
    if query.since is not None:
        args["since"] = to_micros(query.since)
    if query.at is not None:
        args["at"] = to_micros(query.at)
    return args


async def _entries(reader: Reader, dialect: Dialect, query: HistoryQuery) -> list[StoredResource]:
    """Up to ``count + 1`` entries: one more than a page tells whether another page follows."""
    args = _arguments(query) | {"limit": query.count + 1}
    if query.cursor is not None:
        after = Position.decode(query.cursor)
        position = (after.last_updated, after.version_id, after.resource_type, after.id)
        args |= dict(zip(_CURSOR, position, strict=True))
    has = (query.since is not None, query.at is not None, query.cursor is not None)
    statement = page_statement(dialect, level_of(query), *has)
    return [to_stored(row) for row in await reader.fetch_all(statement, statement.bind(**args))]


async def history_page(reader: Reader, dialect: Dialect, query: HistoryQuery) -> HistoryPage:
    """One page and the total; instance-level existence is the caller's to check."""
    count = max(query.count, 0)
    entries = await _entries(reader, dialect, query) if count else []
    statement = count_statement(
        dialect, level_of(query), query.since is not None, query.at is not None
    )
    row = await reader.fetch_one(statement, statement.bind(**_arguments(query)))
    more = len(entries) > count
    entries = entries[:count]
    next_cursor = Position.of(entries[-1]).encode() if more else None
    return HistoryPage(entries, next_cursor, 0 if row is None else int(row[0]))

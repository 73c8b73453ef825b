"""The SQL statements of one search: https://hl7.org/fhir/R4/search.html.

A search is ONE statement over ``resource`` (the current versions: live ones only, of the
searched types): every clause is a condition (:mod:`.clauses`), the most selective one drives
(``rkey IN (SELECT rkey FROM search_x WHERE pkey = ... AND value ...)``) and the rest are
semi-joins on the (rkey, pkey, ...) indexes (:func:`.conditions.restrict`). The page is ordered
by the ``_sort`` values (:mod:`.sort`) and the resource key, cut after the cursor's position (a
keyset, never OFFSET) and limited to one more row than the page, which tells whether another
page follows. The total is ``COUNT(*)`` over the same conditions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy import ColumnElement, Integer, Select, false, func, select

from healthbridge.fhir.definitions import Definitions
from healthbridge.fhir.search.query import SearchQuery
from healthbridge.store.sql.compiled import VERSION_COLUMNS
from healthbridge.store.sql.dialects import Dialect, not_by_index
from healthbridge.store.sql.search.clauses import clause_condition
from healthbridge.store.sql.search.conditions import (
    Candidate,
    Condition,
    drives,
    keys_only,
    restrict,
)
from healthbridge.store.sql.search.filter import filter_condition
from healthbridge.store.sql.search.memo import ConditionCache, Recent
from healthbridge.store.sql.search.reference import compartment_condition
from healthbridge.store.sql.search.resource_columns import type_filter
from healthbridge.store.sql.search.scope import Bool, Scope, bigint, bound, text
from healthbridge.store.sql.search.sort import SortColumn, after, order_by, sort_column
from healthbridge.store.sql.tables import resource

PAGE_COLUMNS = len(VERSION_COLUMNS)
"""Page rows are the version columns, then the position: sort values and resource key."""


@dataclass(frozen=True)
class Plan:
    query: SearchQuery
    scope: Scope
    filters: tuple[Bool, ...]
    sorts: tuple[SortColumn, ...]
    conditions: tuple[Condition, ...]


class Planner:
    def __init__(self, definitions: Definitions, dialect: Dialect) -> None:
        self.definitions = definitions
        self.dialect = dialect
        self._conditions = ConditionCache()
        self._plans: Recent[Plan] = Recent()

    def _types(self, query: SearchQuery) -> tuple[str, ...]:
        if query.resource_type is not None:
            return (query.resource_type,)
        if query.types:
            return tuple(query.types)
        every = sorted(self.definitions.resource_types)
        confined = query.compartment or query.within
        if confined:
            owner = confined[0]
            return tuple(t for t in every if self.definitions.compartment_params(owner, t))
        return tuple(every)

    def plan(self, query: SearchQuery) -> Plan:
        """Raises InvalidRequest for what cannot be searched, before any statement runs. A
        plan depends on nothing but the query (and the definitions): recent ones are reused."""
        return self._plans.get(query, partial(self._plan, query))

    def _plan(self, query: SearchQuery) -> Plan:
        scope = Scope(
            self.definitions, self.dialect, query.resource_type or "Resource", self._types(query)
        )
        where = (scope.resource_type, scope.types)
        conditions: list[Condition] = [
            self._conditions.get((where, c), partial(clause_condition, scope, c))
            for c in query.clauses
        ]
        if query.compartment:
            owner_type, owner_id = query.compartment
            conditions.append(
                self._conditions.get(
                    (where, "compartment", owner_type, owner_id),
                    partial(compartment_condition, scope, owner_type, (owner_id,)),
                )
            )
        if query.within is not None:
            owner_type, owner_ids = query.within
            conditions.append(
                self._conditions.get(
                    (where, "within", owner_type, owner_ids),
                    partial(compartment_condition, scope, owner_type, owner_ids),
                )
            )
        if query.filter is not None:
            conditions.append(filter_condition(scope, query.filter))
        filters: list[Bool] = [resource.c.deleted == false()]
        kind = not_by_index(resource.c.type) if drives(conditions) else resource.c.type
        if query.resource_type is not None:
            filters.append(kind == text(query.resource_type))
        elif query.types or query.compartment or query.within:
            filters.append(type_filter(kind, scope.types))
        filters += restrict(Candidate(resource.c.rkey, resource), conditions, self.dialect)
        sorts = tuple(sort_column(scope, key, resource) for key in query.sort)
        return Plan(query, scope, tuple(filters), sorts, tuple(conditions))


def page_statement(plan: Plan, position: Sequence[Any] | None, limit: int) -> Select[Any]:
    """Up to ``limit`` rows after ``position`` (None: from the start), in result order."""
    versions = [resource.c[name] for name in VERSION_COLUMNS]
    size = bound(limit, Integer())
    if not plan.sorts:
        statement = select(*versions, resource.c.rkey).where(*plan.filters)
        if position is not None:
            statement = statement.where(resource.c.rkey > bigint(position[-1]))
        return statement.order_by(resource.c.rkey).limit(size)
    values = [s.expression.label(f"s{i}") for i, s in enumerate(plan.sorts)]
    page = select(*versions, *values, resource.c.rkey).where(*plan.filters).subquery("page")
    keys: list[ColumnElement[Any]] = [page.c[f"s{i}"] for i in range(len(values))]
    keys.append(page.c.rkey)
    statement = select(*(page.c[name] for name in VERSION_COLUMNS), *keys)
    if position is not None:
        statement = statement.where(after(keys, plan.sorts, position))
    return statement.order_by(*order_by(keys, plan.sorts)).limit(size)


def count_statement(plan: Plan) -> Select[Any]:
    """``COUNT(*)`` of the matches: of their keys in the index tables when those suffice
    (:func:`.conditions.keys_only`), far cheaper than reading ``resource``."""
    keys = keys_only(plan.conditions) if plan.query.resource_type is not None else None
    if keys is not None:
        return select(func.count()).select_from(keys.subquery("matches"))
    return select(func.count()).select_from(resource).where(*plan.filters)

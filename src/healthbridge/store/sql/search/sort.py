"""``_sort`` and the keyset that pages through it: https://hl7.org/fhir/R4/search.html#sort.

A resource's sort value for a key is the lowest of its values for an ascending key and the
highest for a descending one (dates: the lowest start, the highest end; quantities: the value, or
a Range's low/high bound), a correlated ``MIN``/``MAX`` over the parameter's index rows. Missing
values sort last in both directions: they are replaced by a sentinel beyond every real value
(the largest for ascending keys, the smallest for descending ones). Ties, and everything without
``_sort``, are ordered by ascending resource key, so the order is total and a page can continue
strictly after the last resource of the previous one (:func:`after`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import ColumnElement, FromClause, Table, and_, func, or_, select

from healthbridge.fhir.errors import InvalidRequest
from healthbridge.fhir.search.query import SortKey
from healthbridge.fhir.search.values import DATE_MAX, DATE_MIN
from healthbridge.store.sql.search.conditions import alias_at
from healthbridge.store.sql.search.scope import Bool, Scope, bigint, double, text
from healthbridge.store.sql.search.string import PREFIX_END
from healthbridge.store.sql.tables import (
    search_date,
    search_number,
    search_quantity,
    search_reference,
    search_string,
    search_token,
    search_uri,
)

Kind = Literal["int", "float", "str"]
_KINDS: dict[str, Kind] = {
    "date": "int",
    "reference": "int",
    "number": "float",
    "quantity": "float",
    "string": "str",
    "token": "str",
    "uri": "str",
}
_LAST: dict[Kind, tuple[Any, Any]] = {
    "int": (DATE_MAX, DATE_MIN),
    "float": (float("inf"), float("-inf")),
    "str": (PREFIX_END, ""),
}
"""Per kind, the sentinel of a missing value: (ascending, descending)."""


@dataclass(frozen=True)
class SortColumn:
    expression: ColumnElement[Any]
    descending: bool
    kind: Kind


def bind(kind: Kind, value: Any) -> ColumnElement[Any]:
    """``value`` bound as a parameter of the SQL type of ``kind``."""
    if kind == "int":
        return bigint(value)
    return double(value) if kind == "float" else text(value)


def _sentinel(kind: Kind, descending: bool) -> ColumnElement[Any]:
    return bind(kind, _LAST[kind][1 if descending else 0])


def _indexed(t: FromClause, param_type: str, descending: bool) -> ColumnElement[Any]:
    """The value column of index table ``t`` that a key of ``param_type`` sorts by."""
    c = t.c
    if param_type == "date":
        return c.hi if descending else c.lo
    if param_type == "quantity":
        return func.coalesce(c.value, c.hi if descending else c.lo)
    column = {"string": "normalized", "token": "code", "number": "value", "uri": "uri"}
    return c[column.get(param_type, "target")]


_TABLES: dict[str, Table] = {
    "date": search_date,
    "string": search_string,
    "token": search_token,
    "number": search_number,
    "quantity": search_quantity,
    "uri": search_uri,
    "reference": search_reference,
}


def sort_column(scope: Scope, key: SortKey, row: FromClause) -> SortColumn:
    if key.param == "_id":
        return SortColumn(row.c.id, key.descending, "str")
    if key.param == "_lastUpdated":
        return SortColumn(row.c.last_updated, key.descending, "int")
    table = _TABLES.get(key.param_type)
    if table is None:
        raise InvalidRequest(f"_sort: cannot sort by {key.param!r}", expression="_sort")
    t = alias_at(table, 0)
    value = _indexed(t, key.param_type, key.descending)
    best = (func.max if key.descending else func.min)(value)
    pkeys = scope.pkeys(scope.resource_type, key.param)
    found = select(best).where(t.c.rkey == row.c.rkey, scope.among(t.c.pkey, pkeys))
    kind = _KINDS[key.param_type]
    expression = func.coalesce(found.scalar_subquery(), _sentinel(kind, key.descending))
    return SortColumn(expression, key.descending, kind)


def order_by(columns: Sequence[ColumnElement[Any]], sorts: Sequence[SortColumn]) -> list[Any]:
    """ORDER BY terms: ``columns`` are the sort values as selected, then the resource key."""
    terms = [c.desc() if s.descending else c.asc() for c, s in zip(columns, sorts, strict=False)]
    return [*terms, columns[-1].asc()]


def after(
    columns: Sequence[ColumnElement[Any]], sorts: Sequence[SortColumn], values: Sequence[Any]
) -> Bool:
    """Rows strictly after ``values`` (one per sort column, then the resource key) in the order
    of :func:`order_by`: ``(s1 > v1) OR (s1 = v1 AND s2 > v2) OR ... OR (... AND rkey > k)``."""
    kinds: list[Kind] = [s.kind for s in sorts] + ["int"]
    bound = [bind(kind, v) for kind, v in zip(kinds, values, strict=True)]
    descending = [s.descending for s in sorts] + [False]
    alternatives: list[Bool] = []
    for i, column in enumerate(columns):
        beyond = column < bound[i] if descending[i] else column > bound[i]
        equal = [columns[j] == bound[j] for j in range(i)]
        alternatives.append(and_(*equal, beyond))
    return or_(*alternatives)

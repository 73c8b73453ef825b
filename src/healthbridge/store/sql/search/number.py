"""Number search in SQL: https://hl7.org/fhir/R4/search.html#number and #prefix.

Values are stored as double precision on both databases; the query's decimal and its implicit
precision range are converted once (correctly rounded), so the comparisons are those of match.py
``_compare``: ``eq``/``ne`` test the query's precision range ``[low, high)`` (``100`` is
[99.5, 100.5)), ``gt``/``sa``, ``lt``/``eb``, ``ge``, ``le`` the value itself, ``ap`` +-10 %.
"""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import ColumnElement, FromClause, and_, false, or_

from healthbridge.fhir.errors import InvalidRequest
from healthbridge.fhir.search.query import Clause, NumberQuery, QuantityQuery
from healthbridge.store.sql.search.conditions import RANK_RANGE, RANK_WIDE, Probe
from healthbridge.store.sql.search.scope import Bool, Scope, double
from healthbridge.store.sql.tables import search_number

_TEN_PERCENT = Decimal("0.1")
BOUNDED = frozenset({"eq", "ap"})


def compare(column: ColumnElement[float], query: NumberQuery | QuantityQuery) -> Bool:
    """``column`` compares with the query's value as its prefix asks."""
    return compare_to(column, query.prefix, query.value, query.low, query.high)


def compare_to(
    column: ColumnElement[float], prefix: str, target: Decimal, low: Decimal, high: Decimal
) -> Bool:
    """match.py ``_compare``: ``target`` with its precision range ``[low, high)``."""
    if prefix == "eq":
        return and_(column >= double(low), column < double(high))
    if prefix == "ne":
        return or_(column < double(low), column >= double(high))
    if prefix in ("gt", "sa"):
        return column > double(target)
    if prefix in ("lt", "eb"):
        return column < double(target)
    if prefix == "ge":
        return column >= double(target)
    if prefix == "le":
        return column <= double(target)
    margin = abs(target) * _TEN_PERCENT
    return and_(column >= double(target - margin), column <= double(target + margin))


def rank_of(queries: tuple[NumberQuery | QuantityQuery, ...]) -> int:
    return RANK_RANGE if all(q.prefix in BOUNDED for q in queries) else RANK_WIDE


def number_condition(scope: Scope, clause: Clause) -> Probe:
    values = tuple(v for v in clause.values if isinstance(v, NumberQuery))
    if len(values) != len(clause.values):
        raise InvalidRequest(f"{clause.name}: expected numbers", expression=clause.name)

    def test(t: FromClause) -> Bool:
        return or_(false(), *(compare(t.c.value, q) for q in values))

    pkeys = scope.pkeys(clause.resource_type, clause.param)
    return Probe(scope, search_number, pkeys, test, rank_of(values))

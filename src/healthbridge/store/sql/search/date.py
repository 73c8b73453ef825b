"""Date search in SQL: https://hl7.org/fhir/R4/search.html#date and #prefix.

Stored values and queries are both half-open ranges of UTC microseconds: ``search_date (lo, hi)``
against the query's ``[start, end)``. Each prefix is the range relation of match.py ``_ranges``
(eq: the value lies within the query range; gt: it ends after it; sa: it starts at or after its
end; ap: they overlap; ...).
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, FromClause, and_, false, not_, or_

from healthbridge.fhir.errors import InvalidRequest
from healthbridge.fhir.search.query import Clause, DateQuery
from healthbridge.store.sql.search.conditions import RANK_RANGE, RANK_WIDE, Probe
from healthbridge.store.sql.search.scope import Bool, Scope, bigint
from healthbridge.store.sql.tables import search_date

BOUNDED = frozenset({"eq", "ap"})


def range_test(
    prefix: str, lo: ColumnElement[int], hi: ColumnElement[int], start: int, end: int
) -> Bool:
    """The stored range ``[lo, hi)`` relates to the query ``[start, end)`` as ``prefix`` asks."""
    q_start, q_end = bigint(start), bigint(end)
    contained = and_(lo >= q_start, hi <= q_end)
    tests: dict[str, Bool] = {
        "eq": contained,
        "ne": not_(contained),
        "gt": hi > q_end,
        "lt": lo < q_start,
        "ge": or_(hi > q_end, contained),
        "le": or_(lo < q_start, contained),
        "sa": lo >= q_end,
        "eb": hi <= q_start,
    }
    return tests.get(prefix, and_(lo < q_end, hi > q_start))


def point_test(prefix: str, at: ColumnElement[int], start: int, end: int) -> Bool:
    """:func:`range_test` for a one-microsecond range ``[at, at + 1)`` (``_lastUpdated``),
    simplified so that an index on ``at`` serves it."""
    q_start, q_end = bigint(start), bigint(end)
    inside = and_(at >= q_start, at < q_end)
    tests: dict[str, Bool] = {
        "ne": or_(at < q_start, at >= q_end),
        "gt": at >= q_end,
        "sa": at >= q_end,
        "lt": at < q_start,
        "eb": at < q_start,
        "ge": at >= q_start,
        "le": at < q_end,
    }
    return tests.get(prefix, inside)  # eq and ap


def dates(clause: Clause) -> tuple[DateQuery, ...]:
    values = tuple(v for v in clause.values if isinstance(v, DateQuery))
    if len(values) != len(clause.values):
        raise InvalidRequest(f"{clause.name}: expected date values", expression=clause.name)
    return values


def date_condition(scope: Scope, clause: Clause) -> Probe:
    values = dates(clause)

    def test(t: FromClause) -> Bool:
        tests = [range_test(q.prefix, t.c.lo, t.c.hi, q.start, q.end) for q in values]
        return or_(false(), *tests)

    rank = RANK_RANGE if all(q.prefix in BOUNDED for q in values) else RANK_WIDE
    return Probe(scope, search_date, scope.pkeys(clause.resource_type, clause.param), test, rank)

"""String search in SQL: https://hl7.org/fhir/R4/search.html#string.

Over ``search_string (normalized, exact)``: by default the normalized value (case-folded, accents
removed) starts with the normalized query, written as the range ``normalized >= :v AND
normalized < :v || U+10FFFF`` so that the (pkey, normalized) index answers it (the text columns
compare by code point on both databases: SQLite's BINARY collation, and the C collation on
PostgreSQL). ``:contains`` is ``LIKE '%v%'`` with the query's ``%``, ``_`` and ``\\`` escaped;
``:exact`` compares the stored value as written. ``_filter`` adds two internal modifiers on the
normalized value: ``equals`` (``eq``) and ``ends-with`` (``ew``).
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, FromClause, and_, false, or_

from healthbridge.fhir.errors import InvalidRequest
from healthbridge.fhir.search.query import Clause, StringQuery
from healthbridge.store.sql.search.conditions import RANK_EXACT, RANK_RANGE, RANK_SCAN, Probe
from healthbridge.store.sql.search.scope import Bool, Scope, text
from healthbridge.store.sql.tables import search_string

PREFIX_END = "\U0010ffff"
"""The largest code point: every string that starts with ``v`` sorts before ``v + PREFIX_END``."""
LIKE_ESCAPE = "\\"


def prefix_test(column: ColumnElement[str], value: str) -> Bool:
    """``column`` starts with ``value``, as an index range."""
    return and_(column >= text(value), column < text(value + PREFIX_END))


def escape_like(value: str) -> str:
    """``value`` with LIKE's wildcards and the escape character itself escaped."""
    for char in (LIKE_ESCAPE, "%", "_"):
        value = value.replace(char, LIKE_ESCAPE + char)
    return value


def contains_test(column: ColumnElement[str], value: str) -> Bool:
    return column.like(text(f"%{escape_like(value)}%"), escape=LIKE_ESCAPE)


def ends_with_test(column: ColumnElement[str], value: str) -> Bool:
    return column.like(text(f"%{escape_like(value)}"), escape=LIKE_ESCAPE)


def _strings(clause: Clause) -> tuple[StringQuery, ...]:
    values = tuple(v for v in clause.values if isinstance(v, StringQuery))
    if len(values) != len(clause.values):
        raise InvalidRequest(f"{clause.name}: expected string values", expression=clause.name)
    return values


def string_condition(scope: Scope, clause: Clause) -> Probe:
    values = _strings(clause)
    modifier = clause.modifier

    def test(t: FromClause) -> Bool:
        if modifier == "exact":
            tests = [t.c.exact == text(q.value) for q in values]
        elif modifier == "equals":
            tests = [t.c.normalized == text(q.normalized) for q in values]
        elif modifier == "contains":
            tests = [contains_test(t.c.normalized, q.normalized) for q in values]
        elif modifier == "ends-with":
            tests = [ends_with_test(t.c.normalized, q.normalized) for q in values]
        else:
            tests = [prefix_test(t.c.normalized, q.normalized) for q in values]
        return or_(false(), *tests)

    ranks = {
        "exact": RANK_EXACT,
        "equals": RANK_EXACT,
        "contains": RANK_SCAN,
        "ends-with": RANK_SCAN,
    }
    rank = ranks.get(modifier or "", RANK_RANGE)
    pkeys = scope.pkeys(clause.resource_type, clause.param)
    return Probe(scope, search_string, pkeys, test, rank)

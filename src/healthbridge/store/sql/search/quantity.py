"""Quantity search in SQL: https://hl7.org/fhir/R4/search.html#quantity.

``[prefix]number|system|code`` over ``search_quantity``: the system must be equal when given,
the code equal to the stored code or unit, and the number compares as in :mod:`.number`. A Range
(stored with ``value`` NULL and bounds ``lo``/``hi``, NULL when open) matches when either bound
does, an open bound being -/+ infinity (match.py ``_quantity``). A UCUM query also matches UCUM
quantities in other units of the same dimension, compared in base units
(``canonical_code``/``canonical_value``: 5.4 mg finds 0.0054 g; match.py ``_canonically``).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, FromClause, and_, false, func, or_

from healthbridge.fhir.errors import InvalidRequest
from healthbridge.fhir.search.match import canonical_query
from healthbridge.fhir.search.query import Clause, QuantityQuery
from healthbridge.store.sql.search.conditions import Probe
from healthbridge.store.sql.search.number import compare, compare_to, rank_of
from healthbridge.store.sql.search.scope import Bool, Scope, double, text
from healthbridge.store.sql.tables import search_quantity


@dataclass(frozen=True)
class QuantityColumns:
    """Where a quantity is stored: ``search_quantity`` or a composite's second component."""

    value: ColumnElement[float]
    lo: ColumnElement[float]
    hi: ColumnElement[float]
    system: ColumnElement[str]
    code: ColumnElement[str]
    unit: ColumnElement[str]
    canonical_code: ColumnElement[str] | None = None
    canonical_value: ColumnElement[float] | None = None


def quantity_test(columns: QuantityColumns, query: QuantityQuery) -> Bool:
    same = _same_units(columns, query)
    wanted = canonical_query(query)
    if wanted is None or columns.canonical_code is None or columns.canonical_value is None:
        return same
    code, target, low, high = wanted
    in_base = and_(
        columns.canonical_code == text(code),
        compare_to(columns.canonical_value, query.prefix, target, low, high),
    )
    return or_(same, in_base)


def _same_units(columns: QuantityColumns, query: QuantityQuery) -> Bool:
    tests: list[Bool] = []
    if query.system is not None:
        tests.append(columns.system == text(query.system))
    if query.code is not None:
        tests.append(or_(columns.code == text(query.code), columns.unit == text(query.code)))
    low = func.coalesce(columns.lo, double(float("-inf")))
    high = func.coalesce(columns.hi, double(float("inf")))
    tests.append(
        or_(
            and_(columns.value.is_not(None), compare(columns.value, query)),
            and_(columns.value.is_(None), or_(compare(low, query), compare(high, query))),
        )
    )
    return and_(*tests)


def quantity_condition(scope: Scope, clause: Clause) -> Probe:
    values = tuple(v for v in clause.values if isinstance(v, QuantityQuery))
    if len(values) != len(clause.values):
        raise InvalidRequest(f"{clause.name}: expected quantities", expression=clause.name)

    def test(t: FromClause) -> Bool:
        c = t.c
        columns = QuantityColumns(
            c.value, c.lo, c.hi, c.system, c.code, c.unit, c.canonical_code, c.canonical_value
        )
        return or_(false(), *(quantity_test(columns, q) for q in values))

    pkeys = scope.pkeys(clause.resource_type, clause.param)
    return Probe(scope, search_quantity, pkeys, test, rank_of(values))

"""Composite search in SQL: https://hl7.org/fhir/R4/search.html#composite.

``code-value-quantity=http://loinc.org|8480-6$gt100`` matches when one stored combination (one
``search_composite`` row) matches every component: the first component, a token or a reference,
in ``a_system``/``a_code``; the second in the columns of its type (``b_*``); a third number in
``c_value``. The components' own semantics are those of their parameter types.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import FromClause, and_, false, or_

from healthbridge.fhir.errors import InvalidRequest
from healthbridge.fhir.search.query import (
    Clause,
    CompositeQuery,
    DateQuery,
    NumberQuery,
    QuantityQuery,
    QueryValue,
    ReferenceQuery,
    StringQuery,
    TokenQuery,
)
from healthbridge.store.sql.search.conditions import RANK_CODE, RANK_RANGE, Probe
from healthbridge.store.sql.search.date import range_test
from healthbridge.store.sql.search.number import compare
from healthbridge.store.sql.search.quantity import QuantityColumns, quantity_test
from healthbridge.store.sql.search.scope import Bool, Scope, text
from healthbridge.store.sql.search.string import prefix_test
from healthbridge.store.sql.search.token import token_test
from healthbridge.store.sql.tables import search_composite

Targets = Callable[[int], tuple[str, ...]]
"""The types the reference component at a position may point at."""


def _first(t: FromClause, part: QueryValue, targets: tuple[str, ...]) -> Bool | None:
    if isinstance(part, TokenQuery):
        return token_test(t.c.a_code, t.c.a_system, part)
    if isinstance(part, ReferenceQuery):
        texts: list[str] = []
        if part.id is not None:
            types = (part.resource_type,) if part.resource_type else targets
            texts.extend(f"{kind}/{part.id}" for kind in types)
        if part.url is not None:
            texts.append(part.url)
        return or_(false(), *(t.c.a_code == text(value) for value in dict.fromkeys(texts)))
    return None


def _second(t: FromClause, part: QueryValue) -> Bool | None:
    if isinstance(part, TokenQuery):
        return token_test(t.c.b_code, t.c.b_system, part)
    if isinstance(part, QuantityQuery):
        c = t.c
        columns = QuantityColumns(c.b_value, c.b_lo, c.b_hi, c.b_system, c.b_code, c.b_unit)
        return quantity_test(columns, part)
    if isinstance(part, NumberQuery):
        return compare(t.c.b_value, part)
    if isinstance(part, DateQuery):
        return range_test(part.prefix, t.c.b_start, t.c.b_end, part.start, part.end)
    if isinstance(part, StringQuery):
        return prefix_test(t.c.b_string, part.normalized)
    return None


def _combination(t: FromClause, value: CompositeQuery, targets: Targets) -> Bool | None:
    parts = value.parts
    if len(parts) not in (2, 3):
        return None
    tests = [_first(t, parts[0], targets(0)), _second(t, parts[1])]
    if len(parts) == 3:
        third = parts[2]
        tests.append(compare(t.c.c_value, third) if isinstance(third, NumberQuery) else None)
    if any(test is None for test in tests):
        return None
    return and_(*(test for test in tests if test is not None))


def composite_condition(scope: Scope, clause: Clause) -> Probe:
    definition = scope.parameter(clause.resource_type, clause.param, clause.name)

    def targets(position: int) -> tuple[str, ...]:
        component = definition.component[position]
        found = scope.definitions.search_parameter(component.definition)
        return scope.reference_targets(found) if found is not None else ()

    values = [v for v in clause.values if isinstance(v, CompositeQuery)]
    if len(values) != len(clause.values):
        raise InvalidRequest(f"{clause.name}: expected composite values", expression=clause.name)

    def test(t: FromClause) -> Bool:
        tests = [_combination(t, value, targets) for value in values]
        if any(test is None for test in tests):
            raise InvalidRequest(
                f"{clause.name}: this composite parameter cannot be searched",
                code="not-supported",
                expression=clause.name,
            )
        return or_(false(), *(test for test in tests if test is not None))

    code_first = all(isinstance(v.parts[0], TokenQuery) and v.parts[0].code for v in values)
    rank = RANK_CODE + 5 if code_first else RANK_RANGE
    test(search_composite)  # refuse unsearchable composites now, not while compiling
    return Probe(
        scope, search_composite, scope.pkeys(clause.resource_type, clause.param), test, rank
    )

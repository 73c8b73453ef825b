"""``_filter`` in SQL: https://hl7.org/fhir/R4/search_filter.html.

The parsed filter is a tree of ordinary clauses (:mod:`healthbridge.fhir.search.filter`) joined
by ``and``, ``or`` and ``not``; it becomes the same tree of conditions (:mod:`.conditions`), ANDed
with the query's other clauses, so its leaves are the semi-joins of plain search.
"""

from __future__ import annotations

from healthbridge.fhir.search.query import Clause, FilterAnd, FilterExpr, FilterNot
from healthbridge.store.sql.search.clauses import clause_condition
from healthbridge.store.sql.search.conditions import AllOf, AnyOf, Condition, Negated
from healthbridge.store.sql.search.scope import Scope


def filter_condition(scope: Scope, expression: FilterExpr) -> Condition:
    if isinstance(expression, Clause):
        return clause_condition(scope, expression)
    if isinstance(expression, FilterNot):
        return Negated(filter_condition(scope, expression.item))
    parts = tuple(filter_condition(scope, item) for item in expression.items)
    if len(parts) == 1:
        return parts[0]
    return AllOf(parts) if isinstance(expression, FilterAnd) else AnyOf(parts)

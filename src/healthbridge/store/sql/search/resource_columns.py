"""``_id``, ``_lastUpdated`` and ``_type`` in SQL: https://hl7.org/fhir/R4/search.html#all.

These are not index rows but the ``resource`` table itself. ``_id=x`` on type T is the resource
with key ``resource_key(T, x)``: ``rkey IN (...)``, answered by the unique rkey index (at system
level one key per type). ``_lastUpdated`` compares ``resource.last_updated``, a one-microsecond
range, on the (type, last_updated) index. ``_type`` restricts ``resource.type``.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, FromClause, false, or_

from healthbridge.fhir.errors import InvalidRequest
from healthbridge.fhir.search.query import Clause, MissingQuery, TokenQuery
from healthbridge.store.sql.search.conditions import Condition, Constant, Keys, Negated, RowTest
from healthbridge.store.sql.search.date import dates, point_test
from healthbridge.store.sql.search.scope import Bool, Scope, text
from healthbridge.store.sql.search.token import TERMINOLOGY

COLUMN_PARAMS = frozenset({"_id", "_lastUpdated"})


def _missing(clause: Clause) -> Condition:
    """Every resource has an id and a lastUpdated."""
    asked = {v.missing for v in clause.values if isinstance(v, MissingQuery)}
    return Constant(False in asked)


def id_condition(scope: Scope, clause: Clause) -> Condition:
    if clause.modifier == "missing":
        return _missing(clause)
    if clause.modifier in TERMINOLOGY:
        raise InvalidRequest(
            f"{clause.name}: :{clause.modifier} is not supported for _id",
            code="not-supported",
            expression=clause.name,
        )
    if clause.modifier in ("text", "of-type"):
        return Constant(False)  # an id has no display text and no identifier type
    ids: list[str] = []
    for value in clause.values:
        if not isinstance(value, TokenQuery):
            raise InvalidRequest(f"{clause.name}: expected ids", expression=clause.name)
        if value.code is None and value.system == "":
            return Negated(Constant(True)) if clause.modifier == "not" else Constant(True)
        if value.code is not None and value.system in (None, ""):
            ids.append(value.code)
    types = scope.types_of(clause.resource_type)
    keys = tuple(k for id in dict.fromkeys(ids) for k in scope.resource_keys(types, id))
    found: Condition = Keys(scope, keys) if keys else Constant(False)
    return Negated(found) if clause.modifier == "not" else found


def last_updated_condition(scope: Scope, clause: Clause) -> Condition:
    if clause.modifier == "missing":
        return _missing(clause)
    values = dates(clause)

    def test(row: FromClause) -> Bool:
        at = row.c.last_updated
        return or_(false(), *(point_test(q.prefix, at, q.start, q.end) for q in values))

    return RowTest(test)


def column_condition(scope: Scope, clause: Clause) -> Condition:
    if clause.param == "_id":
        return id_condition(scope, clause)
    return last_updated_condition(scope, clause)


def type_filter(column: ColumnElement[str], types: Sequence[str]) -> Bool:
    """``resource.type`` (``column``) is one of ``types``."""
    if len(types) == 1:
        return column == text(types[0])
    return column.in_([text(t) for t in types])

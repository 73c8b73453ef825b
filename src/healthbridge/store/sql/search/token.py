"""Token search in SQL: https://hl7.org/fhir/R4/search.html#token.

``[system]|[code]`` over ``search_token (code, system)``: a bare code matches any system, ``|code``
only rows without a system, ``system|`` every code of the system. ``:not`` is a NOT EXISTS over the
values (resources without the element match it), ``:text`` a starts-with search of the display
texts stored under the ``text`` facet (:mod:`.string`), ``:of-type`` the ``of-type`` facet rows
(``system`` = the identifier type's system, ``code`` = ``"{type code}|{value}"``).
More than :data:`SHORT_LIST` codes of one system (a token ``:in`` or ``:below`` that the REST
layer expanded into codes) are one list parameter (:func:`among_texts`), so that thousands of
codes stay one shallow expression. ``:above``/``:below``/``:in``/``:not-in`` themselves are
rewritten before the store sees them (rest/search_terminology.py) and refused here.
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import ColumnElement, FromClause, and_, false, or_

from healthbridge.fhir.errors import InvalidRequest
from healthbridge.fhir.search.query import Clause, CompositeQuery, StringQuery, TokenQuery
from healthbridge.store.sql.dialects import among_texts
from healthbridge.store.sql.search.conditions import (
    RANK_CODE,
    RANK_EXACT,
    RANK_IDENTIFIER,
    RANK_WIDE,
    Condition,
    Negated,
    Probe,
)
from healthbridge.store.sql.search.scope import SHORT_LIST, Bool, Scope, text
from healthbridge.store.sql.search.string import prefix_test
from healthbridge.store.sql.tables import search_string, search_token

TERMINOLOGY = frozenset({"above", "below", "in", "not-in"})


def token_test(code: ColumnElement[str], system: ColumnElement[str], query: TokenQuery) -> Bool:
    """The row (``code``, ``system``) matches ``query`` (as match.py ``_token``)."""
    if query.code is None and query.system is None:
        return false()
    tests: list[Bool] = []
    if query.code is not None:
        tests.append(code == text(query.code))
    if query.system == "":
        tests.append(system.is_(None))
    elif query.system is not None:
        tests.append(system == text(query.system))
    return and_(*tests)


def token_rank(queries: tuple[TokenQuery, ...], identifier: bool = False) -> int:
    """Codes are selective, identifiers (``identifier``, ``:identifier``) more so: a chain
    through ``subject:Patient.identifier=...`` should drive before a common code."""
    if not all(q.code is not None for q in queries):
        return RANK_WIDE
    return RANK_IDENTIFIER if identifier else RANK_CODE


def _tokens(clause: Clause) -> tuple[TokenQuery, ...]:
    values = tuple(v for v in clause.values if isinstance(v, TokenQuery))
    if len(values) != len(clause.values):
        raise InvalidRequest(f"{clause.name}: expected token values", expression=clause.name)
    return values


def _grouped(scope: Scope, t: FromClause, values: tuple[TokenQuery, ...]) -> Bool:
    """Any of ``values``; a system's codes as one list when there are many of them."""
    by_system: dict[str | None, list[str]] = defaultdict(list)
    for query in values:
        if query.code is not None:
            by_system[query.system].append(query.code)
    tests: list[Bool] = []
    for system, codes in by_system.items():
        if len(codes) <= SHORT_LIST:
            tests += [token_test(t.c.code, t.c.system, TokenQuery(system, c)) for c in codes]
            continue
        listed = among_texts(scope.dialect, t.c.code, list(dict.fromkeys(codes)))
        if system is not None:
            listed = and_(listed, token_test(t.c.code, t.c.system, TokenQuery(system, None)))
        tests.append(listed)
    tests += [token_test(t.c.code, t.c.system, q) for q in values if q.code is None]
    return or_(false(), *tests)


def token_probe(scope: Scope, clause: Clause, facet: str = "") -> Probe:
    """Rows of ``search_token`` (under ``facet``) matching any of the clause's tokens."""
    values = _tokens(clause)

    def test(t: FromClause) -> Bool:
        if len(values) > SHORT_LIST:
            return _grouped(scope, t, values)
        return or_(false(), *(token_test(t.c.code, t.c.system, q) for q in values))

    pkeys = scope.pkeys(clause.resource_type, clause.param, facet)
    identifier = clause.param == "identifier" or facet == "identifier"
    return Probe(scope, search_token, pkeys, test, token_rank(values, identifier))


def _text(scope: Scope, clause: Clause) -> Condition:
    values = [v.normalized for v in clause.values if isinstance(v, StringQuery)]

    def test(t: FromClause) -> Bool:
        return or_(false(), *(prefix_test(t.c.normalized, v) for v in values))

    pkeys = scope.pkeys(clause.resource_type, clause.param, "text")
    return Probe(scope, search_string, pkeys, test, RANK_WIDE)


def _of_type(scope: Scope, clause: Clause) -> Condition:
    pairs: list[tuple[str | None, str]] = []
    for value in clause.values:
        kind, ident = value.parts if isinstance(value, CompositeQuery) else (None, None)
        if not isinstance(kind, TokenQuery) or not isinstance(ident, TokenQuery):
            raise InvalidRequest(
                f"{clause.name}: expected system|code|value", expression=clause.name
            )
        pairs.append((kind.system, f"{kind.code}|{ident.code}"))

    def test(t: FromClause) -> Bool:
        return or_(false(), *(token_test(t.c.code, t.c.system, TokenQuery(s, c)) for s, c in pairs))

    pkeys = scope.pkeys(clause.resource_type, clause.param, "of-type")
    return Probe(scope, search_token, pkeys, test, RANK_EXACT)


def token_condition(scope: Scope, clause: Clause) -> Condition:
    if clause.modifier in TERMINOLOGY:
        raise InvalidRequest(
            f"{clause.name}: the :{clause.modifier} modifier needs a terminology service, "
            "which this server does not have yet",
            code="not-supported",
            expression=clause.name,
        )
    if clause.modifier == "text":
        return _text(scope, clause)
    if clause.modifier == "of-type":
        return _of_type(scope, clause)
    probe = token_probe(scope, clause)
    return Negated(probe) if clause.modifier == "not" else probe

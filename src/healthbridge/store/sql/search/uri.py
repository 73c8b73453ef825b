"""URI search in SQL: https://hl7.org/fhir/R4/search.html#uri.

Over ``search_uri (uri)`` (and ``search_reference (url)`` for ``:above``/``:below`` on reference
parameters): equality by default, ``:below`` the stored uri starts with the query (an index
range), ``:above`` the query starts with the stored uri.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, FromClause, and_, false, func, or_

from healthbridge.fhir.errors import InvalidRequest
from healthbridge.fhir.search.query import Clause, UriQuery
from healthbridge.store.sql.search.conditions import RANK_EXACT, RANK_RANGE, RANK_SCAN, Probe
from healthbridge.store.sql.search.scope import Bool, Scope, text
from healthbridge.store.sql.search.string import prefix_test
from healthbridge.store.sql.tables import search_reference, search_uri


def uri_test(column: ColumnElement[str], value: str, modifier: str | None) -> Bool:
    if modifier == "below":
        return prefix_test(column, value)
    if modifier == "above":
        # Every prefix of the query sorts at or before it: that bounds the index range.
        query = text(value)
        return and_(column <= query, func.substr(query, 1, func.length(column)) == column)
    return column == text(value)


def uri_rank(modifier: str | None) -> int:
    return {"below": RANK_RANGE, "above": RANK_SCAN}.get(modifier or "", RANK_EXACT)


def uri_condition(scope: Scope, clause: Clause) -> Probe:
    """A uri parameter, or a reference parameter with :above/:below (on the reference URL)."""
    values = [v.value for v in clause.values if isinstance(v, UriQuery)]
    if len(values) != len(clause.values):
        raise InvalidRequest(f"{clause.name}: expected URIs", expression=clause.name)
    table = search_uri if clause.param_type == "uri" else search_reference
    column = "uri" if clause.param_type == "uri" else "url"

    def test(t: FromClause) -> Bool:
        return or_(false(), *(uri_test(t.c[column], v, clause.modifier) for v in values))

    pkeys = scope.pkeys(clause.resource_type, clause.param)
    return Probe(scope, table, pkeys, test, uri_rank(clause.modifier))

"""From a parsed search clause to its SQL condition: https://hl7.org/fhir/R4/search.html#ptypes.

One function per parameter type (one module each); ``:missing`` (search.html#modifiers) is the
same for every type: whether the resource has any index row of the parameter. Chains and
``_has`` wrap the condition of the final parameter (:mod:`.chain`).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Table, true

from healthbridge.fhir.errors import InvalidRequest
from healthbridge.fhir.search.query import Clause, MissingQuery
from healthbridge.fhir.search.text import TEXT_PARAMS
from healthbridge.store.sql.search.chain import linked
from healthbridge.store.sql.search.composite import composite_condition
from healthbridge.store.sql.search.conditions import (
    RANK_ANY,
    AnyOf,
    Condition,
    Constant,
    Negated,
    Probe,
)
from healthbridge.store.sql.search.date import date_condition
from healthbridge.store.sql.search.near import near_condition
from healthbridge.store.sql.search.number import number_condition
from healthbridge.store.sql.search.quantity import quantity_condition
from healthbridge.store.sql.search.reference import reference_condition
from healthbridge.store.sql.search.resource_columns import COLUMN_PARAMS, column_condition
from healthbridge.store.sql.search.scope import Scope
from healthbridge.store.sql.search.string import string_condition
from healthbridge.store.sql.search.text import text_search
from healthbridge.store.sql.search.token import token_condition
from healthbridge.store.sql.search.uri import uri_condition
from healthbridge.store.sql.tables import (
    search_composite,
    search_date,
    search_number,
    search_quantity,
    search_reference,
    search_string,
    search_token,
    search_uri,
)

Build = Callable[[Scope, Clause], Condition]
BUILDERS: dict[str, Build] = {
    "token": token_condition,
    "string": string_condition,
    "date": date_condition,
    "number": number_condition,
    "quantity": quantity_condition,
    "reference": reference_condition,
    "uri": uri_condition,
    "composite": composite_condition,
}
ROWS: dict[str, tuple[tuple[Table, str], ...]] = {
    "token": ((search_token, ""),),
    "string": ((search_string, ""),),
    "date": ((search_date, ""),),
    "number": ((search_number, ""),),
    "quantity": ((search_quantity, ""),),
    "reference": ((search_reference, ""), (search_token, "identifier")),
    "uri": ((search_uri, ""),),
    "composite": ((search_composite, ""),),
}
"""Where the values of a parameter type are stored (table, facet), for ``:missing``."""


def _missing(scope: Scope, clause: Clause) -> Condition:
    asked = {v.missing for v in clause.values if isinstance(v, MissingQuery)}
    if asked == {True, False}:
        return Constant(True)
    present = AnyOf(
        tuple(
            Probe(
                scope,
                table,
                scope.pkeys(clause.resource_type, clause.param, facet),
                lambda t: true(),
                RANK_ANY,
            )
            for table, facet in ROWS[clause.param_type]
        )
    )
    return Negated(present) if True in asked else present


def _final(scope: Scope, clause: Clause) -> Condition:
    if clause.param in COLUMN_PARAMS:
        return column_condition(scope, clause)
    if clause.param in TEXT_PARAMS:
        return text_search(scope, clause)
    if clause.param == "near" and clause.modifier is None:
        return near_condition(scope, clause)
    build = BUILDERS.get(clause.param_type)
    if build is None:
        raise InvalidRequest(
            f"{clause.name}: searching {clause.param_type} parameters is not supported yet",
            code="not-supported",
            expression=clause.name,
        )
    if clause.modifier == "missing":
        return _missing(scope, clause)
    return build(scope, clause)


def clause_condition(scope: Scope, clause: Clause) -> Condition:
    """The condition a resource of the search must meet for ``clause``."""
    final = _final(scope, clause)
    return linked(scope, clause, final) if clause.chain or clause.has else final

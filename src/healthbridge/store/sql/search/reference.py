"""Reference search and compartments in SQL: https://hl7.org/fhir/R4/search.html#reference,
https://hl7.org/fhir/R4/compartmentdefinition.html#search.

``search_reference.target`` holds the key of the local resource referred to
(:func:`~healthbridge.store.keys.resource_key` of its type and id), so ``Patient/123`` is one
integer comparison on the (pkey, target) index, and a bare ``123`` one per type the parameter may
refer to. Absolute URLs match the stored URL, or the type and id they end in. ``:identifier``
searches the ``Reference.identifier`` rows kept under the ``identifier`` facet of
``search_token``; ``:above``/``:below`` are URI searches of the URL (:mod:`.uri`).

A compartment (``Patient/123/Observation``) is a reference search for the owner over the
compartment's parameters of the type; the owner itself belongs to its own compartment.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import FromClause, false, or_

from healthbridge.fhir.errors import InvalidRequest
from healthbridge.fhir.search.query import Clause, ReferenceQuery
from healthbridge.store.keys import param_key, resource_key
from healthbridge.store.sql.search.conditions import (
    RANK_REFERENCE,
    AnyOf,
    Condition,
    Constant,
    Keys,
    Probe,
)
from healthbridge.store.sql.search.scope import Bool, Scope, text
from healthbridge.store.sql.search.token import token_probe
from healthbridge.store.sql.search.uri import uri_condition
from healthbridge.store.sql.tables import search_reference


def reference_condition(scope: Scope, clause: Clause) -> Condition:
    if clause.modifier == "identifier":
        return token_probe(scope, clause, "identifier")
    if clause.modifier in ("above", "below"):
        return uri_condition(scope, clause)
    definition = scope.parameter(clause.resource_type, clause.param, clause.name)
    keys: list[int] = []
    urls: list[str] = []
    for value in clause.values:
        if not isinstance(value, ReferenceQuery):
            raise InvalidRequest(f"{clause.name}: expected references", expression=clause.name)
        if value.id is not None:
            types = (value.resource_type,) if value.resource_type else None
            keys.extend(scope.resource_keys(types or scope.reference_targets(definition), value.id))
        if value.url is not None:
            urls.append(value.url)

    def test(t: FromClause) -> Bool:
        tests = [scope.among(t.c.target, keys)] if keys else []
        tests += [t.c.url == text(url) for url in dict.fromkeys(urls)]
        return or_(false(), *tests)

    pkeys = scope.pkeys(clause.resource_type, clause.param)
    return Probe(scope, search_reference, pkeys, test, RANK_REFERENCE)


def compartment_condition(scope: Scope, owner_type: str, owner_ids: Collection[str]) -> Condition:
    """Members of the compartment of ``owner_type/id``, for any id of ``owner_ids``, among the
    scope's types (one owner: a compartment search; several: access control's ``within``)."""
    owners = tuple(resource_key(owner_type, owner_id) for owner_id in owner_ids)
    pkeys: list[int] = []
    owner_itself = False
    for resource_type in scope.types:
        for code in scope.definitions.compartment_params(owner_type, resource_type):
            if code == "{def}" or resource_type == owner_type:
                owner_itself = owner_itself or resource_type == owner_type
            if code != "{def}":
                pkeys.append(param_key(resource_type, code))
    parts: list[Condition] = []
    if pkeys and owners:

        def test(t: FromClause) -> Bool:
            return scope.among(t.c.target, owners)

        parts.append(Probe(scope, search_reference, tuple(pkeys), test, RANK_REFERENCE))
    if owner_itself and owners:
        parts.append(Keys(scope, owners))
    if not parts:
        return Constant(False)
    return parts[0] if len(parts) == 1 else AnyOf(tuple(parts))

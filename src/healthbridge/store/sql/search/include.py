"""``_include`` and ``_revinclude`` in SQL: https://hl7.org/fhir/R4/search.html#include.

Bounded follow-up statements over the page's resource keys, run in the page's snapshot:

* ``_include=Observation:subject[:Patient]``: the live resources that the page's Observations
  refer to by ``subject`` (``*``: by any reference parameter), of the target type when given:
  ``rkey IN (SELECT target FROM search_reference WHERE rkey IN (page) AND pkey IN (...))``;
* ``_revinclude=Provenance:target``: the live Provenances that refer to a page resource by
  ``target``: ``rkey IN (SELECT rkey FROM search_reference WHERE target IN (page) AND pkey ...)``.

``:iterate`` includes apply again to what the previous round added, until nothing new turns up
(at most :data:`INCLUDE_DEPTH` rounds). A resource is never included twice nor when it is a
match; each round adds in ascending resource key order; at most ``MAX_INCLUDED`` are added.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, Select, false, select

from healthbridge.fhir.search.query import Include
from healthbridge.store.keys import param_key
from healthbridge.store.repository import MAX_INCLUDED
from healthbridge.store.sql.compiled import VERSION_COLUMNS
from healthbridge.store.sql.search.conditions import alias_at
from healthbridge.store.sql.search.scope import Bool, Scope, bound, text
from healthbridge.store.sql.tables import resource, search_reference

INCLUDE_DEPTH = 4


@dataclass(frozen=True)
class Found:
    """A page or included resource: its type and key (the rest is the stored row)."""

    resource_type: str
    rkey: int
    row: Sequence[Any]


def reference_params(scope: Scope, resource_type: str, param: str | None) -> list[str]:
    if param is not None:
        return [param]
    params = scope.definitions.search_parameters(resource_type)
    return [code for code, p in params.items() if p.type == "reference"]


def _forward(scope: Scope, include: Include, frontier: Sequence[Found]) -> list[Bool] | None:
    sources = [f for f in frontier if include.source_type in ("*", f.resource_type)]
    types = dict.fromkeys(f.resource_type for f in sources)
    pkeys = [param_key(t, p) for t in types for p in reference_params(scope, t, include.param)]
    if not sources or not pkeys:
        return None
    ref = alias_at(search_reference, 0)
    targets = select(ref.c.target).where(
        scope.among(ref.c.rkey, [f.rkey for f in sources]), scope.among(ref.c.pkey, pkeys)
    )
    filters: list[Bool] = [resource.c.rkey.in_(targets)]
    if include.target_type is not None:
        filters.append(resource.c.type == text(include.target_type))
    return filters


def _reverse(scope: Scope, include: Include, frontier: Sequence[Found]) -> list[Bool] | None:
    keys = [f.rkey for f in frontier if include.target_type in (None, f.resource_type)]
    every = sorted(scope.definitions.resource_types)
    sources = every if include.source_type == "*" else [include.source_type]
    pkeys = [param_key(t, p) for t in sources for p in reference_params(scope, t, include.param)]
    if not keys or not pkeys:
        return None
    ref = alias_at(search_reference, 0)
    referring = select(ref.c.rkey).where(
        scope.among(ref.c.target, keys), scope.among(ref.c.pkey, pkeys)
    )
    return [resource.c.rkey.in_(referring)]


def include_statement(
    scope: Scope, include: Include, frontier: Sequence[Found], limit: int
) -> Select[Any] | None:
    """Live resources ``include`` adds to ``frontier``, by ascending key (None: none can be)."""
    filters = (_reverse if include.reverse else _forward)(scope, include, frontier)
    if filters is None:
        return None
    versions = [resource.c[name] for name in VERSION_COLUMNS]
    return (
        select(*versions, resource.c.rkey)
        .where(resource.c.deleted == false(), *filters)
        .order_by(resource.c.rkey)
        .limit(bound(limit, Integer()))
    )


def remaining_limit(added: int, seen: int) -> int:
    """Rows to fetch so that the cap is known to be reached when they all come back: the rows
    still allowed, one more, and as many as may be already seen."""
    return MAX_INCLUDED - added + 1 + seen

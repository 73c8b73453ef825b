"""Chained parameters and ``_has`` in SQL: https://hl7.org/fhir/R4/search.html#chaining and #has.

Both walk ``search_reference``, whose ``target`` is the key of the resource referred to:

* a chain ``subject:Patient.name=x`` keeps the resources with a ``subject`` reference to a live
  Patient whose name matches: ``EXISTS (reference r WHERE r.rkey = candidate AND r.target IN
  (matching patients))``, on the (rkey, pkey, target) index when testing a candidate, or
  driven from the inner match through the (pkey, target, rkey) index;
* ``_has:Observation:patient:code=x`` keeps the resources that a live Observation matching
  ``code=x`` refers to by ``patient``: ``EXISTS (reference r WHERE r.target = candidate AND
  r.rkey IN (matching observations))``.

Index rows exist only for live resources, so a reference row proves the referring resource live;
the resource referred to is looked up in ``resource`` (live, of the chained type) unless the inner
condition's own index rows already prove it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import FromClause, exists, false, select

from healthbridge.fhir.search.query import Clause
from healthbridge.store.keys import param_key
from healthbridge.store.sql.search.conditions import (
    RANK_ANY,
    Candidate,
    Condition,
    Rkeys,
    alias_at,
    restrict,
)
from healthbridge.store.sql.search.scope import Bool, Scope, bigint, text
from healthbridge.store.sql.tables import resource, search_reference

STEP_COST = 5
"""Rank added per link: following a reference multiplies the rows a little."""


@dataclass(frozen=True)
class Chain(Condition):
    """The candidate refers by one of ``pkeys`` to a live ``target_type`` matching ``inner``."""

    scope: Scope
    pkeys: tuple[int, ...]
    target_type: str
    inner: Condition
    proves_live: bool = True
    nested: bool = True
    rank: int | None = field(init=False)

    def __post_init__(self) -> None:
        inner = self.inner.rank
        object.__setattr__(self, "rank", None if inner is None else inner + STEP_COST)

    def _target(self, ref: FromClause, depth: int) -> tuple[Candidate, list[Bool]]:
        if self.inner.proves_live and not self.inner.needs_row:
            return Candidate(ref.c.target, None, depth + 1), []
        row = alias_at(resource, depth + 1)
        joins = [
            row.c.rkey == ref.c.target,
            row.c.type == text(self.target_type),
            row.c.deleted == false(),
        ]
        return Candidate(row.c.rkey, row, depth + 1), joins

    def where(self, candidate: Candidate) -> Bool:
        ref = alias_at(search_reference, candidate.depth)
        target, joins = self._target(ref, candidate.depth)
        return exists().where(
            ref.c.rkey == candidate.rkey,
            self.scope.among(ref.c.pkey, self.pkeys),
            *joins,
            self.inner.where(target),
        )

    def driver(self, depth: int = 0) -> Rkeys | None:
        if self.rank is None:
            return None
        ref = alias_at(search_reference, depth)
        target, joins = self._target(ref, depth)
        filters = restrict(target, [self.inner])
        return select(ref.c.rkey).where(self.scope.among(ref.c.pkey, self.pkeys), *joins, *filters)


@dataclass(frozen=True)
class Has(Condition):
    """A live resource matching ``inner`` refers to the candidate by the parameter ``pkey``."""

    pkey: int
    inner: Condition
    nested: bool = True
    rank: int | None = field(init=False)

    def __post_init__(self) -> None:
        inner = self.inner.rank
        object.__setattr__(self, "rank", RANK_ANY if inner is None else inner + STEP_COST)

    def _source(self, ref: FromClause, depth: int) -> tuple[Candidate, list[Bool]]:
        if not self.inner.needs_row:
            return Candidate(ref.c.rkey, None, depth + 1), []
        row = alias_at(resource, depth + 1)
        return Candidate(row.c.rkey, row, depth + 1), [row.c.rkey == ref.c.rkey]

    def where(self, candidate: Candidate) -> Bool:
        ref = alias_at(search_reference, candidate.depth)
        source, joins = self._source(ref, candidate.depth)
        return exists().where(
            ref.c.pkey == bigint(self.pkey),
            ref.c.target == candidate.rkey,
            *joins,
            self.inner.where(source),
        )

    def driver(self, depth: int = 0) -> Rkeys | None:
        ref = alias_at(search_reference, depth)
        source, joins = self._source(ref, depth)
        filters = restrict(source, [self.inner])
        return select(ref.c.target).where(ref.c.pkey == bigint(self.pkey), *joins, *filters)


def linked(scope: Scope, clause: Clause, final: Condition) -> Condition:
    """``final`` (the clause's parameter on its last resource type) behind the clause's
    ``_has`` steps and chain links."""
    condition = final
    for has in reversed(clause.has):
        condition = Has(param_key(has.resource_type, has.param), condition)
    sources = [scope.resource_type, *(link.target_type for link in clause.chain)]
    for link, source in reversed(list(zip(clause.chain, sources, strict=False))):
        pkeys = scope.pkeys(source, link.param)
        condition = Chain(scope, pkeys, link.target_type, condition)
    return condition

"""The SQL shape of one search clause: https://hl7.org/fhir/R4/search.html#combining.

A clause becomes a :class:`Condition` on a candidate resource, known by its ``rkey`` (and, when
joined, its ``resource`` row). Each condition can be written two ways:

* :meth:`Condition.where`: a predicate correlated with the candidate, usually
  ``EXISTS (SELECT 1 FROM search_x WHERE rkey = candidate AND pkey = ... AND value ...)``, which
  the (rkey, pkey, value...) index answers with one probe;
* :meth:`Condition.driver`: the SELECT of the rkeys of exactly the resources it matches
  (``SELECT rkey FROM search_x WHERE pkey = ... AND value ...`` on the (pkey, value..., rkey)
  index), when it can produce them from an index.

:func:`restrict` makes the most selective condition (lowest :attr:`Condition.rank`) the driver,
``candidate.rkey IN (driver)``, and tests the others as semi-joins. Index rows exist only for the
current version of live resources and their ``pkey`` names the resource type, so a positive
probe also proves that a live resource of that type exists (:attr:`Condition.proves_live`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import (
    ColumnElement,
    FromClause,
    Select,
    Table,
    and_,
    exists,
    false,
    not_,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.sql.selectable import CompoundSelect

from healthbridge.store.sql.dialects import Dialect, keys_from
from healthbridge.store.sql.search.scope import Bool, Scope, bigint

Rkeys = Select[tuple[int]] | CompoundSelect[tuple[int]]
"""A SELECT of one column: resource keys (possibly repeated)."""

# Driver ranks: lower is expected to match fewer resources.
RANK_KEY = 0  # _id, a compartment owner
RANK_IDENTIFIER = 5  # identifier=system|value: one resource, as a rule
RANK_REFERENCE = 10  # reference = Type/id, compartment
RANK_CODE = 20  # token with a code, identifier
RANK_EXACT = 30  # string :exact, uri, token :of-type
RANK_RANGE = 40  # string prefix, bounded dates and numbers, uri :below
RANK_WIDE = 60  # token with only a system, :text, open ranges
RANK_SCAN = 80  # :contains, uri :above
RANK_ANY = 90  # :missing=false


@dataclass(frozen=True)
class Candidate:
    """The resource a condition is tested on: its key, and its ``resource`` row when joined.
    ``depth`` counts the subqueries it is nested in (chains, ``_has``): each depth names its
    tables apart (:func:`alias_at`) so that an inner subquery never binds to an outer table."""

    rkey: ColumnElement[int]
    row: FromClause | None = None
    depth: int = 0


_ALIASES: dict[tuple[str, int], FromClause] = {}


def alias_at(table: Table, depth: int) -> FromClause:
    """``table`` under the name of its nesting ``depth`` (built once: an alias's column
    collection costs more to build than the rest of a search's planning)."""
    key = (table.name, depth)
    found = _ALIASES.get(key)
    if found is None:
        found = _ALIASES[key] = table.alias(f"{table.name}_{depth}")
    return found


class Condition:
    rank: int | None = None
    """How selective :meth:`driver` is (None: it has none)."""
    proves_live: bool = False
    """A match implies a live resource (of the clause's type) with that rkey."""
    needs_row: bool = False
    """:meth:`where` reads columns of the candidate's ``resource`` row."""
    drives_itself: bool = False
    """:meth:`where` is already the best index access (``rkey IN (keys)``)."""
    nested: bool = False
    """A chain or ``_has``: :meth:`where` is a subquery over other resources' index rows."""

    def where(self, candidate: Candidate) -> Bool:
        raise NotImplementedError

    def driver(self, depth: int = 0) -> Rkeys | None:
        """The keys it matches, as a subquery at nesting ``depth``."""
        return None


@dataclass(frozen=True)
class Probe(Condition):
    """Rows of ``table`` under one of ``pkeys`` whose values pass ``test``."""

    scope: Scope
    table: Table
    pkeys: tuple[int, ...]
    test: Callable[[FromClause], Bool]
    rank: int | None = RANK_RANGE
    proves_live: bool = True

    def _filters(self, alias: FromClause) -> list[Bool]:
        return [self.scope.among(alias.c.pkey, self.pkeys), self.test(alias)]

    def where(self, candidate: Candidate) -> Bool:
        alias = alias_at(self.table, candidate.depth)
        return exists().where(alias.c.rkey == candidate.rkey, *self._filters(alias))

    def driver(self, depth: int = 0) -> Rkeys | None:
        if self.rank is None:
            return None
        alias = alias_at(self.table, depth)
        return select(alias.c.rkey).where(*self._filters(alias))


@dataclass(frozen=True)
class AnyOf(Condition):
    """At least one of ``parts`` (the OR of a clause's values across tables)."""

    parts: tuple[Condition, ...]
    rank: int | None = field(init=False)
    proves_live: bool = field(init=False)
    needs_row: bool = field(init=False)

    def __post_init__(self) -> None:
        ranks = [p.rank for p in self.parts]
        rank = None if not ranks or None in ranks else max(r for r in ranks if r is not None)
        object.__setattr__(self, "rank", rank)
        object.__setattr__(self, "proves_live", all(p.proves_live for p in self.parts))
        object.__setattr__(self, "needs_row", any(p.needs_row for p in self.parts))

    def where(self, candidate: Candidate) -> Bool:
        return or_(false(), *(p.where(candidate) for p in self.parts))

    def driver(self, depth: int = 0) -> Rkeys | None:
        drivers = [p.driver(depth) for p in self.parts]
        if self.rank is None or not drivers or None in drivers:
            return None
        selects = [d for d in drivers if d is not None]
        return selects[0] if len(selects) == 1 else union_all(*selects)


@dataclass(frozen=True)
class AllOf(Condition):
    """Every one of ``parts`` (``_filter``'s ``and``); the best part drives."""

    parts: tuple[Condition, ...]
    rank: int | None = field(init=False)
    proves_live: bool = field(init=False)
    needs_row: bool = field(init=False)

    def __post_init__(self) -> None:
        best = best_driver(self.parts)
        object.__setattr__(self, "rank", None if best is None else best.rank)
        object.__setattr__(self, "proves_live", any(p.proves_live for p in self.parts))
        object.__setattr__(self, "needs_row", any(p.needs_row for p in self.parts))

    def where(self, candidate: Candidate) -> Bool:
        return and_(true(), *(p.where(candidate) for p in self.parts))

    def driver(self, depth: int = 0) -> Rkeys | None:
        best = best_driver(self.parts)
        driver = None if best is None or best.needs_row else best.driver(depth + 1)
        if best is None or driver is None or any(p.needs_row for p in self.parts):
            return None
        found = driver.subquery(f"part_{depth}")
        key = next(iter(found.c))
        rest = [p.where(Candidate(key, None, depth)) for p in self.parts if p is not best]
        return select(key).where(*rest)


@dataclass(frozen=True)
class Negated(Condition):
    """``:not`` and ``:missing=true``: none of ``inner``'s rows exist."""

    inner: Condition

    def __post_init__(self) -> None:
        object.__setattr__(self, "needs_row", self.inner.needs_row)

    def where(self, candidate: Candidate) -> Bool:
        return not_(self.inner.where(candidate))


@dataclass(frozen=True)
class Constant(Condition):
    """Always or never true (``_id:missing=false``, a value no resource can have)."""

    value: bool

    def where(self, candidate: Candidate) -> Bool:
        return true() if self.value else false()


@dataclass(frozen=True)
class Keys(Condition):
    """The candidate is one of the resources with these keys (``_id``, a compartment owner):
    ``rkey IN (...)`` is itself the best driver, through the unique rkey index."""

    scope: Scope
    keys: tuple[int, ...]
    rank: int | None = RANK_KEY
    drives_itself: bool = True

    def where(self, candidate: Candidate) -> Bool:
        return self.scope.among(candidate.rkey, self.keys)

    def driver(self, depth: int = 0) -> Rkeys | None:
        if len(self.keys) != 1:
            return None
        return select(bigint(self.keys[0]).label("rkey"))


@dataclass(frozen=True)
class RowTest(Condition):
    """A test of the candidate's own ``resource`` columns (``_lastUpdated``)."""

    test: Callable[[FromClause], Bool]
    index_driver: Callable[[], Rkeys] | None = None
    rank: int | None = None
    needs_row: bool = True

    def where(self, candidate: Candidate) -> Bool:
        assert candidate.row is not None
        return self.test(candidate.row)

    def driver(self, depth: int = 0) -> Rkeys | None:
        return self.index_driver() if self.index_driver is not None else None


def best_driver(conditions: Sequence[Condition]) -> Condition | None:
    ranked = [c for c in conditions if c.rank is not None]
    return min(ranked, key=lambda c: c.rank or 0) if ranked else None


def drives(conditions: Sequence[Condition]) -> bool:
    """Whether :func:`restrict` finds the candidates through their keys (a driver or keys)."""
    best = best_driver(conditions)
    return best is not None and (best.drives_itself or best.driver(0) is not None)


def restrict(
    candidate: Candidate, conditions: Sequence[Condition], dialect: Dialect | None = None
) -> list[Bool]:
    """The filters that keep exactly the candidates matching every condition: the best driver
    as ``rkey IN (...)`` (with ``dialect``, the outer query's: :func:`.dialects.keys_from`), the
    rest as correlated tests."""
    best = best_driver(conditions)
    driver = None if best is None or best.drives_itself else best.driver(candidate.depth)
    if best is None or driver is None:
        return [c.where(candidate) for c in conditions]
    rest = [c.where(candidate) for c in conditions if c is not best]
    if (
        dialect is not None
        and best.nested
        and not any(c.nested for c in conditions if c is not best)
    ):
        # A chain or _has that drives is collected once (keys_from). Not otherwise: our ranking
        # by parameter type cannot see that gender=female matches half the patients, where
        # PostgreSQL's statistics can (Patient?name=smi&gender=female: 120 ms forced, 4 ms
        # free); and beside another chain PostgreSQL may drive from that one and test each row
        # against the whole array (subject:Patient.name=smith&code=X: 2.7 s, 61 ms with IN).
        return [keys_from(dialect, candidate.rkey, driver), *rest]
    return [candidate.rkey.in_(driver), *rest]


def keys_only(conditions: Sequence[Condition]) -> Select[tuple[int]] | None:
    """The distinct keys of the resources matching every condition, read from the index tables
    alone (no ``resource`` row: the driver's rows prove each resource live and of its type), or
    None when that is not possible. Counting these is far cheaper than counting resources."""
    best = best_driver(conditions)
    if best is None or best.drives_itself or not best.proves_live:
        return None
    driver = best.driver(1)
    if driver is None or any(c.needs_row for c in conditions):
        return None
    found = driver.subquery("found")
    key = next(iter(found.c))
    rest = [c.where(Candidate(key)) for c in conditions if c is not best]
    return select(key).distinct().where(*rest)

"""Search conditions built once and reused: https://hl7.org/fhir/R4/search.html.

Turning a clause into SQLAlchemy expressions (:mod:`.clauses`, :mod:`.conditions`) costs more
than running the statement for a selective search: profiling a patient app's
``Observation?patient=X`` found a third of the request in building expressions, most of it for
the clauses every request of one caller repeats: the access policy's ``_security:not`` label
restriction, the patient it is confined to. SQLAlchemy expressions are immutable, so one
expression can sit in any number of statements: :class:`ConditionCache` keeps the condition of
each recent (search scope, clause) pair, and :class:`Memoized` keeps the predicate and driver that
condition produced for the outermost candidate (the ``resource`` table itself; candidates nested
in subqueries are built afresh, their objects are not long-lived). Conditions depend only on the
clause and the definitions (which a planner is built with): no clock, no database state.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from healthbridge.store.sql.search.conditions import Candidate, Condition, Rkeys
from healthbridge.store.sql.search.scope import Bool
from healthbridge.store.sql.tables import resource

CACHE_SIZE = 1024
V = TypeVar("V")
_UNSET = object()


class Memoized(Condition):
    """``inner`` with its outermost predicate and its drivers remembered."""

    def __init__(self, inner: Condition) -> None:
        self.inner = inner
        self.rank = inner.rank
        self.proves_live = inner.proves_live
        self.needs_row = inner.needs_row
        self.drives_itself = inner.drives_itself
        self.nested = inner.nested
        self._outer: object = _UNSET
        self._drivers: dict[int, Rkeys | None] = {}

    def where(self, candidate: Candidate) -> Bool:
        outermost = candidate.depth == 0 and candidate.row is resource and candidate.rkey is _RKEY
        if not outermost:
            return self.inner.where(candidate)
        if self._outer is _UNSET:
            self._outer = self.inner.where(candidate)
        return self._outer  # type: ignore[return-value]

    def driver(self, depth: int = 0) -> Rkeys | None:
        if depth not in self._drivers:
            self._drivers[depth] = self.inner.driver(depth)
        return self._drivers[depth]


_RKEY = resource.c.rkey


class Recent(Generic[V]):
    """The :data:`CACHE_SIZE` most recently used values of a pure function, by a hashable key
    (a key that cannot be hashed is simply built every time)."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self._size = size
        self._found: OrderedDict[Hashable, V] = OrderedDict()

    def get(self, key: Hashable, build: Callable[[], V]) -> V:
        try:
            found = self._found.get(key, _UNSET)
        except TypeError:
            return build()
        if found is not _UNSET:
            self._found.move_to_end(key)
            return found  # type: ignore[return-value]
        made = build()  # raises for a bad clause or query: nothing is cached
        self._found[key] = made
        if len(self._found) > self._size:
            self._found.popitem(last=False)
        return made


class ConditionCache:
    """Conditions by (scope, clause), each :class:`Memoized`."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self._recent: Recent[Condition] = Recent(size)

    def get(self, key: Hashable, build: Callable[[], Condition]) -> Condition:
        return self._recent.get(key, lambda: Memoized(build()))

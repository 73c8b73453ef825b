"""Search over the memory fake: https://hl7.org/fhir/R4/search.html.

The in-memory evaluator behind ``MemoryRepository.search``, following the agreed semantics the
SQL planner also follows (the search contract suite checks both):

* plain clauses are :func:`healthbridge.fhir.search.match.clause_matches` on the resource's
  index rows (clauses AND, values OR, ``:not``/``:missing`` on the whole clause); ``_text`` and
  ``_content`` (search.html#text) match by words (:mod:`healthbridge.fhir.search.text`), without
  modifiers;
* chains (search.html#chaining) resolve backwards from the last link: the chained reference
  must point to a live resource of the link's type matching the rest; ``_has`` (search.html#has)
  resolves from the innermost step: some live resource of the step's type refers to the
  candidate through the step's parameter and matches the rest;
* compartments (https://hl7.org/fhir/R4/compartmentdefinition.html): a reference to the owner
  in any of the type's compartment parameters; the owner itself is in its own compartment
  (``{def}``, and the owner's type when the definition lists it, as Patient with ``link``);
  ``within`` is the same test for any of several owners;
* order, keyset cursors and totals: :mod:`healthbridge.store.memory_search_order`;
* ``_include``/``_revinclude`` (search.html#include): see :meth:`MemorySearch.included`.

Each current version's index rows are extracted once (by :class:`~healthbridge.fhir.search.Indexer`
from the stored bytes) and cached until the resource changes.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

from healthbridge.fhir import jsonformat
from healthbridge.fhir.definitions import Definitions
from healthbridge.fhir.errors import InvalidRequest
from healthbridge.fhir.search import Indexer, IndexValue, ReferenceValue
from healthbridge.fhir.search.filter import clauses_of
from healthbridge.fhir.search.match import clause_matches, rows_by_param
from healthbridge.fhir.search.query import (
    Clause,
    FilterAnd,
    FilterExpr,
    FilterNot,
    Include,
    SearchQuery,
    StringQuery,
)
from healthbridge.fhir.search.text import TEXT_PARAMS, TextField, query_words, text_matches, texts
from healthbridge.store.keys import resource_key
from healthbridge.store.memory_search_order import SortOrder
from healthbridge.store.repository import MAX_INCLUDED, SearchPage, StoredResource

Key = tuple[str, str]
Test = Callable[["Indexed"], bool]

INCLUDE_DEPTH = 4
"""How far ``:iterate`` follows references: an included resource is at most this many
include steps away from a match."""
TERMINOLOGY_MODIFIERS = frozenset({"above", "below", "in", "not-in"})


@dataclass(frozen=True, slots=True)
class Indexed:
    """A current, live version with its index values by parameter code."""

    stored: StoredResource
    rkey: int
    rows: Mapping[str, list[IndexValue]]
    texts: Mapping[TextField, str]  # the indexed words of the narrative and of the whole content

    @property
    def key(self) -> Key:
        return (self.stored.resource_type, self.stored.id)

    def values(self, param: str) -> list[IndexValue]:
        return self.rows.get(param, [])


class IndexCache:
    """Index rows per current version, extracted on first use and kept until it changes."""

    def __init__(self, indexer: Indexer) -> None:
        self._indexer = indexer
        self._entries: dict[Key, Indexed] = {}

    def indexed(self, stored: StoredResource) -> Indexed:
        key = (stored.resource_type, stored.id)
        found = self._entries.get(key)
        if found is None or found.stored is not stored:
            resource = jsonformat.loads(stored.content)
            rows = dict(rows_by_param(self._indexer.index_rows(resource)))
            words = texts(resource)
            found = Indexed(stored, resource_key(*key), rows, words)
            self._entries[key] = found
        return found


def refers(values: Iterable[IndexValue], keys: set[Key] | frozenset[Key]) -> bool:
    """True when one of the reference ``values`` points at a resource in ``keys``."""
    return any(
        isinstance(v, ReferenceValue) and (v.target_type, v.target_id) in keys for v in values
    )


def targets(values: Iterable[IndexValue]) -> Iterator[Key]:
    """The local ``Type/id`` targets of reference ``values`` (URL-only and identifier-only
    references have none)."""
    for v in values:
        if isinstance(v, ReferenceValue) and v.target_type and v.target_id:
            yield (v.target_type, v.target_id)


class MemorySearch:
    """Evaluates searches over ``by_type`` (type -> id -> current version, deletes included),
    which the repository keeps up to date; the evaluator never awaits, so it sees one state."""

    def __init__(
        self, definitions: Definitions, by_type: Mapping[str, Mapping[str, StoredResource]]
    ) -> None:
        self.definitions = definitions
        self._by_type = by_type
        self.cache = IndexCache(Indexer(definitions))

    # -- the store ------------------------------------------------------------------------
    def live(self, resource_type: str) -> list[Indexed]:
        current = self._by_type.get(resource_type, {}).values()
        return [self.cache.indexed(s) for s in current if not s.deleted]

    def get(self, key: Key) -> Indexed | None:
        stored = self._by_type.get(key[0], {}).get(key[1])
        return None if stored is None or stored.deleted else self.cache.indexed(stored)

    def _types(self, query: SearchQuery) -> Sequence[str]:
        if query.resource_type is not None:
            return (query.resource_type,)
        return query.types or sorted(self._by_type)

    def _reference_params(self, resource_type: str, param: str | None) -> list[str]:
        if param is not None:
            return [param]
        params = self.definitions.search_parameters(resource_type)
        return [code for code, p in params.items() if p.type == "reference"]

    # -- the search -----------------------------------------------------------------------
    def search(self, query: SearchQuery, cursor: str | None = None) -> SearchPage:
        leaves = clauses_of(query.filter) if query.filter is not None else []
        for clause in (*query.clauses, *leaves):
            self._check_supported(clause)
        order = SortOrder(query)
        after = order.decode(cursor) if cursor is not None else None
        found = self.matches(query)
        if query.summary == "count":
            return SearchPage([], [], None, len(found))
        ranked = sorted(((order.position(r), r) for r in found), key=lambda pair: pair[0])
        if after is not None:
            ranked = [pair for pair in ranked if pair[0] > after]
        count = max(query.count, 0)
        page = ranked[:count]
        more = len(ranked) > count > 0
        next_cursor = order.encode(page[-1][0]) if more else None
        fits = cursor is None and len(ranked) <= count
        total = None
        if query.total in ("accurate", "estimate") or (query.total != "none" and fits):
            total = len(found)
        included, truncated = self.included(query.includes, [r for _, r in page])
        return SearchPage(
            [r.stored for _, r in page], [r.stored for r in included], next_cursor, total, truncated
        )

    def _check_supported(self, clause: Clause) -> None:
        if clause.param_type == "token" and clause.modifier in TERMINOLOGY_MODIFIERS:
            raise InvalidRequest(
                f"{clause.name}: the :{clause.modifier} modifier needs a terminology service, "
                "which this server does not have yet",
                code="not-supported",
                expression=clause.name,
            )
        if clause.param in TEXT_PARAMS:
            if clause.modifier is None:
                return
            raise InvalidRequest(
                f"{clause.name}: modifiers are not supported for {clause.param}",
                code="not-supported",
                expression=clause.name,
            )
        definition = self.definitions.search_parameters(clause.resource_type).get(clause.param)
        special = definition is not None and definition.type == "special" and clause.param != "near"
        if definition is None or not definition.expression or special:
            raise InvalidRequest(
                f"Search parameter {clause.name!r} is not supported by this server",
                code="not-supported",
                expression=clause.name,
            )

    def matches(self, query: SearchQuery) -> list[Indexed]:
        """Every live resource that matches ``query`` (in no particular order)."""
        tests = [self._clause_test(clause) for clause in query.clauses]
        if query.filter is not None:
            tests.append(self._filter_test(query.filter))
        found: list[Indexed] = []
        for resource_type in self._types(query):
            candidates = self.live(resource_type)
            if query.compartment is not None:
                owner_type, owner_id = query.compartment
                member = self._compartment_test(owner_type, (owner_id,), resource_type)
                candidates = [r for r in candidates if member(r)]
            if query.within is not None:
                member = self._compartment_test(*query.within, resource_type)
                candidates = [r for r in candidates if member(r)]
            found.extend(r for r in candidates if all(test(r) for test in tests))
        return found

    def _compartment_test(
        self, owner_type: str, owner_ids: Collection[str], resource_type: str
    ) -> Test:
        """Members of the compartment of any of ``owner_ids`` (of ``owner_type``)."""
        params = self.definitions.compartment_params(owner_type, resource_type)
        is_owner_type = bool(params) and (resource_type == owner_type or "{def}" in params)
        links = [p for p in params if p != "{def}"]
        ids = frozenset(owner_ids)
        owners = frozenset((owner_type, owner_id) for owner_id in ids)

        def member(r: Indexed) -> bool:
            if is_owner_type and r.stored.id in ids:
                return True
            return any(refers(r.values(p), owners) for p in links)

        return member

    def _filter_test(self, tree: FilterExpr) -> Test:
        """search_filter.html: the tree's and/or/not over clause tests."""
        if isinstance(tree, Clause):
            return self._clause_test(tree)
        if isinstance(tree, FilterNot):
            inner = self._filter_test(tree.item)
            return lambda r: not inner(r)
        tests = [self._filter_test(item) for item in tree.items]
        if isinstance(tree, FilterAnd):
            return lambda r: all(test(r) for test in tests)
        return lambda r: any(test(r) for test in tests)

    def _clause_test(self, clause: Clause) -> Test:
        if clause.chain:
            chained = self._chain_targets(clause)
            first = clause.chain[0].param
            return lambda r: refers(r.values(first), chained)
        if clause.has:
            referred = self._has_referred(clause)
            return lambda r: r.key in referred
        return self._plain_test(clause)

    @staticmethod
    def _plain_test(clause: Clause) -> Test:
        if clause.param not in TEXT_PARAMS:
            return lambda r: clause_matches(clause, r.values(clause.param))
        wanted: list[list[str]] = []
        for value in clause.values:
            try:
                wanted.append(query_words(value.value if isinstance(value, StringQuery) else ""))
            except ValueError as exc:
                raise InvalidRequest(
                    f"{clause.name}: {exc}", code="value", expression=clause.name
                ) from None
        return lambda r: any(text_matches(w, r.texts[TEXT_PARAMS[clause.param]]) for w in wanted)

    def _final_matches(self, clause: Clause) -> list[Indexed]:
        """Live resources of the clause's last type matching its parameter and values."""
        test = self._plain_test(replace(clause, chain=(), has=()))
        return [r for r in self.live(clause.resource_type) if test(r)]

    def _chain_targets(self, clause: Clause) -> set[Key]:
        """Keys the first chain link must refer to, resolved from the last link backwards."""
        keys = {r.key for r in self._final_matches(clause)}
        for i in range(len(clause.chain) - 1, 0, -1):
            step, previous = clause.chain[i], clause.chain[i - 1]
            keys = {
                r.key for r in self.live(previous.target_type) if refers(r.values(step.param), keys)
            }
        return keys

    def _has_referred(self, clause: Clause) -> set[Key]:
        """Keys referred to (through the outermost ``_has`` parameter) by resources that
        satisfy the rest of the ``_has`` chain."""
        steps = clause.has
        sources = self._final_matches(clause)
        referred = {t for r in sources for t in targets(r.values(steps[-1].param))}
        for step in reversed(steps[:-1]):
            sources = [r for r in self.live(step.resource_type) if r.key in referred]
            referred = {t for r in sources for t in targets(r.values(step.param))}
        return referred

    # -- _include / _revinclude -----------------------------------------------------------
    def included(
        self, includes: Sequence[Include], matches: list[Indexed]
    ) -> tuple[list[Indexed], bool]:
        """The live resources the includes add to a page of ``matches``, and whether the
        MAX_INCLUDED cap cut them short.

        Every include applies to the matches; ``:iterate`` ones also to the resources the
        previous round added, round after round, until nothing new turns up (at most
        INCLUDE_DEPTH rounds). Nothing is included twice nor when it is a match; each round's
        additions come in ascending resource key order.
        """
        seen = {r.key for r in matches}
        out: list[Indexed] = []
        frontier, active = matches, list(includes)
        for _ in range(INCLUDE_DEPTH):
            if not frontier or not active:
                break
            found: dict[Key, Indexed] = {}
            for include in active:
                step = self._reverse(include, frontier) if include.reverse else None
                for r in step if step is not None else self._forward(include, frontier):
                    if r.key not in seen:
                        found[r.key] = r
            frontier = sorted(found.values(), key=lambda r: r.rkey)
            seen.update(found)
            out.extend(frontier)
            if len(out) > MAX_INCLUDED:
                return out[:MAX_INCLUDED], True
            active = [i for i in includes if i.iterate]
        return out, False

    def _forward(self, include: Include, sources: list[Indexed]) -> Iterator[Indexed]:
        for r in sources:
            if include.source_type not in ("*", r.stored.resource_type):
                continue
            for param in self._reference_params(r.stored.resource_type, include.param):
                for key in targets(r.values(param)):
                    if include.target_type in (None, key[0]) and (found := self.get(key)):
                        yield found

    def _reverse(self, include: Include, referred: list[Indexed]) -> Iterator[Indexed]:
        keys = {r.key for r in referred if include.target_type in (None, r.stored.resource_type)}
        if not keys:
            return
        types = sorted(self._by_type) if include.source_type == "*" else [include.source_type]
        for resource_type in types:
            params = self._reference_params(resource_type, include.param)
            for r in self.live(resource_type):
                if any(refers(r.values(p), keys) for p in params):
                    yield r

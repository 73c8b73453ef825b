"""Token ``:above``, ``:below``, ``:in`` and ``:not-in`` (https://hl7.org/fhir/R4/search.html#modifiers).

Before a search runs, these clauses are rewritten into plain token clauses over the codes they
stand for, so that every backend answers them alike. The codes come from the terminology service
(https://hl7.org/fhir/R4/terminology-service.html, :mod:`healthbridge.rest.terminology`), over
every source it knows: code systems loaded into ``repository.terminology`` (SNOMED CT, LOINC,
ICD-10-CM...), CodeSystem and ValueSet resources stored on the server, and the R4 core content
shipped with it.

* ``:below=system|code``: the code and its descendants (the ``is-a`` filter), inactive ones too;
* ``:above=system|code``: the code and its ancestors (the ``generalizes`` filter);
* ``:in=url``: the codes of that ValueSet (as ``$expand`` works them out; inactive codes are in
  unless its ``compose.inactive`` is false); a ``code`` element, which has no system, matches by
  its code; ``:not-in`` is the same under ``:not``.

A code system or value set the server does not know, or one whose content it cannot work out, is
a 400 ``not-supported`` naming the parameter. A clause standing for more than :data:`MAX_CODES`
codes (``:below`` a SNOMED CT top-level concept, a value set over a whole large system) is a 400
``too-costly``: the search would carry every code, so the client should use a narrower code or
value set. The SQL backends bind such code lists as one parameter (measured on SQLite with 20,000
Observations: 10,000 codes in ~20 ms).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from healthbridge.fhir.errors import InvalidRequest, TooCostly
from healthbridge.fhir.search.query import Clause, SearchQuery, TokenQuery, UriQuery
from healthbridge.rest.terminology.expand import MAX_EXPANSION, Expander
from healthbridge.rest.terminology.sources import Resolver
from healthbridge.store.terminology import ConceptFilter, ConceptQuery

MAX_CODES = 10_000
"""The most codes one clause may stand for."""
MODIFIERS = frozenset({"above", "below", "in", "not-in"})
EMPTY = TokenQuery("urn:healthbridge:empty", "")
"""A token no resource has: what a clause standing for no code searches for."""
Pair = tuple[str, str]


class _TooMany(Exception):
    """More than :data:`MAX_CODES` codes (``what`` names them in the answer)."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


def _not_supported(text: str) -> InvalidRequest:
    return InvalidRequest(text, code="not-supported")


async def _hierarchy(resolver: Resolver, modifier: str, value: Any) -> set[Pair]:
    """``system|code`` and its descendants (``:below``) or ancestors (``:above``)."""
    if not isinstance(value, TokenQuery) or not value.system or not value.code:
        raise InvalidRequest(f":{modifier} takes system|code", code="value")
    system, code = value.system, value.code
    source = await resolver.code_system(system)
    if source is None:
        raise _not_supported(f"the code system {system} is not known to this server")
    rule = ConceptFilter("concept", "generalizes" if modifier == "above" else "is-a", code)
    query = ConceptQuery((rule,), active_only=False, limit=MAX_CODES)
    total = await source.count(query)
    if total > MAX_CODES:
        raise _TooMany(f"{system}|{code} and its {_related(modifier)} are {total:,} codes")
    found = await source.find_from(replace(query, limit=max(total, 1)), 0)
    return {(system, code)} | {(system, concept.code) for concept in found}


def _related(modifier: str) -> str:
    return "ancestors" if modifier == "above" else "descendants"


async def _value_set(expander: Expander, value: Any) -> set[Pair]:
    """Every (system, code) of the ValueSet ``value`` names."""
    url = value.value if isinstance(value, UriQuery) else ""
    if not url:
        raise InvalidRequest("takes the url of a value set", code="value")
    value_set = await expander.value_set(url)
    compose = value_set.get("compose")
    active_only = isinstance(compose, dict) and compose.get("inactive") is False
    try:
        members = await expander.members(value_set, None, active_only)
    except TooCostly:
        raise _TooMany(f"the value set {url} has more than {MAX_EXPANSION:,} codes") from None
    if len(members) > MAX_CODES:
        raise _TooMany(f"the value set {url} has {len(members):,} codes")
    return set(members)


async def _pairs(clause: Clause, resolver: Resolver) -> set[Pair]:
    expander = Expander(resolver)
    pairs: set[Pair] = set()
    for value in clause.values:
        if clause.modifier in ("in", "not-in"):
            pairs |= await _value_set(expander, value)
        else:
            pairs |= await _hierarchy(resolver, str(clause.modifier), value)
        if len(pairs) > MAX_CODES:
            raise _TooMany(f"its values stand for {len(pairs):,} codes together")
    return pairs


def _named(clause: Clause, error: InvalidRequest) -> InvalidRequest:
    """``error`` (raised by the terminology service) as an answer about ``clause``."""
    issue = error.issues[0]
    text = f"{clause.name}: {issue.diagnostics}"
    return type(error)(text, code=issue.code, expression=clause.name)


async def _expand(clause: Clause, resolver: Resolver) -> Clause:
    try:
        pairs = await _pairs(clause, resolver)
    except _TooMany as many:
        raise TooCostly(
            f"{clause.name}: {many.what}; a search expands into at most {MAX_CODES:,} codes: "
            "use a narrower code or value set",
            expression=clause.name,
        ) from None
    except InvalidRequest as exc:
        raise _named(clause, exc) from None
    values: tuple[TokenQuery, ...] = tuple(TokenQuery(s, c) for s, c in sorted(pairs))
    if clause.modifier in ("in", "not-in"):
        # Elements of type code carry no system (it is implied by their binding): a bare code
        # that a value set names is in it too.
        values += tuple(TokenQuery("", code) for code in sorted({code for _, code in pairs}))
    modifier = "not" if clause.modifier == "not-in" else None
    return replace(clause, modifier=modifier, values=values or (EMPTY,))


async def expand_terminology(query: SearchQuery, resolver: Resolver) -> SearchQuery:
    """``query`` with its token :above/:below/:in/:not-in clauses made plain."""
    wanted = [c for c in query.clauses if c.param_type == "token" and c.modifier in MODIFIERS]
    if not wanted:
        return query
    clauses = [await _expand(c, resolver) if c in wanted else c for c in query.clauses]
    return replace(query, clauses=tuple(clauses))

"""Token ``:above``, ``:below``, ``:in`` and ``:not-in`` (https://hl7.org/fhir/R4/search.html#modifiers).

Before a search runs, these clauses are rewritten into plain token clauses over the codes they
stand for, so that every backend answers them alike: ``:below=system|code`` becomes the code and
its descendants in the CodeSystem with that url stored on the server (``:above`` its
ancestors); ``:in=url`` the codes of the ValueSet with that url (stored, or one of the R4 value
sets the server ships; a ``code`` element, which has no system, matches by its code), ``:not-in``
the same under ``:not``. A code system or value set the
server does not know, or one whose content it cannot work out, is a 400 ``not-supported`` naming
the parameter; more than :data:`MAX_CODES` codes is a 400 ``too-costly``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from healthbridge.fhir import jsonformat
from healthbridge.fhir.definitions import Definitions
from healthbridge.fhir.errors import InvalidRequest
from healthbridge.fhir.search.parse import SearchParser
from healthbridge.fhir.search.query import Clause, SearchQuery, TokenQuery, UriQuery
from healthbridge.fhir.terminology.hierarchy import (
    Missing,
    NotExpandable,
    Pair,
    ancestors,
    descendants,
    value_set_pairs,
)
from healthbridge.fhir.types import Resource
from healthbridge.store.repository import Repository

MAX_CODES = 1000
MODIFIERS = frozenset({"above", "below", "in", "not-in"})
_FETCHES = 20


class _Resources:
    """CodeSystem/ValueSet resources by url, fetched on demand from the repository."""

    def __init__(self, repository: Repository, parser: SearchParser) -> None:
        self._repository = repository
        self._parser = parser
        self._found: dict[str, Resource | None] = {}

    def lookup(self, url: str) -> Resource | None:
        key = url.split("|", 1)[0]
        if key not in self._found:
            raise Missing(key)
        return self._found[key]

    async def fetch(self, url: str) -> None:
        found: Resource | None = None
        for resource_type in ("CodeSystem", "ValueSet"):
            query = self._parser.parse(resource_type, [("url", url), ("_count", "1")])
            page = await self._repository.search(query)
            if page.matches:
                found = jsonformat.loads(page.matches[0].content)
                break
        self._found[url] = found


def _bad(clause: Clause, text: str, code: str = "not-supported") -> InvalidRequest:
    return InvalidRequest(f"{clause.name}: {text}", code=code, expression=clause.name)


def _codes(clause: Clause, resources: _Resources, definitions: Definitions) -> set[Pair]:
    pairs: set[Pair] = set()
    for value in clause.values:
        if clause.modifier in ("in", "not-in"):
            url = value.value if isinstance(value, UriQuery) else ""
            pairs |= _value_set(url, resources, definitions)
            continue
        if not isinstance(value, TokenQuery) or not value.system or value.code is None:
            raise _bad(clause, f":{clause.modifier} takes system|code", "value")
        code_system = resources.lookup(value.system)
        if code_system is None:
            raise NotExpandable(f"the code system {value.system} is not known to this server")
        related = ancestors if clause.modifier == "above" else descendants
        pairs |= {(value.system, code) for code in related(code_system, value.code)}
    return pairs


def _value_set(url: str, resources: _Resources, definitions: Definitions) -> set[Pair]:
    stored = resources.lookup(url)
    if stored is not None and stored.get("resourceType") == "ValueSet":
        return value_set_pairs(stored, resources.lookup)
    shipped = definitions.value_set(url)
    if shipped is None:
        raise NotExpandable(f"the value set {url} is not known to this server")
    return set(shipped.pairs)


async def _expand(clause: Clause, resources: _Resources, definitions: Definitions) -> Clause:
    for _ in range(_FETCHES):
        try:
            pairs = _codes(clause, resources, definitions)
            break
        except Missing as missing:
            await resources.fetch(missing.url)
        except NotExpandable as exc:
            raise _bad(clause, str(exc)) from None
    else:
        raise _bad(clause, "the terminology it names refers to too many others", "too-costly")
    if len(pairs) > MAX_CODES:
        raise _bad(clause, f"stands for more than {MAX_CODES} codes; narrow it", "too-costly")
    values: Any = tuple(TokenQuery(system, code) for system, code in sorted(pairs))
    if clause.modifier in ("in", "not-in"):
        # Elements of type code carry no system (it is implied by their binding): a bare code
        # that a value set names is in it too.
        values += tuple(TokenQuery("", code) for code in sorted({code for _, code in pairs}))
    if not values:  # nothing can match: a code no resource has
        values = (TokenQuery("urn:healthbridge:empty", ""),)
    modifier = "not" if clause.modifier == "not-in" else None
    return replace(clause, modifier=modifier, values=values)


async def expand_terminology(
    query: SearchQuery, repository: Repository, parser: SearchParser
) -> SearchQuery:
    """``query`` with its token :above/:below/:in/:not-in clauses made plain."""
    wanted = [c for c in query.clauses if c.param_type == "token" and c.modifier in MODIFIERS]
    if not wanted:
        return query
    resources = _Resources(repository, parser)
    clauses = [
        await _expand(c, resources, parser.definitions) if c in wanted else c for c in query.clauses
    ]
    return replace(query, clauses=tuple(clauses))

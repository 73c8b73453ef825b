"""ValueSet $expand: https://hl7.org/fhir/R4/valueset-operation-expand.html.

The compose (https://hl7.org/fhir/R4/valueset.html#compose) is planned into *parts*, one per
include: the listed concepts, or a query over the code system's source (its filters, the text
``filter``, ``activeOnly``). When no include imports value sets, there are no excludes and each
system is included once, the parts are counted and paged by the sources themselves (one count
and one page query each: a SNOMED CT ``is-a`` include pages without being materialised).
Otherwise every include and exclude is materialised (at most :data:`MAX_EXPANSION` concepts
each) and combined as sets. Without ``count``, an expansion of more than
:data:`MAX_EXPANSION` concepts is refused as ``too-costly``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol, cast, get_args

from healthbridge.fhir.errors import InvalidRequest, TooCostly
from healthbridge.fhir.meta import format_instant
from healthbridge.fhir.terminology.code_system import is_abstract
from healthbridge.fhir.terminology.concepts import Concept, Designation
from healthbridge.fhir.terminology.words import matches, words
from healthbridge.fhir.types import Resource
from healthbridge.rest.terminology.sources import Resolver, Source
from healthbridge.store.terminology import ConceptFilter, ConceptQuery, FilterOp

MAX_EXPANSION = 10_000
MAX_DEPTH = 8
OPS = frozenset(get_args(FilterOp))
Key = tuple[str, str]


@dataclass(frozen=True, slots=True)
class ExpandOptions:
    text: str | None = None
    count: int | None = None
    offset: int = 0
    include_designations: bool = False
    active_only: bool | None = None  # None: the compose decides (``compose.inactive``)


@dataclass(frozen=True, slots=True)
class Entry:
    system: str
    version: str | None
    code: str
    display: str | None = None
    inactive: bool = False
    abstract: bool = False
    designations: tuple[Designation, ...] = ()


def not_supported(text: str) -> InvalidRequest:
    return InvalidRequest(text, code="not-supported")


def entry(source: Source, concept: Concept) -> Entry:
    info = source.info
    return Entry(
        info.url,
        info.version,
        concept.code,
        concept.display,
        concept.inactive,
        is_abstract(concept),
        concept.designations,
    )


class Part(Protocol):
    async def count(self) -> int: ...

    async def page(self, offset: int, limit: int) -> list[Entry]: ...


class ListedPart:
    def __init__(self, entries: list[Entry]) -> None:
        self.entries = entries

    async def count(self) -> int:
        return len(self.entries)

    async def page(self, offset: int, limit: int) -> list[Entry]:
        return self.entries[offset : offset + limit]


class QueryPart:
    def __init__(self, source: Source, query: ConceptQuery) -> None:
        self.source = source
        self.query = query

    async def count(self) -> int:
        return await self.source.count(self.query)

    async def page(self, offset: int, limit: int) -> list[Entry]:
        found = await self.source.find_from(replace(self.query, limit=limit), offset)
        return [entry(self.source, concept) for concept in found]


def concept_filters(include: dict[str, Any]) -> tuple[ConceptFilter, ...]:
    out = []
    for rule in include.get("filter") or []:
        if not isinstance(rule, dict):
            continue
        prop, op, value = rule.get("property"), rule.get("op"), rule.get("value")
        if not isinstance(prop, str) or not isinstance(value, str) or op not in OPS:
            raise not_supported(f"The filter {prop} {op} {value!r} is not supported")
        out.append(ConceptFilter(prop, cast(FilterOp, op), value))
    return tuple(out)


async def _listed(
    include: dict[str, Any], source: Source | None, text: str | None, active_only: bool
) -> ListedPart:
    system, version = str(include["system"]), include.get("version")
    listed = [
        c for c in include["concept"] if isinstance(c, dict) and isinstance(c.get("code"), str)
    ]
    known = await source.concepts([c["code"] for c in listed]) if source else {}
    query = words(text)
    entries = []
    for item in listed:
        concept = known.get(item["code"])
        if concept is not None and source is not None:
            found = replace(entry(source, concept), display=item.get("display") or concept.display)
        else:
            found = Entry(system, version, item["code"], item.get("display"))
        if active_only and found.inactive:
            continue
        names = [found.display, *(d.value for d in found.designations)]
        if query and not matches(query, names):
            continue
        entries.append(found)
    return ListedPart(entries)


async def plan_part(
    include: dict[str, Any], resolver: Resolver, text: str | None, active_only: bool
) -> Part:
    system = include.get("system")
    if not isinstance(system, str):
        raise not_supported("An include or exclude without a system")
    source = await resolver.code_system(system, include.get("version"))
    if include.get("concept"):
        return await _listed(include, source, text, active_only)
    if source is None:
        raise not_supported(f"The code system {system} is not known to this server")
    query = ConceptQuery(concept_filters(include), text, active_only, limit=MAX_EXPANSION)
    return QueryPart(source, query)


async def _all(part: Part) -> list[Entry]:
    total = await part.count()
    if total > MAX_EXPANSION:
        raise TooCostly(
            f"A part of this value set has {total:,} concepts, more than the {MAX_EXPANSION:,} "
            "this server combines with other parts; narrow it with a filter"
        )
    return await part.page(0, total)


class Expander:
    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver

    async def value_set(self, url: str) -> Resource:
        found = await self.resolver.value_set(url)
        if found is None:
            raise not_supported(f"The value set {url} is not known to this server")
        return found

    async def members(
        self, value_set: Resource, text: str | None, active_only: bool, depth: int = 0
    ) -> dict[Key, Entry]:
        """Every concept of ``value_set`` (materialised), in include order."""
        if depth > MAX_DEPTH:
            raise not_supported("Value sets import each other too deeply")
        compose = value_set.get("compose")
        if not isinstance(compose, dict):
            return _stored_expansion(value_set, text)
        found: dict[Key, Entry] = {}
        for include in compose.get("include") or []:
            found.update(await self._include(include, text, active_only, depth))
        for exclude in compose.get("exclude") or []:
            for key in await self._include(exclude, None, False, depth):
                found.pop(key, None)
        return found

    async def _include(
        self, include: dict[str, Any], text: str | None, active_only: bool, depth: int
    ) -> dict[Key, Entry]:
        result: dict[Key, Entry] | None = None
        if include.get("system") is not None:
            part = await plan_part(include, self.resolver, text, active_only)
            result = {(e.system, e.code): e for e in await _all(part)}
        for url in include.get("valueSet") or []:
            imported = await self.members(await self.value_set(url), text, active_only, depth + 1)
            result = (
                imported if result is None else {k: v for k, v in result.items() if k in imported}
            )
        if result is None:
            raise not_supported("An include with neither a system nor a value set")
        return result

    async def expand(self, value_set: Resource, options: ExpandOptions) -> Resource:
        compose = value_set.get("compose")
        active_only = options.active_only
        if active_only is None:
            active_only = not (isinstance(compose, dict) and compose.get("inactive") is True)
        limit = MAX_EXPANSION if options.count is None else min(options.count, MAX_EXPANSION)
        if isinstance(compose, dict) and _pageable(compose):
            parts = [
                await plan_part(i, self.resolver, options.text, active_only)
                for i in compose.get("include") or []
            ]
            total, entries = await _paged(parts, options.offset, limit)
        else:
            found = list((await self.members(value_set, options.text, active_only)).values())
            total, entries = len(found), found[options.offset : options.offset + limit]
        if options.count is None and total > MAX_EXPANSION:
            raise TooCostly(
                f"The expansion of {value_set.get('url')} has {total:,} concepts; page it with "
                f"count (at most {MAX_EXPANSION:,}) and offset, or narrow it with filter"
            )
        return _expansion(value_set, options, total, entries)


def _pageable(compose: dict[str, Any]) -> bool:
    includes = compose.get("include") or []
    systems = [i.get("system") for i in includes if isinstance(i, dict)]
    return (
        not compose.get("exclude")
        and all(isinstance(i, dict) and not i.get("valueSet") for i in includes)
        and len(set(systems)) == len(systems)
    )


async def _paged(parts: Sequence[Part], offset: int, limit: int) -> tuple[int, list[Entry]]:
    counts = [await part.count() for part in parts]
    entries: list[Entry] = []
    skip = offset
    for part, count in zip(parts, counts, strict=True):
        if skip >= count:
            skip -= count
            continue
        room = limit - len(entries)
        if room <= 0:
            break
        entries.extend(await part.page(skip, room))
        skip = 0
    return sum(counts), entries


def _flat(contains: Any) -> list[dict[str, Any]]:
    out = []
    for item in contains or []:
        if isinstance(item, dict):
            out.append(item)
            out.extend(_flat(item.get("contains")))
    return out


def _stored_expansion(value_set: Resource, text: str | None) -> dict[Key, Entry]:
    expansion = value_set.get("expansion")
    if not isinstance(expansion, dict):
        raise not_supported(f"The value set {value_set.get('url')} has no compose or expansion")
    query = words(text)
    found: dict[Key, Entry] = {}
    for item in _flat(expansion.get("contains")):
        if not isinstance(item.get("code"), str) or not isinstance(item.get("system"), str):
            continue
        if query and not matches(query, [item.get("display")]):
            continue
        found[(item["system"], item["code"])] = Entry(
            item["system"], item.get("version"), item["code"], item.get("display")
        )
    return found


def _contains(item: Entry, designations: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"system": item.system}
    if item.version:
        out["version"] = item.version
    out["code"] = item.code
    if item.display:
        out["display"] = item.display
    if item.abstract:
        out["abstract"] = True
    if item.inactive:
        out["inactive"] = True
    if designations and item.designations:
        out["designation"] = [_designation(d) for d in item.designations]
    return out


def _designation(designation: Designation) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if designation.language:
        out["language"] = designation.language
    if designation.use:
        out["use"] = {"system": designation.use[0], "code": designation.use[1]}
    out["value"] = designation.value
    return out


def _expansion(
    value_set: Resource, options: ExpandOptions, total: int, entries: list[Entry]
) -> Resource:
    params: list[dict[str, Any]] = []
    if options.text:
        params.append({"name": "filter", "valueString": options.text})
    if options.count is not None:
        params.append({"name": "count", "valueInteger": options.count})
    if options.offset or options.count is not None:
        params.append({"name": "offset", "valueInteger": options.offset})
    expansion: dict[str, Any] = {
        "identifier": f"urn:uuid:{uuid.uuid4()}",
        "timestamp": format_instant(datetime.now(UTC)),
        "total": total,
    }
    if options.offset or options.count is not None:
        expansion["offset"] = options.offset
    if params:
        expansion["parameter"] = params
    expansion["contains"] = [_contains(e, options.include_designations) for e in entries]
    out: Resource = {"resourceType": "ValueSet"}
    for key in ("id", "url", "version", "name", "title", "status"):
        if key in value_set:
            out[key] = value_set[key]
    out.setdefault("status", "active")
    out["expansion"] = expansion
    return out

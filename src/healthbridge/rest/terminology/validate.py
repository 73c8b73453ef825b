"""$validate-code on CodeSystem and ValueSet:
https://hl7.org/fhir/R4/codesystem-operation-validate-code.html and
https://hl7.org/fhir/R4/valueset-operation-validate-code.html.

Membership in a value set is decided without expanding it: each include (and exclude) is tested
for the one code, hierarchy filters by subsumption (walking up from the code) and other filters
by a query for that code alone, imported value sets recursively. The answer is ``result``, a
``message`` (why not; or warnings: wrong display, inactive concept) and the ``display``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from healthbridge.fhir.terminology.code_system import is_abstract
from healthbridge.fhir.terminology.concept_index import HIERARCHY_PROPERTIES
from healthbridge.fhir.terminology.concepts import Concept
from healthbridge.fhir.terminology.parameters import parameter, parameters
from healthbridge.fhir.types import Resource
from healthbridge.rest.terminology.expand import MAX_DEPTH, concept_filters, not_supported
from healthbridge.rest.terminology.sources import Resolver, Source
from healthbridge.store.terminology import ConceptFilter, ConceptQuery


@dataclass(frozen=True, slots=True)
class Coded:
    """One coding to check."""

    system: str | None
    code: str
    version: str | None = None
    display: str | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    result: bool
    messages: tuple[str, ...] = ()
    display: str | None = None

    def parameters(self) -> Resource:
        out = [parameter("result", valueBoolean=self.result)]
        if self.messages:
            out.append(parameter("message", valueString="; ".join(self.messages)))
        if self.display:
            out.append(parameter("display", valueString=self.display))
        return parameters(out)


async def _matches_filters(source: Source, filters: tuple[ConceptFilter, ...], code: str) -> bool:
    rest: list[ConceptFilter] = []
    for rule in filters:
        if rule.property not in HIERARCHY_PROPERTIES or rule.op not in (
            "is-a",
            "descendent-of",
            "is-not-a",
            "generalizes",
        ):
            rest.append(rule)
            continue
        if rule.op == "generalizes":
            below = await source.subsumes(code, rule.value)
        else:
            below = await source.subsumes(rule.value, code)
        if rule.op == "descendent-of":
            below = below and code != rule.value
        if below == (rule.op == "is-not-a"):
            return False
    query = ConceptQuery((*rest, ConceptFilter("code", "=", code)), active_only=False, limit=1)
    return await source.count(query) > 0


class Membership:
    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver

    async def contains(self, value_set: Resource, coded: Coded, depth: int = 0) -> bool:
        if depth > MAX_DEPTH:
            raise not_supported("Value sets import each other too deeply")
        compose = value_set.get("compose")
        if not isinstance(compose, dict):
            expansion = value_set.get("expansion")
            if not isinstance(expansion, dict):
                raise not_supported(f"The value set {value_set.get('url')} has no content")
            return _in_expansion(expansion.get("contains"), coded)
        for exclude in compose.get("exclude") or []:
            if await self._in_part(exclude, coded, depth):
                return False
        for include in compose.get("include") or []:
            if await self._in_part(include, coded, depth):
                return True
        return False

    async def _in_part(self, part: dict[str, Any], coded: Coded, depth: int) -> bool:
        system = part.get("system")
        if system is not None:
            if system != coded.system:
                return False
            listed = part.get("concept")
            if listed:
                if coded.code not in {c.get("code") for c in listed if isinstance(c, dict)}:
                    return False
            else:
                source = await self.resolver.code_system(system, part.get("version"))
                if source is None:
                    raise not_supported(f"The code system {system} is not known to this server")
                if not await _matches_filters(source, concept_filters(part), coded.code):
                    return False
        for url in part.get("valueSet") or []:
            imported = await self.resolver.value_set(url)
            if imported is None:
                raise not_supported(f"The value set {url} is not known to this server")
            if not await self.contains(imported, coded, depth + 1):
                return False
        return system is not None or bool(part.get("valueSet"))


def _in_expansion(contains: Any, coded: Coded) -> bool:
    for item in contains or []:
        if not isinstance(item, dict):
            continue
        if item.get("system") == coded.system and item.get("code") == coded.code:
            return True
        if _in_expansion(item.get("contains"), coded):
            return True
    return False


def _names(concept: Concept) -> set[str]:
    names = {d.value.casefold() for d in concept.designations}
    if concept.display:
        names.add(concept.display.casefold())
    return names


def judge(
    source: Source | None, concept: Concept | None, coded: Coded, abstract_ok: bool
) -> Verdict:
    """The verdict on a code that the value set (if any) contains, from its concept."""
    where = f"{coded.system}|{coded.code}"
    if source is None:
        return Verdict(False, (f"The code system {coded.system} is not known to this server",))
    if concept is None:
        if source.info.content == "fragment":
            note = f"The code {coded.code} is not in the fragment of {coded.system} known here"
            return Verdict(False, (note,))
        return Verdict(False, (f"Unknown code {where}",), None)
    messages: list[str] = []
    result = True
    if is_abstract(concept) and not abstract_ok:
        result = False
        messages.append(f"The code {where} is abstract: not for use in data")
    if concept.inactive:
        messages.append(f"The code {where} is inactive")
    if coded.display and coded.display.casefold() not in _names(concept):
        messages.append(
            f"The display {coded.display!r} is not a display of {where}; "
            f"it should be {concept.display!r}"
        )
    return Verdict(result, tuple(messages), concept.display)


def _included_systems(value_set: Resource | None) -> set[str]:
    compose = (value_set or {}).get("compose") or {}
    includes = compose.get("include") or [] if isinstance(compose, dict) else []
    return {
        i["system"] for i in includes if isinstance(i, dict) and isinstance(i.get("system"), str)
    }


async def validate_code(
    resolver: Resolver, coded: Coded, value_set: Resource | None, abstract_ok: bool
) -> Verdict:
    if coded.system is None:
        systems = _included_systems(value_set)
        if len(systems) != 1:
            where = "" if value_set is None else " and the value set includes several systems"
            return Verdict(False, (f"The code {coded.code} has no system{where}: give system",))
        coded = replace(coded, system=systems.pop())  # a bare `code` (e.g. Observation.status)
    if value_set is not None and not await Membership(resolver).contains(value_set, coded):
        url = value_set.get("url") or "the value set"
        return Verdict(False, (f"The code {coded.system}|{coded.code} is not in {url}",))
    system = coded.system
    assert system is not None
    source = await resolver.code_system(system, coded.version)
    concept = (await source.concepts([coded.code])).get(coded.code) if source else None
    if value_set is not None and source is None:  # listed in the value set: trust it
        note = f"The code system {coded.system} is not known here: the code was not checked"
        return Verdict(True, (note,), coded.display)
    return judge(source, concept, coded, abstract_ok)

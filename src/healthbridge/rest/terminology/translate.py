"""ConceptMap $translate: https://hl7.org/fhir/R4/conceptmap-operation-translate.html.

The map is the instance, the inline ``conceptMap`` or the one with canonical ``url``; without
any, every stored ConceptMap with a group from the source system (``source-system`` search) and
every R4 core map are used. ``source``/``target`` (value set canonicals) narrow the maps,
``targetsystem`` the groups; ``reverse`` maps from targets back to sources. The answer is
``result`` (a match that is neither ``unmatched`` nor ``disjoint``), a ``message`` when there is
none, and one ``match`` per target (equivalence, concept, source).
"""

from __future__ import annotations

from typing import Any

from healthbridge.fhir import jsonformat
from healthbridge.fhir.errors import InvalidRequest, NotFound
from healthbridge.fhir.terminology.parameters import Inputs, parameter, parameters
from healthbridge.fhir.terminology.translate import Match, is_match, translate
from healthbridge.fhir.types import Resource
from healthbridge.rest.terminology.sources import Resolver

MAX_MAPS = 50


def _scope(concept_map: Resource, side: str) -> str | None:
    value = concept_map.get(f"{side}Uri") or concept_map.get(f"{side}Canonical")
    return value.split("|", 1)[0] if isinstance(value, str) else None


async def _candidates(resolver: Resolver, system: str | None, reverse: bool) -> list[Resource]:
    maps = list(resolver.core.concept_maps.values())
    if system is not None:
        param = "target-system" if reverse else "source-system"
        query = resolver.parser.parse("ConceptMap", [(param, system), ("_count", str(MAX_MAPS))])
        page = await resolver.repository.search(query)
        maps = [jsonformat.loads(m.content) for m in page.matches] + maps
    return maps


async def _maps(
    resolver: Resolver, inputs: Inputs, instance: Resource | None, system: str | None
) -> list[Resource]:
    if instance is not None:
        return [instance]
    inline = inputs.resource("conceptMap", "ConceptMap")
    if inline is not None:
        return [inline]
    url = inputs.text("url")
    if url is not None:
        found = await resolver.concept_map(url)
        if found is None:
            raise NotFound(f"The concept map {url} is not known to this server", code="not-found")
        return [found]
    maps = await _candidates(resolver, system, inputs.flag("reverse") is True)
    source, target = inputs.text("source"), inputs.text("target")
    return [
        m
        for m in maps
        if (source is None or _scope(m, "source") == source.split("|", 1)[0])
        and (target is None or _scope(m, "target") == target.split("|", 1)[0])
    ]


def _coding(inputs: Inputs) -> tuple[str | None, str]:
    coding = inputs.coding("coding")
    if coding is not None:
        return coding.get("system"), coding["code"]
    concept = inputs.codings("codeableConcept")
    if concept:
        first = next((c for c in concept if isinstance(c.get("code"), str)), None)
        if first is not None:
            return first.get("system"), first["code"]
    code = inputs.text("code")
    if code is None:
        raise InvalidRequest("Parameter 'code' is required", code="required", expression="code")
    return inputs.text("system"), code


def _match(match: Match) -> dict[str, Any]:
    concept: dict[str, Any] = {}
    if match.system:
        concept["system"] = match.system
    concept["code"] = match.code
    if match.display:
        concept["display"] = match.display
    parts = [
        parameter("equivalence", valueCode=match.equivalence),
        parameter("concept", valueCoding=concept),
    ]
    if match.source:
        parts.append(parameter("source", valueUri=match.source))
    return parameter("match", part=parts)


async def translate_request(
    resolver: Resolver, inputs: Inputs, instance: Resource | None
) -> Resource:
    system, code = _coding(inputs)
    reverse = inputs.flag("reverse") is True
    maps = await _maps(resolver, inputs, instance, system)
    found = translate(maps, system, code, inputs.text("targetsystem"), reverse=reverse)
    result = any(is_match(m) for m in found)
    out = [parameter("result", valueBoolean=result)]
    if not result:
        where = f"{system}|{code}" if system else code
        out.append(parameter("message", valueString=f"No mapping found for {where}"))
    out.extend(_match(m) for m in found)
    return parameters(out)

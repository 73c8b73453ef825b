"""CodeSystem resources as concept records: https://hl7.org/fhir/R4/codesystem.html.

``concept`` nesting and the ``parent``/``child`` properties become ``Concept.parents``; a concept
whose ``inactive`` property is true or whose ``status`` is ``retired`` or ``inactive``
(https://hl7.org/fhir/R4/codesystem-concept-properties.html) is inactive. Typed
``value[x]`` of ``concept.property`` become :data:`PropertyValue` values.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any, cast

from healthbridge.fhir.terminology.concepts import (
    CodeSystemInfo,
    Concept,
    ConceptProperty,
    Designation,
    PropertyDefinition,
    PropertyType,
    PropertyValue,
)
from healthbridge.fhir.types import Resource

_TYPES = ("code", "Coding", "string", "integer", "boolean", "dateTime", "decimal")
INACTIVE_STATUS = frozenset({"retired", "inactive"})
NOT_SELECTABLE = frozenset({"notSelectable", "abstract"})


def code_system_info(resource: Resource, source: str = "resource") -> CodeSystemInfo:
    props = tuple(
        PropertyDefinition(
            code=str(p["code"]),
            type=cast(PropertyType, p.get("type") if p.get("type") in _TYPES else "string"),
            uri=p.get("uri"),
            description=p.get("description"),
        )
        for p in resource.get("property") or []
        if isinstance(p, dict) and isinstance(p.get("code"), str)
    )
    case_sensitive = resource.get("caseSensitive")
    return CodeSystemInfo(
        url=str(resource.get("url") or ""),
        version=resource.get("version"),
        name=resource.get("name"),
        title=resource.get("title"),
        status=str(resource.get("status") or "active"),
        content=str(resource.get("content") or "complete"),
        case_sensitive=case_sensitive is not False,
        hierarchy_meaning=resource.get("hierarchyMeaning") or "is-a",
        properties=props,
        count=resource.get("count"),
        publisher=resource.get("publisher"),
        copyright=resource.get("copyright"),
        source=source,
    )


def property_value(prop: dict[str, Any]) -> PropertyValue | None:
    """The value of one ``concept.property`` (``valueCoding`` as a (system, code) pair)."""
    for key in ("valueCode", "valueString", "valueDateTime"):
        if isinstance(prop.get(key), str):
            return str(prop[key])
    if isinstance(prop.get("valueBoolean"), bool):
        return bool(prop["valueBoolean"])
    if isinstance(prop.get("valueInteger"), int):
        return int(prop["valueInteger"])
    if isinstance(prop.get("valueDecimal"), int | float | Decimal):
        return Decimal(str(prop["valueDecimal"]))
    coding = prop.get("valueCoding")
    if isinstance(coding, dict):
        return (str(coding.get("system") or ""), str(coding.get("code") or ""))
    return None


def _nodes(nodes: Any, parent: str | None = None) -> Iterator[tuple[dict[str, Any], str | None]]:
    for node in nodes or []:
        if isinstance(node, dict) and isinstance(node.get("code"), str):
            yield node, parent
            yield from _nodes(node.get("concept"), node["code"])


def _designations(node: dict[str, Any]) -> tuple[Designation, ...]:
    out = []
    for d in node.get("designation") or []:
        if not isinstance(d, dict) or not isinstance(d.get("value"), str):
            continue
        use = d.get("use")
        pair = (str(use.get("system") or ""), str(use.get("code") or "")) if use else None
        out.append(Designation(d["value"], d.get("language"), pair))
    return tuple(out)


def concepts(resource: Resource) -> list[Concept]:
    """Every concept of ``resource`` with its parents (from nesting and properties)."""
    parents: dict[str, list[str]] = {}
    nodes: list[dict[str, Any]] = []
    for node, parent in _nodes(resource.get("concept")):
        code = node["code"]
        links = parents.setdefault(code, [])
        nodes.append(node)
        if parent is not None and parent not in links:
            links.append(parent)
        for prop in node.get("property") or []:
            target = prop.get("valueCode") if isinstance(prop, dict) else None
            if not isinstance(target, str):
                continue
            if prop.get("code") == "parent" and target not in links:
                links.append(target)
            elif prop.get("code") == "child":
                below = parents.setdefault(target, [])
                if code not in below:
                    below.append(code)
    seen: dict[str, Concept] = {}
    for node in nodes:
        if node["code"] not in seen:
            seen[node["code"]] = _concept(node, tuple(parents.get(node["code"], ())))
    return list(seen.values())


def _concept(node: dict[str, Any], parents: tuple[str, ...]) -> Concept:
    props = []
    for prop in node.get("property") or []:
        if not isinstance(prop, dict) or not isinstance(prop.get("code"), str):
            continue
        value = property_value(prop)
        if value is not None and prop["code"] not in ("parent", "child"):
            props.append(ConceptProperty(prop["code"], value))
    inactive = any(
        (p.code == "inactive" and p.value is True)
        or (p.code == "status" and p.value in INACTIVE_STATUS)
        for p in props
    )
    return Concept(
        code=node["code"],
        display=node.get("display"),
        definition=node.get("definition"),
        designations=_designations(node),
        properties=tuple(props),
        parents=parents,
        inactive=inactive,
    )


def is_abstract(concept: Concept) -> bool:
    """``notSelectable`` (or ``abstract``) is true: not for use in data."""
    return any(p.code in NOT_SELECTABLE and p.value is True for p in concept.properties)

"""Concept records as rows of the ``term_*`` tables (:mod:`.tables`), and back.

https://hl7.org/fhir/R4/codesystem.html: a concept row keeps what ``$lookup`` returns (definition,
designations, typed properties, parents) as compact JSON in ``data``; the index tables hold what
filters compare: is-a edges, property values as text
(:func:`~healthbridge.fhir.terminology.concept_index.value_text`) and the words of the display
and designations (:func:`~healthbridge.fhir.terminology.words.words`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from healthbridge.fhir.terminology.concept_index import value_text
from healthbridge.fhir.terminology.concepts import (
    CodeSystemInfo,
    Concept,
    ConceptProperty,
    Designation,
    PropertyDefinition,
    PropertyValue,
)
from healthbridge.fhir.terminology.words import words

Row = Sequence[Any]


def _typed(value: PropertyValue) -> list[Any]:
    if isinstance(value, tuple):
        return ["C", value[0], value[1]]
    if isinstance(value, bool):
        return ["b", value]
    if isinstance(value, int):
        return ["i", value]
    if isinstance(value, Decimal):
        return ["d", str(value)]
    return ["s", value]


def _untyped(raw: list[Any]) -> PropertyValue:
    tag = raw[0]
    if tag == "C":
        return (str(raw[1]), str(raw[2]))
    if tag == "d":
        return Decimal(raw[1])
    if tag == "b":
        return bool(raw[1])
    if tag == "i":
        return int(raw[1])
    return str(raw[1])


def encode_data(concept: Concept) -> str:
    data: dict[str, Any] = {}
    if concept.definition:
        data["d"] = concept.definition
    if concept.designations:
        data["g"] = [
            [d.value, d.language, *(d.use if d.use else (None, None))] for d in concept.designations
        ]
    if concept.properties:
        data["p"] = [[p.code, *_typed(p.value)] for p in concept.properties]
    if concept.parents:
        data["u"] = list(concept.parents)
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def decode_concept(row: Row) -> Concept:
    """A concept from ``(code, display, inactive, data)``."""
    code, display, inactive, raw = row
    data = json.loads(raw)
    return Concept(
        code=code,
        display=display,
        definition=data.get("d"),
        designations=tuple(
            Designation(g[0], g[1], (g[2], g[3]) if g[2] is not None else None)
            for g in data.get("g", ())
        ),
        properties=tuple(ConceptProperty(p[0], _untyped(p[1:])) for p in data.get("p", ())),
        parents=tuple(data.get("u", ())),
        inactive=bool(inactive),
    )


def concept_row(system_id: int, concept: Concept) -> tuple[Any, ...]:
    return (system_id, concept.code, concept.display, concept.inactive, encode_data(concept))


def edge_rows(system_id: int, concept: Concept) -> list[tuple[Any, ...]]:
    return [(system_id, concept.code, parent) for parent in dict.fromkeys(concept.parents)]


def property_rows(system_id: int, concept: Concept) -> list[tuple[Any, ...]]:
    found = {(p.code, value_text(p.value)) for p in concept.properties}
    return [(system_id, prop, value, concept.code) for prop, value in sorted(found)]


def word_rows(system_id: int, concept: Concept) -> list[tuple[Any, ...]]:
    names = [concept.display, *(d.value for d in concept.designations)]
    found = dict.fromkeys(w for name in names for w in words(name))
    return [(system_id, word, concept.code) for word in found]


def encode_info(info: CodeSystemInfo) -> str:
    data = {
        "url": info.url,
        "version": info.version,
        "name": info.name,
        "title": info.title,
        "status": info.status,
        "content": info.content,
        "case_sensitive": info.case_sensitive,
        "hierarchy_meaning": info.hierarchy_meaning,
        "properties": [[p.code, p.type, p.uri, p.description] for p in info.properties],
        "count": info.count,
        "publisher": info.publisher,
        "copyright": info.copyright,
        "source": info.source,
        "extra": [list(pair) for pair in info.extra],
    }
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def decode_info(raw: str) -> CodeSystemInfo:
    data = json.loads(raw)
    return CodeSystemInfo(
        url=data["url"],
        version=data["version"],
        name=data["name"],
        title=data["title"],
        status=data["status"],
        content=data["content"],
        case_sensitive=data["case_sensitive"],
        hierarchy_meaning=data["hierarchy_meaning"],
        properties=tuple(PropertyDefinition(*p) for p in data["properties"]),
        count=data["count"],
        publisher=data["publisher"],
        copyright=data["copyright"],
        source=data["source"],
        extra=tuple((str(k), str(v)) for k, v in data["extra"]),
    )

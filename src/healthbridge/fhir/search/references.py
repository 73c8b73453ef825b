"""Reference index values: https://hl7.org/fhir/R4/search.html#reference.

A Reference is indexed by what ``reference`` holds (https://hl7.org/fhir/R4/references.html):
a relative ``Type/id[/_history/v]`` gives type and id; an absolute URL keeps the URL and, when it
ends in ``Type/id``, the type and id too; ``urn:uuid:``/``urn:oid:`` are kept as URLs; contained
references ``#x`` are not indexed. ``Reference.identifier`` is indexed for ``:identifier``. A
canonical (https://hl7.org/fhir/R4/references.html#canonical) gives ``url`` and ``version``.
"""

from __future__ import annotations

import re
from typing import Any

from healthbridge.fhir.search.values import ReferenceValue

_LOCAL = re.compile(
    r"(?:(?P<base>.*)/)?(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})"
    r"(?:/_history/(?P<version>[A-Za-z0-9\-.]{1,64}))?"
)


def parse_reference(text: str) -> ReferenceValue | None:
    """The index value of a ``Reference.reference`` string (None for ``#contained``)."""
    if not text or text.startswith("#"):
        return None
    if text.startswith("urn:"):
        return ReferenceValue(url=text)
    match = _LOCAL.fullmatch(text)
    absolute = "://" in text
    if match is None or (match["base"] is not None and not absolute):
        return ReferenceValue(url=text)
    return ReferenceValue(
        target_type=match["type"],
        target_id=match["id"],
        url=text if absolute else None,
        version=match["version"],
    )


def reference_type(node: dict[str, Any], root: dict[str, Any]) -> str | None:
    """The resource type a Reference points at, as ``resolve() is T`` needs it: from the
    reference string, or from the contained resource a ``#id`` reference names."""
    text = node.get("reference")
    if not isinstance(text, str):
        return None
    if text.startswith("#"):
        for contained in root.get("contained", ()):
            if isinstance(contained, dict) and contained.get("id") == text[1:]:
                found = contained.get("resourceType")
                return found if isinstance(found, str) else None
        return None
    parsed = parse_reference(text)
    return parsed.target_type if parsed else None


def canonical_value(text: str) -> ReferenceValue:
    """A canonical ``url|version`` (https://hl7.org/fhir/R4/search.html#versions)."""
    url, _, version = text.partition("|")
    return ReferenceValue(url=url, version=version or None)


def reference_values(node: Any) -> list[ReferenceValue]:
    """Index values of one selected element: a Reference, a canonical or a uri."""
    if isinstance(node, str):
        return [canonical_value(node)]
    if not isinstance(node, dict):
        return []
    out: list[ReferenceValue] = []
    text = node.get("reference")
    parsed = parse_reference(text) if isinstance(text, str) else None
    if parsed is not None:
        if parsed.target_type is None and isinstance(node.get("type"), str):
            parsed = ReferenceValue(target_type=node["type"], url=parsed.url)
        out.append(parsed)
    identifier = node.get("identifier")
    if isinstance(identifier, dict) and identifier.get("value") is not None:
        out.append(
            ReferenceValue(
                target_type=node.get("type"),
                identifier_system=identifier.get("system"),
                identifier_value=str(identifier["value"]),
            )
        )
    return out

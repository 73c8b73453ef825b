"""Resolving references inside the validated content: https://hl7.org/fhir/R4/references.html.

Only what travels with the resource is resolved, never anything on a server: contained resources
(``#id``, https://hl7.org/fhir/R4/references.html#contained) and the entries of an enclosing
Bundle, by ``fullUrl`` or by ``Type/id`` relative to it
(https://hl7.org/fhir/R4/bundle.html#references).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final

from healthbridge.fhir.validation.instance import Loc

_TYPE_ID: Final = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")

#: A resolved target: the resource and where it sits (for issue locations).
Target = tuple[dict[str, Any], Loc]


@dataclass(slots=True)
class Scope:
    """The resources a reference may point to from one place in the walk."""

    entries: dict[str, Target] = field(default_factory=dict)  # fullUrl and Type/id
    contained: dict[str, Target] = field(default_factory=dict)  # "#id"

    def with_bundle(self, bundle: dict[str, Any], loc: Loc) -> Scope:
        """This scope plus the entries of ``bundle`` (whose location is ``loc``)."""
        entries = dict(self.entries)
        raw = bundle.get("entry")
        for index, entry in enumerate(raw if isinstance(raw, list) else ()):
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(resource, dict):
                continue
            target: Target = (resource, ((loc, "entry", index), "resource", -1))
            full_url = entry.get("fullUrl")
            if isinstance(full_url, str):
                entries[full_url] = target
            rtype, rid = resource.get("resourceType"), resource.get("id")
            if isinstance(rtype, str) and isinstance(rid, str):
                entries.setdefault(f"{rtype}/{rid}", target)
        return Scope(entries, self.contained)

    def with_resource(self, resource: dict[str, Any], loc: Loc) -> Scope:
        """This scope inside ``resource``: its contained resources answer ``#id``."""
        raw = resource.get("contained")
        if not isinstance(raw, list):
            return self if not self.contained else Scope(self.entries, {})
        contained: dict[str, Target] = {}
        for index, item in enumerate(raw):
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                contained["#" + item["id"]] = (item, (loc, "contained", index))
        return Scope(self.entries, contained)

    def resolve(self, reference: object) -> Target | None:
        """The target of a Reference object (or reference string), when it is here."""
        text = reference.get("reference") if isinstance(reference, dict) else reference
        if not isinstance(text, str) or not text:
            return None
        if text.startswith("#"):
            return self.contained.get(text)
        found = self.entries.get(text)
        if found is None:
            match = _TYPE_ID.search(text)
            if match is not None:
                found = self.entries.get(f"{match.group(1)}/{match.group(2)}")
        return found


def literal_type(reference: object) -> str | None:
    """The resource type named by a literal reference (``Patient/1``, ``http://x/Patient/1``),
    or the ``type`` of a Reference; None for ``#id``, ``urn:uuid:`` and logical references."""
    if not isinstance(reference, dict):
        return None
    stated = reference.get("type")
    text = reference.get("reference")
    if isinstance(text, str) and not text.startswith(("#", "urn:")):
        match = _TYPE_ID.search(text)
        if match is not None:
            return match.group(1)
    return stated if isinstance(stated, str) else None

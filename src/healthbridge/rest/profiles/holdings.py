"""The conformance resources stored on this server, indexed by canonical url.

https://hl7.org/fhir/R4/resource.html#canonical: a StructureDefinition, ValueSet or CodeSystem is
found by ``url`` (the newest business version) or ``url|version`` (that version). A
:class:`Holdings` is an immutable snapshot; a write makes a new one (:meth:`Holdings.changed`),
so readers never see a half-updated index.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from healthbridge.fhir import jsonformat
from healthbridge.fhir.types import Resource
from healthbridge.store.repository import StoredResource

WATCHED: Final = frozenset({"StructureDefinition", "ValueSet", "CodeSystem"})
"""The types whose writes change what profile validation knows."""

_RELEASE = re.compile(r"(\d+(?:\.\d+)*)(.*)")


@dataclass(frozen=True, slots=True)
class Held:
    resource: Resource
    last_updated: datetime
    version_id: int


def version_key(version: object) -> tuple[Any, ...]:
    """Orders business versions: numerically by dotted numbers (``1.10.0`` after ``1.9.0``), a
    pre-release (``2.0.0-ballot``) before its release, anything else before numbered ones."""
    text = version if isinstance(version, str) else ""
    found = _RELEASE.fullmatch(text)
    if found is None:
        return ((), 0, text)
    numbers = tuple(int(n) for n in found.group(1).split("."))
    suffix = found.group(2)
    return (numbers, 0 if suffix else 1, suffix)


def _index(held: Iterable[Held]) -> dict[str, Resource]:
    """``url`` -> its newest version (ties: the last written), ``url|version`` -> that one."""
    ordered = sorted(held, key=lambda h: (version_key(h.resource.get("version")), h.last_updated))
    index: dict[str, Resource] = {}
    for item in ordered:
        url, version = item.resource.get("url"), item.resource.get("version")
        if not isinstance(url, str):
            continue
        index[url] = item.resource
        if isinstance(version, str):
            index[f"{url}|{version}"] = item.resource
    return index


def decode(stored: StoredResource) -> Held | None:
    """The resource of a stored version (None for a delete or content that is not a resource)."""
    if stored.deleted or not stored.content:
        return None
    resource = jsonformat.loads(stored.content)
    if not isinstance(resource, dict):
        return None
    return Held(resource, stored.last_updated, stored.version_id)


class Holdings:
    """StructureDefinitions, ValueSets and CodeSystems by ``(type, id)`` and by canonical."""

    def __init__(self, entries: Mapping[tuple[str, str], Held]) -> None:
        self.entries = dict(entries)
        by_type: dict[str, list[Held]] = {kind: [] for kind in WATCHED}
        for (kind, _), held in self.entries.items():
            by_type.setdefault(kind, []).append(held)
        self.structures = _index(by_type["StructureDefinition"])
        self.value_sets = _index(by_type["ValueSet"])
        self.code_systems = _index(by_type["CodeSystem"])

    def changed(self, stored: Iterable[StoredResource]) -> Holdings:
        """These holdings after the committed writes ``stored``; a version older than the one
        held is passed over (a reload may already have read a newer one)."""
        entries = dict(self.entries)
        for version in stored:
            key = (version.resource_type, version.id)
            earlier = entries.get(key)
            if earlier is not None and earlier.version_id > version.version_id:
                continue
            held = decode(version)
            if held is None:
                entries.pop(key, None)
            else:
                entries[key] = held
        return Holdings(entries)

    def profiles_by_type(self) -> dict[str, list[str]]:
        """Resource type -> the urls of the stored profiles that constrain it (sorted)."""
        found: dict[str, set[str]] = {}
        for (kind, _), held in self.entries.items():
            sd = held.resource
            if kind != "StructureDefinition" or sd.get("derivation") != "constraint":
                continue
            rtype, url = sd.get("type"), sd.get("url")
            if sd.get("kind") == "resource" and isinstance(rtype, str) and isinstance(url, str):
                found.setdefault(rtype, set()).add(url)
        return {rtype: sorted(urls) for rtype, urls in sorted(found.items())}


EMPTY: Final = Holdings({})

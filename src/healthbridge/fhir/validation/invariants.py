"""Invariants enforced without a FHIRPath engine.

* ``ele-1`` (https://hl7.org/fhir/R4/element.html#invariants): every element has a value or
  children other than ``id``. Empty objects and arrays are refused by the structure pass
  (json.html: they SHALL NOT appear); an object holding only ``id`` is refused here.
* ``ext-1`` (https://hl7.org/fhir/R4/extensibility.html#Extension): an extension has either a
  ``value[x]`` or nested extensions, not both and not neither.
* ``dom-2``, ``dom-3``, ``dom-4``, ``dom-5`` (https://hl7.org/fhir/R4/domainresource.html#invariants):
  a contained resource has no contained resources of its own, no ``meta.versionId``,
  ``meta.lastUpdated`` or ``meta.security``, and is referenced from the rest of the container
  (``#id``) or refers to the container (``#``).

R4 dropped STU3's ``dom-1`` (contained resources SHALL NOT carry narrative); a contained
resource with ``text`` gets a *warning* only, since its container's narrative should cover it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from healthbridge.fhir import jsonformat
from healthbridge.fhir.errors import Severity

Step = tuple[str, int]  # (element name, index or -1)


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken invariant; ``steps`` lead from the checked node to the offending element."""

    key: str
    message: str
    steps: tuple[Step, ...] = ()
    severity: Severity = "error"


def extension_violation(extension: dict[str, Any], has_value: bool) -> Violation | None:
    """ext-1 for one Extension object."""
    has_children = "extension" in extension
    if has_value and has_children:
        return Violation("ext-1", "an extension has either value[x] or extensions, not both")
    if not has_value and not has_children:
        return Violation("ext-1", "an extension needs a value[x] or nested extensions")
    return None


def id_only_violation(element: dict[str, Any]) -> Violation | None:
    """ele-1 for a complex element whose only child is ``id``."""
    if len(element) == 1 and "id" in element:
        return Violation("ele-1", "an element needs a value or children other than id")
    return None


def contained_violations(resource: dict[str, Any]) -> list[Violation]:
    """dom-2, dom-4, dom-5 (and the narrative warning) for one contained resource."""
    found: list[Violation] = []
    if "contained" in resource:
        found.append(
            Violation(
                "dom-2", "a contained resource SHALL NOT contain resources", (("contained", -1),)
            )
        )
    meta = resource.get("meta")
    if type(meta) is dict:
        for key in ("versionId", "lastUpdated"):
            if key in meta:
                message = f"a contained resource SHALL NOT have meta.{key}"
                found.append(Violation("dom-4", message, (("meta", -1), (key, -1))))
        if "security" in meta:
            message = "a contained resource SHALL NOT have a security label"
            found.append(Violation("dom-5", message, (("meta", -1), ("security", -1))))
    if "text" in resource:
        message = "a contained resource should not carry narrative; the container's covers it"
        found.append(Violation("dom-1", message, (("text", -1),), "warning"))
    return found


def _local_references(value: dict[str, Any]) -> set[str]:
    """Every string starting with ``#`` below ``value`` (references, canonicals, uris).

    Iterative, so that no input can exhaust the Python stack.
    """
    found: set[str] = set()
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        for child in item.values() if type(item) is dict else item:
            kind = type(child)
            if kind is str:
                if child[:1] == "#":
                    found.add(child)
            elif kind is dict or kind is list:
                stack.append(child)
    return found


class _Mentions:
    """Answers "does this JSON hold the string value S?" for local references.

    Fast path: search the compact JSON encoding (msgspec, C speed) for the encoded string; a
    match counts only where a value starts (after ``:``, ``,`` or ``[``), never inside another
    string. Falls back to walking the objects when the value cannot be encoded.
    """

    def __init__(self, value: dict[str, Any]) -> None:
        self._value = value
        try:
            self._encoded: bytes | None = jsonformat.dumps(value)
        except (TypeError, msgspec.EncodeError):
            self._encoded = None
        self._walked: set[str] | None = None

    def __contains__(self, text: str) -> bool:
        if self._encoded is None:
            if self._walked is None:
                self._walked = _local_references(self._value)
            return text in self._walked
        needle = jsonformat.dumps(text)
        position = self._encoded.find(needle)
        while position > 0:
            if self._encoded[position - 1] in _VALUE_STARTS:
                return True
            position = self._encoded.find(needle, position + 1)
        return False


_VALUE_STARTS = frozenset(b":,[")


def unreferenced_contained(resource: dict[str, Any]) -> list[Violation]:
    """dom-3: each contained resource is referenced as ``#id`` or refers to ``#``."""
    contained = resource.get("contained")
    if type(contained) is not list:
        return []
    mentions = _Mentions(resource)
    found: list[Violation] = []
    for index, item in enumerate(contained):
        if type(item) is not dict:
            continue
        local_id = item.get("id")
        if isinstance(local_id, str) and f"#{local_id}" in mentions:
            continue
        if "#" in _Mentions(item):
            continue
        message = (
            f"contained resource {local_id!r} is not referenced from the container "
            f"(as '#{local_id}') and does not refer to the container (as '#')"
        )
        found.append(Violation("dom-3", message, (("contained", index),)))
    return found

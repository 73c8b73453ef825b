"""A simplified snapshot generator: https://hl7.org/fhir/R4/profiling.html#snapshot.

A StructureDefinition published with only a ``differential`` is completed here from its base's
snapshot (generated first when the base lacks one too): each differential element is merged into
the base element with the same id; a new slice starts as a copy of the element it slices; an
element inside a datatype the base does not expand (``Observation.code.coding``) starts as the
datatype's own element. Constraints are added to the inherited ones, every other property
replaces the inherited value. What this cannot place raises :class:`SnapshotError`.

Not covered (the publisher's full algorithm): re-ordering by the base, ``contentReference``
unfolding, choice renames in the differential (``Observation.valueQuantity``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, Final

CORE: Final = "http://hl7.org/fhir/StructureDefinition/"
_MAX_DEPTH: Final = 12

Lookup = Callable[[str], dict[str, Any] | None]


class SnapshotError(Exception):
    """The differential cannot be turned into a snapshot; the message says why."""


def _strip_slices(element_id: str) -> str:
    return ".".join(part.partition(":")[0] for part in element_id.split("."))


def _element_id(diff: dict[str, Any]) -> str:
    element_id = diff.get("id")
    if isinstance(element_id, str):
        return element_id
    path = str(diff.get("path", ""))
    name = diff.get("sliceName")
    return f"{path}:{name}" if name else path


def _merge(target: dict[str, Any], diff: dict[str, Any]) -> None:
    for key, value in diff.items():
        if key == "constraint" and isinstance(value, list):
            known = {c.get("key") for c in target.get("constraint", ()) if isinstance(c, dict)}
            extra = [c for c in value if isinstance(c, dict) and c.get("key") not in known]
            target["constraint"] = [*target.get("constraint", ()), *extra]
        elif key.startswith(("fixed", "pattern")):
            for old in [k for k in target if k.startswith(("fixed", "pattern"))]:
                del target[old]
            target[key] = copy.deepcopy(value)
        else:
            target[key] = copy.deepcopy(value)


class _Builder:
    def __init__(self, base: list[dict[str, Any]], lookup: Lookup, depth: int) -> None:
        self.elements = [copy.deepcopy(e) for e in base]
        self.lookup = lookup
        self.depth = depth

    def index(self, element_id: str) -> int | None:
        for position, element in enumerate(self.elements):
            if element.get("id", element.get("path")) == element_id:
                return position
        return None

    def add(self, diff: dict[str, Any]) -> None:
        element_id = _element_id(diff)
        position = self.index(element_id)
        if position is not None:
            _merge(self.elements[position], diff)
            return
        template = self.template(element_id)
        template["id"] = element_id
        last = element_id.rpartition(".")[2]
        template.pop("slicing", None)
        if ":" in last:
            template["sliceName"] = last.partition(":")[2].rpartition("/")[2]
        _merge(template, diff)
        self.elements.insert(self.insertion_point(element_id), template)

    def template(self, element_id: str) -> dict[str, Any]:
        unsliced = _strip_slices(element_id)
        position = self.index(unsliced)
        if position is not None:
            return copy.deepcopy(self.elements[position])
        parent_id, _, name = element_id.rpartition(".")
        parent = self.index(parent_id) if parent_id else None
        if parent is None:
            parent = self.index(_strip_slices(parent_id))
        if parent is None:
            raise SnapshotError(f"differential element {element_id} has no parent in the base")
        return self.from_type(self.elements[parent], name.partition(":")[0], element_id)

    def from_type(self, parent: dict[str, Any], name: str, element_id: str) -> dict[str, Any]:
        types = parent.get("type") or [{}]
        code = str(types[0].get("code", ""))
        definition = self.lookup(CORE + code) if code else None
        if definition is None:
            raise SnapshotError(f"cannot expand {element_id}: type {code or '?'} is unknown")
        for element in snapshot_elements(definition, self.lookup, self.depth + 1):
            if element.get("path") == f"{code}.{name}":
                found: dict[str, Any] = copy.deepcopy(element)
                found["path"] = f"{parent['path']}.{name}"
                return found
        raise SnapshotError(f"cannot expand {element_id}: {code} has no element {name}")

    def insertion_point(self, element_id: str) -> int:
        """After the last element of the owner's subtree (keeps slices in differential order)."""
        head, _, last = element_id.rpartition(".")
        owner = f"{head}.{last.partition(':')[0]}" if ":" in last else head
        position = len(self.elements)
        for index, element in enumerate(self.elements):
            other = str(element.get("id", element.get("path")))
            if other == owner or other.startswith((owner + ".", owner + ":")):
                position = index + 1
        return position


def snapshot_elements(definition: dict[str, Any], lookup: Lookup, depth: int = 0) -> list[Any]:
    """The snapshot elements of ``definition``, generated from the differential if needed."""
    snapshot = definition.get("snapshot")
    if isinstance(snapshot, dict) and isinstance(snapshot.get("element"), list):
        return list(snapshot["element"])
    differential = definition.get("differential")
    base_url = definition.get("baseDefinition")
    if not isinstance(differential, dict) or not isinstance(base_url, str):
        raise SnapshotError("it has neither a snapshot nor a differential with a baseDefinition")
    if depth > _MAX_DEPTH:
        raise SnapshotError("the chain of base definitions is too deep")
    base = lookup(base_url)
    if base is None:
        raise SnapshotError(f"its base {base_url} is unknown")
    builder = _Builder(snapshot_elements(base, lookup, depth + 1), lookup, depth)
    for diff in differential.get("element", ()):
        if isinstance(diff, dict) and "path" in diff:
            builder.add(diff)
    return builder.elements

"""FHIRPath Patch: https://hl7.org/fhir/R4/fhirpatch.html.

``PATCH [base]/[type]/[id]`` (https://hl7.org/fhir/R4/http.html#patch) with a Parameters body:
the operations apply in order to a copy of the resource, each to the result of the one before.

* ``add`` (path, name, value): a child ``name`` of the one element ``path`` selects; appended
  when it repeats, and only when absent when it does not;
* ``insert`` (path, value, index): into the list ``path`` names, at ``index`` (0 to its length);
* ``delete`` (path): the element ``path`` selects; none selected is fine (nothing to do);
  elements left empty by the deletion go too (json.html: no empty objects);
* ``replace`` (path, value): the one element ``path`` selects (a choice element may change type);
* ``move`` (path, source, destination): within the list ``path`` names.

A path that selects no element (or several) where one is needed, an index out of range, or a
value of a type that does not fit the element is Unprocessable (422); a malformed Parameters is
InvalidRequest (400). Both name the operation (``Parameters.parameter[0]``). Validating the
result is the caller's job, as for any update.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from healthbridge.fhir.definitions import Definitions
from healthbridge.fhir.errors import FhirError, Unprocessable
from healthbridge.fhir.patch import elements
from healthbridge.fhir.patch.elements import Json
from healthbridge.fhir.patch.located import Node, Paths
from healthbridge.fhir.patch.parameters import Operation, read_operations
from healthbridge.fhir.patch.values import PatchValue, fit
from healthbridge.fhir.types import Resource


def apply_fhirpath_patch(resource: Resource, parameters: Any, definitions: Definitions) -> Resource:
    """The patched copy of ``resource`` (which is left as it was)."""
    operations = read_operations(parameters, definitions)
    patched = copy.deepcopy(resource)
    for operation in operations:
        try:
            _APPLY[operation.type](Paths(definitions, patched), operation, definitions)
        except FhirError as exc:
            raise _named(exc, operation.where) from None
    return patched


def _add(paths: Paths, operation: Operation, definitions: Definitions) -> None:
    target = _one(paths.select(operation.path), operation)
    slots = elements.slots_named(definitions, target.type_path, operation.name)
    if not slots:
        raise Unprocessable(
            f"{target.type_path} has no element {operation.name!r}", code="not-found"
        )
    slot, json, extras = fit(definitions, _value(operation), slots)
    holder = _members(target)
    if slot.repeats:
        elements.insert_item(holder, slot, elements.count(holder, slot), json, extras)
    elif any(key in holder or "_" + key in holder for key, _ in slot.element.json_names):
        raise Unprocessable(
            f"{operation.path} already has {operation.name!r}, which does not repeat: "
            "use replace to change it",
            code="business-rule",
        )
    else:
        elements.set_single(holder, slot, json, extras)


def _insert(paths: Paths, operation: Operation, definitions: Definitions) -> None:
    target, slot = paths.select_list(operation.path)
    slot, json, extras = fit(definitions, _value(operation), [slot])
    holder = _members(target)
    size = elements.count(holder, slot)
    if operation.index > size:
        raise Unprocessable(
            f"index {operation.index} is out of range: {operation.path} has {size} item(s)",
            code="value",
        )
    elements.insert_item(holder, slot, operation.index, json, extras)


def _delete(paths: Paths, operation: Operation, definitions: Definitions) -> None:
    found = paths.select(operation.path)
    if not found:
        return
    node = _one(found, operation)
    if node.holder is None or node.slot is None:
        raise Unprocessable("delete cannot remove the resource itself", code="business-rule")
    elements.remove(node.holder, node.slot.key, node.index)
    _prune(node.parent)


def _replace(paths: Paths, operation: Operation, definitions: Definitions) -> None:
    node = _one(paths.select(operation.path), operation)
    if node.holder is None or node.slot is None:
        raise Unprocessable("replace cannot replace the resource itself", code="business-rule")
    slots = elements.slots_of(definitions, node.slot.element)
    slot, json, extras = fit(definitions, _value(operation), slots)
    if node.index is None:
        elements.set_single(node.holder, slot, json, extras)
    else:
        elements.set_item(node.holder, slot, node.index, json, extras)


def _move(paths: Paths, operation: Operation, definitions: Definitions) -> None:
    target, slot = paths.select_list(operation.path)
    holder = target.members
    size = elements.count(holder, slot) if holder is not None else 0
    for name, index in (("source", operation.source), ("destination", operation.destination)):
        if index >= size:
            raise Unprocessable(
                f"{name} {index} is out of range: {operation.path} has {size} item(s)",
                code="value",
            )
    if holder is not None:
        elements.move_item(holder, slot.key, operation.source, operation.destination)


_APPLY: dict[str, Callable[[Paths, Operation, Definitions], None]] = {
    "add": _add,
    "insert": _insert,
    "delete": _delete,
    "replace": _replace,
    "move": _move,
}


def _one(found: list[Node], operation: Operation) -> Node:
    """The spec's base rule: the path must select a single element."""
    if len(found) != 1:
        what = "no element" if not found else f"{len(found)} elements"
        raise Unprocessable(
            f"{operation.path} selects {what}; {operation.type} needs exactly one",
            code="not-found" if not found else "multiple-matches",
        )
    return found[0]


def _value(operation: Operation) -> PatchValue:
    if operation.value is None:  # read_operations requires it for add, insert and replace
        raise Unprocessable(f"{operation.type} needs a value", code="required")
    return operation.value


def _members(node: Node) -> Json:
    """The object ``node``'s children go into; a primitive's ``_name`` object is created."""
    members = node.members
    if members is not None:
        return members
    if node.holder is None or node.slot is None or not node.slot.primitive:
        raise Unprocessable("the path selects a value that cannot hold elements")
    members = {}
    if node.index is None:
        node.holder["_" + node.slot.key] = members
    else:
        elements.set_item(node.holder, node.slot, node.index, node.value, members)
    return members


def _prune(node: Node | None) -> None:
    """Remove the elements a deletion left empty, from ``node`` up (not the resource)."""
    while node is not None and node.holder is not None and node.slot is not None:
        members = node.members
        if members is None or members:
            return
        if node.slot.primitive and node.value is not None:  # keep the value, drop ``_name``
            elements.drop_extras(node.holder, node.slot.key, node.index)
            return
        elements.remove(node.holder, node.slot.key, node.index)
        node = node.parent


def _named(error: FhirError, where: str) -> FhirError:
    """``error`` located at the operation ``where`` (unless it names a place already)."""
    issue = error.issues[0]
    if issue.expression:
        return error
    return type(error)(f"{where}: {issue.diagnostics}", code=issue.code, expression=where)

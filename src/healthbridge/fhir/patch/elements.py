"""Elements as FHIRPath Patch edits them: definitions looked up by name, JSON changed in place.

https://hl7.org/fhir/R4/fhirpatch.html names elements the FHIRPath way (``deceased``,
``contact``); the JSON form (https://hl7.org/fhir/R4/json.html) spells a choice element with its
type (``deceasedBoolean``) and keeps a primitive's id and extensions in a ``_name`` sibling
(json.html#primitive), aligned by position with ``null`` fillers when the element repeats. A
:class:`Slot` is one such JSON property with its definition; the edit functions keep the value
and its ``_name`` sibling together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from healthbridge.fhir.definitions import Definitions, ElementDef

Json = dict[str, Any]

ANY_RESOURCE = "Resource"


@dataclass(frozen=True, slots=True)
class Slot:
    """One JSON property of a type: ``key`` (``valueQuantity``) of ``element``, carrying
    ``type_code``; ``type_path`` is where the definitions of its children are (``HumanName``,
    ``Patient.contact``, or the ``Questionnaire.item`` a contentReference points to)."""

    element: ElementDef
    key: str
    type_code: str
    type_path: str
    primitive: bool

    @property
    def repeats(self) -> bool:
        return self.element.is_array


def is_primitive(definitions: Definitions, code: str) -> bool:
    type_def = definitions.type_def(code)
    return type_def is not None and type_def.kind == "primitive-type"


def is_a(definitions: Definitions, code: str, ancestor: str) -> bool:
    """True when type ``code`` is ``ancestor`` or derives from it (``Age`` is a ``Quantity``)."""
    current: str | None = code
    while current is not None:
        if current == ancestor:
            return True
        type_def = definitions.type_def(current)
        current = type_def.base if type_def is not None else None
    return False


def element_named(definitions: Definitions, type_path: str, name: str) -> ElementDef | None:
    """The element ``name`` of ``type_path``: a FHIRPath name (``deceased``) or a JSON name of a
    choice (``deceasedBoolean``)."""
    children = definitions.children(type_path)
    found = children.get(name) or children.get(name + "[x]")
    if found is not None:
        return found
    for element in children.values():
        if element.is_choice and any(key == name for key, _ in element.json_names):
            return element
    return None


def slots_of(definitions: Definitions, element: ElementDef) -> list[Slot]:
    """Every JSON property of ``element`` (one per type of a choice)."""
    found: list[Slot] = []
    for key, type_ref in element.json_names:
        code = type_ref.code or "BackboneElement"
        if element.content_reference:
            type_path = element.content_reference
        elif definitions.children(element.path):
            type_path = element.path
        else:
            type_path = code
        found.append(Slot(element, key, code, type_path, is_primitive(definitions, code)))
    return found


def slots_named(definitions: Definitions, type_path: str, name: str) -> list[Slot]:
    """The JSON properties a path step ``name`` selects on ``type_path`` (empty: no such
    element); a choice's JSON name selects only its own type."""
    element = element_named(definitions, type_path, name)
    if element is None:
        return []
    slots = slots_of(definitions, element)
    exact = [slot for slot in slots if slot.key == name]
    return exact if element.is_choice and exact else slots


# -- reading --------------------------------------------------------------------------------
def values_at(holder: Json, slot: Slot) -> list[tuple[Any, Json | None, int | None]]:
    """``(value, _name object, list index)`` for each occurrence of ``slot`` in ``holder``."""
    value = holder.get(slot.key)
    extras = holder.get("_" + slot.key) if slot.primitive else None
    if not isinstance(value, list) and not isinstance(extras, list):
        if value is None and extras is None:
            return []
        return [(value, extras if isinstance(extras, dict) else None, None)]
    values = value if isinstance(value, list) else []
    more = extras if isinstance(extras, list) else []
    found: list[tuple[Any, Json | None, int | None]] = []
    for index in range(max(len(values), len(more))):
        item = values[index] if index < len(values) else None
        extra = more[index] if index < len(more) else None
        if item is not None or extra is not None:
            found.append((item, extra if isinstance(extra, dict) else None, index))
    return found


def count(holder: Json, slot: Slot) -> int:
    """The length of the list ``slot`` holds in ``holder`` (0 when absent)."""
    value, extras = holder.get(slot.key), holder.get("_" + slot.key)
    return max(
        len(value) if isinstance(value, list) else 0,
        len(extras) if isinstance(extras, list) else 0,
    )


# -- writing --------------------------------------------------------------------------------
def set_single(holder: Json, slot: Slot, value: Any, extras: Json | None) -> None:
    """Set a non-repeating element (dropping any other type of the same choice)."""
    for other in _siblings(holder, slot):
        holder.pop(other, None)
        holder.pop("_" + other, None)
    _put(holder, slot.key, value)
    _put(holder, "_" + slot.key, extras)


def set_item(holder: Json, slot: Slot, index: int, value: Any, extras: Json | None) -> None:
    """Replace item ``index`` of a repeating element."""
    _lists(holder, slot, extras)
    holder[slot.key][index] = value
    if ("_" + slot.key) in holder:
        holder["_" + slot.key][index] = extras
    _tidy(holder, slot.key)


def insert_item(holder: Json, slot: Slot, index: int, value: Any, extras: Json | None) -> None:
    """Insert an item at ``index`` (``count`` appends) into a repeating element."""
    _lists(holder, slot, extras)
    holder[slot.key].insert(index, value)
    if ("_" + slot.key) in holder:
        holder["_" + slot.key].insert(index, extras)
    _tidy(holder, slot.key)


def remove(holder: Json, key: str, index: int | None) -> None:
    """Remove the element ``key`` (item ``index`` of it when it repeats) and its ``_key``."""
    if index is None:
        holder.pop(key, None)
        holder.pop("_" + key, None)
        return
    for name in (key, "_" + key):
        items = holder.get(name)
        if isinstance(items, list) and index < len(items):
            del items[index]
    _tidy(holder, key)


def drop_extras(holder: Json, key: str, index: int | None) -> None:
    """Remove a primitive's ``_key`` object (its id and extensions), keeping the value."""
    if index is None:
        holder.pop("_" + key, None)
        return
    extras = holder.get("_" + key)
    if isinstance(extras, list) and index < len(extras):
        extras[index] = None
    _tidy(holder, key)


def move_item(holder: Json, key: str, source: int, destination: int) -> None:
    """Move item ``source`` of a repeating element to position ``destination``."""
    for name in (key, "_" + key):
        items = holder.get(name)
        if isinstance(items, list):
            items.extend([None] * (source + 1 - len(items)))
            items.insert(destination, items.pop(source))
    _tidy(holder, key)


def _siblings(holder: Json, slot: Slot) -> list[str]:
    if not slot.element.is_choice:
        return []
    return [key for key, _ in slot.element.json_names if key != slot.key and key in holder]


def _put(holder: Json, key: str, value: Any) -> None:
    if value is None:
        holder.pop(key, None)
    else:
        holder[key] = value


def _lists(holder: Json, slot: Slot, extras: Json | None) -> None:
    """Make ``holder[key]`` a list, and ``holder[_key]`` one of the same length when the new
    item (or an existing one) has an id or extensions."""
    size = count(holder, slot)
    holder[slot.key] = _padded(holder.get(slot.key), size)
    if extras is not None or isinstance(holder.get("_" + slot.key), list):
        holder["_" + slot.key] = _padded(holder.get("_" + slot.key), size)


def _padded(items: Any, size: int) -> list[Any]:
    found = items if isinstance(items, list) else []
    return found + [None] * (size - len(found))


def _tidy(holder: Json, key: str) -> None:
    """Drop an empty list, and a ``_key`` list with nothing but nulls (json.html#primitive)."""
    extras = holder.get("_" + key)
    if isinstance(extras, list) and all(item is None for item in extras):
        del holder["_" + key]
    values = holder.get(key)
    if isinstance(values, list) and all(v is None for v in values) and "_" + key not in holder:
        del holder[key]  # empty, or nothing but nulls that no ``_key`` explains

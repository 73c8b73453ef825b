"""The ``value`` of a FHIRPath Patch operation, and how it fits the element it goes into.

https://hl7.org/fhir/R4/fhirpatch.html: a value is any data type as ``value[x]``
(``valueDate``, ``valueCodeableConcept``; its id and extensions in ``_valueDate``), a resource
(``resource``, for ``contained``), or, for an element with no type of its own (a backbone
element such as ``Patient.contact``), nested ``part`` s, one per child element, each with a
value of its own. Reading checks the shape (a malformed value is InvalidRequest); fitting checks
that the type suits the element (Unprocessable otherwise) and picks a choice element's JSON name
(``deceased`` with a ``valueBoolean`` is ``deceasedBoolean``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from healthbridge.fhir.definitions import Definitions
from healthbridge.fhir.errors import InvalidRequest, Unprocessable
from healthbridge.fhir.patch.elements import (
    ANY_RESOURCE,
    Json,
    Slot,
    count,
    insert_item,
    is_a,
    set_single,
    slots_named,
)

_NUMBERS = frozenset({"integer", "decimal", "positiveInt", "unsignedInt"})
"""Primitive types whose JSON form is a number (json.html#primitive); boolean is a bool and the
rest are strings, so a primitive value may go into an element of another primitive type with
the same JSON form (a ``valueString`` into a ``code`` or an ``xhtml``); validation of the
result checks its lexical form."""


@dataclass(frozen=True, slots=True)
class PatchValue:
    """``type_code`` and JSON of a ``value[x]`` (``extras``: its ``_value[x]``) or a resource;
    for a part-based value ``type_code`` is None and ``parts`` holds (name, value) pairs."""

    where: str
    type_code: str | None
    json: Any = None
    extras: Json | None = None
    parts: tuple[tuple[str, PatchValue], ...] = ()


def read_value(part: Json, where: str, definitions: Definitions) -> PatchValue:
    """The value a ``value`` part (or a nested part) carries."""
    keys = {key.lstrip("_") for key in part if key.lstrip("_").startswith("value")}
    kinds = sorted(keys | ({"resource", "part"} & part.keys()))
    if len(kinds) != 1:
        raise InvalidRequest(
            f"{where} needs exactly one of value[x], resource or part (found {kinds or 'none'})",
            code="structure",
            expression=where,
        )
    if kinds[0] == "part":
        return PatchValue(where, None, parts=_read_parts(part["part"], where, definitions))
    if kinds[0] == "resource":
        resource = part["resource"]
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            raise InvalidRequest(
                f"{where}.resource must be a resource", code="structure", expression=where
            )
        return PatchValue(where, ANY_RESOURCE, resource)
    key = kinds[0]
    code = _type_code(definitions, key.removeprefix("value"))
    extras = part.get("_" + key)
    if code is None or not isinstance(extras, dict | None):
        raise InvalidRequest(
            f"{where}.{key} is not a FHIR data type value", code="structure", expression=where
        )
    return PatchValue(where, code, part.get(key), extras)


def _read_parts(
    parts: Any, where: str, definitions: Definitions
) -> tuple[tuple[str, PatchValue], ...]:
    if not isinstance(parts, list) or not parts:
        raise InvalidRequest(
            f"{where}.part must be a non-empty list of parts", code="structure", expression=where
        )
    found: list[tuple[str, PatchValue]] = []
    for index, part in enumerate(parts):
        inner = f"{where}.part[{index}]"
        if not isinstance(part, dict) or not isinstance(part.get("name"), str):
            raise InvalidRequest(
                f"{inner} needs a name (the element it sets)", code="required", expression=inner
            )
        found.append((part["name"], read_value(part, inner, definitions)))
    return tuple(found)


def _type_code(definitions: Definitions, suffix: str) -> str | None:
    """``Date`` -> ``date``, ``CodeableConcept`` -> ``CodeableConcept``; None if no type."""
    primitive = suffix[:1].lower() + suffix[1:]
    found = definitions.type_def(primitive)
    if found is not None and found.kind == "primitive-type":
        return primitive
    found = definitions.type_def(suffix)
    if found is not None and found.kind == "complex-type" and not found.abstract:
        return suffix
    return None


Fitted = tuple[Slot, Any, Json | None]
"""Where a value goes, its JSON, and (for a primitive) its ``_name`` object."""


def fit(definitions: Definitions, value: PatchValue, slots: list[Slot]) -> Fitted:
    """Fit ``value`` into one of ``slots`` (the JSON names of one element)."""
    if value.type_code is None:
        slot = _complex_slot(slots, value)
        return slot, build(definitions, slot.type_path, value.parts), None
    for slot in slots:
        if _suits(definitions, value.type_code, slot):
            return slot, value.json, value.extras
    if len(slots) == 1 and _same_json_form(definitions, value.type_code, slots[0]):
        return slots[0], value.json, value.extras
    allowed = ", ".join(slot.type_code for slot in slots)
    raise Unprocessable(
        f"{value.where}: a {value.type_code} value does not fit "
        f"{slots[0].element.path} ({allowed})",
        code="value",
        expression=value.where,
    )


def build(
    definitions: Definitions, type_path: str, parts: tuple[tuple[str, PatchValue], ...]
) -> Json:
    """The JSON object a part-based value describes (``type_path``: the element's type)."""
    built: Json = {}
    for name, value in parts:
        slots = slots_named(definitions, type_path, name)
        if not slots:
            raise Unprocessable(
                f"{value.where}: {type_path} has no element {name!r}", expression=value.where
            )
        slot, json, extras = fit(definitions, value, slots)
        if slot.repeats:
            insert_item(built, slot, count(built, slot), json, extras)
        elif any(key in built for key, _ in slot.element.json_names):
            raise Unprocessable(
                f"{value.where}: {name!r} does not repeat; it is given twice",
                expression=value.where,
            )
        else:
            set_single(built, slot, json, extras)
    return built


def _complex_slot(slots: list[Slot], value: PatchValue) -> Slot:
    if len(slots) != 1 or slots[0].primitive or slots[0].type_code == ANY_RESOURCE:
        raise Unprocessable(
            f"{value.where}: a part-based value fits only an element of a complex type, "
            f"not {slots[0].element.path}",
            code="value",
            expression=value.where,
        )
    return slots[0]


def _suits(definitions: Definitions, code: str, slot: Slot) -> bool:
    if ANY_RESOURCE in (code, slot.type_code):
        return code == slot.type_code
    if slot.primitive:
        return code == slot.type_code
    return is_a(definitions, code, slot.type_code)


def _same_json_form(definitions: Definitions, code: str, slot: Slot) -> bool:
    """A primitive into a primitive element of another type with the same JSON form."""
    primitive = definitions.type_def(code)
    if primitive is None or primitive.kind != "primitive-type" or not slot.primitive:
        return False
    return _json_form(code) == _json_form(slot.type_code)


def _json_form(code: str) -> str:
    return "number" if code in _NUMBERS else "boolean" if code == "boolean" else "string"

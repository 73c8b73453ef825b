"""A small FHIR XML -> FHIR JSON converter for tests: https://hl7.org/fhir/R4/xml.html to
https://hl7.org/fhir/R4/json.html.

Enough for the conformance cases that ship as XML (the FHIRPath Patch tests): primitives are
``<x value="..."/>`` (booleans and numbers typed by the element's type, decimals as Decimal); an
element repeats in JSON (an array) when the R4 definitions say its max is above 1; a primitive's
``id`` and ``extension`` go to its ``_x`` sibling; the narrative ``div`` is kept as an XHTML
string; a resource inside ``<contained>``, ``<resource>`` (Bundle.entry, Parameters.parameter)
is converted as a resource. Comments are dropped. Unknown elements raise ValueError.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from decimal import Decimal
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from healthbridge.fhir.definitions import Definitions
from healthbridge.fhir.patch.elements import Slot, count, insert_item, set_single, slots_named

FHIR_NS = "http://hl7.org/fhir"
XHTML_NS = "http://www.w3.org/1999/xhtml"
XML_NS = "http://www.w3.org/XML/1998/namespace"
_INTEGERS = frozenset({"integer", "positiveInt", "unsignedInt"})


def resource_from_xml(text: str | bytes, definitions: Definitions) -> dict[str, Any]:
    """The FHIR JSON of a resource in FHIR XML."""
    return resource_from_element(ET.fromstring(text), definitions)


def resource_from_element(element: ET.Element, definitions: Definitions) -> dict[str, Any]:
    """The FHIR JSON of a resource element (``<Patient xmlns="http://hl7.org/fhir">``)."""
    resource_type = _local(element.tag)
    if not definitions.is_resource_type(resource_type):
        raise ValueError(f"<{resource_type}> is not an R4 resource")
    resource: dict[str, Any] = {"resourceType": resource_type}
    _members(element, resource_type, resource, definitions)
    return resource


def _members(
    element: ET.Element, type_path: str, out: dict[str, Any], definitions: Definitions
) -> None:
    if "id" in element.attrib:
        out["id"] = element.attrib["id"]
    for child in element:
        name = _local(child.tag)
        slots = slots_named(definitions, type_path, name)
        if len(slots) != 1:
            raise ValueError(f"{type_path} has no element <{name}>")
        slot = slots[0]
        value, extras = _value(child, slot, definitions)
        if slot.repeats:
            insert_item(out, slot, count(out, slot), value, extras)
        else:
            set_single(out, slot, value, extras)


def _value(element: ET.Element, slot: Slot, definitions: Definitions) -> tuple[Any, Any]:
    """``(JSON value, _name object or None)`` of one element."""
    if slot.type_code == "xhtml":
        return xhtml(element), None
    if slot.primitive:
        extras: dict[str, Any] = {}
        _members(element, slot.type_code, extras, definitions)
        raw = element.attrib.get("value")
        return (None if raw is None else _primitive(raw, slot.type_code)), extras or None
    if slot.type_code == "Resource":
        inner = list(element)
        if len(inner) != 1:
            raise ValueError(f"<{_local(element.tag)}> must hold exactly one resource")
        return resource_from_element(inner[0], definitions), None
    value: dict[str, Any] = {}
    _members(element, slot.type_path, value, definitions)
    return value, None


def _primitive(raw: str, type_code: str) -> Any:
    if type_code == "boolean":
        if raw not in ("true", "false"):
            raise ValueError(f"{raw!r} is not a boolean")
        return raw == "true"
    if type_code in _INTEGERS:
        return int(raw)
    if type_code == "decimal":
        return Decimal(raw)
    return raw


def xhtml(element: ET.Element, *, root: bool = True) -> str:
    """An XHTML element as text, the root declaring the XHTML namespace (narrative.html)."""
    tag = _local(element.tag)
    attributes = [(_attribute(key), value) for key, value in element.attrib.items()]
    if root:
        attributes.insert(0, ("xmlns", XHTML_NS))
    start = tag + "".join(f" {key}={quoteattr(value)}" for key, value in attributes)
    body = escape(element.text or "") + "".join(
        xhtml(child, root=False) + escape(child.tail or "") for child in element
    )
    return f"<{start}>{body}</{tag}>" if body else f"<{start}/>"


def _attribute(key: str) -> str:
    if key.startswith("{" + XML_NS + "}"):
        return "xml:" + _local(key)
    return _local(key)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]

"""The values of one element in an instance: https://hl7.org/fhir/R4/json.html.

A profile element names a property (``code``) or a choice (``value[x]``, gathering
``valueQuantity``, ``valueString``, ...); its values are the array items or the single value,
with a primitive's ``_x`` sibling standing in where the value itself is absent
(https://hl7.org/fhir/R4/json.html#primitive). Each value carries its FHIR type and its FHIRPath
location (``Observation.value.ofType(Quantity)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from healthbridge.fhir.validation.elements import Node, choice_type
from healthbridge.fhir.validation.instance import Loc


@dataclass(frozen=True, slots=True)
class Item:
    value: Any
    type: str
    loc: Loc


def _segment(node: Node, type_code: str) -> str:
    return f"{node.name[:-3]}.ofType({type_code})" if node.name.endswith("[x]") else node.name


def _values(obj: dict[str, Any], key: str) -> list[tuple[Any, int]]:
    """The values of ``key`` with their array index (-1 when single), a primitive's ``_key``
    sibling standing in where the value itself is absent (json.html#primitive)."""
    value, sibling = obj.get(key), obj.get("_" + key)
    if isinstance(value, list) or isinstance(sibling, list):
        values = value if isinstance(value, list) else []
        siblings = sibling if isinstance(sibling, list) else []
        count = max(len(values), len(siblings))
        return [(values[i] if i < len(values) else None, i) for i in range(count)]
    return [(value, -1)] if key in obj or sibling is not None else []


def collect(obj: dict[str, Any], node: Node, loc: Loc) -> list[Item]:
    """The instance values of ``node`` in ``obj`` (a choice element gathers every type)."""
    name = node.name
    keys: list[tuple[str, str]] = []
    if name.endswith("[x]"):
        stem = name[:-3]
        for raw in obj:
            key = raw.removeprefix("_")
            if key.startswith(stem) and len(key) > len(stem) and key[len(stem)].isupper():
                pair = (key, choice_type(key[len(stem) :]))
                if pair not in keys:
                    keys.append(pair)
    elif name in obj or "_" + name in obj:
        keys.append((name, node.types[0].code if len(node.types) == 1 else ""))
    items: list[Item] = []
    for key, type_code in keys:
        segment = _segment(node, type_code)
        for each, index in _values(obj, key):
            actual = type_code
            if isinstance(each, dict) and isinstance(each.get("resourceType"), str):
                actual = each["resourceType"]
            items.append(Item(each, actual, (loc, segment, index)))
    return items

"""Load the generated R4 definitions from the package data (``definitions/data``).

The data is produced by ``scripts/generate_definitions.py`` from the official R4 4.0.1 packages
(https://hl7.org/fhir/R4/downloads.html) and read with :mod:`importlib.resources`; nothing
outside the installed package is read at run time.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Any, cast

from healthbridge.fhir.definitions.model import (
    Binding,
    BindingStrength,
    ElementDef,
    SearchComponent,
    SearchParameter,
    TypeDef,
    TypeKind,
    TypeRef,
    ValueSetCodes,
)
from healthbridge.fhir.definitions.registry import Definitions

_DATA_PACKAGE = "healthbridge.fhir.definitions.data"


def read_data(name: str) -> Any:
    """The decoded JSON of one generated data file."""
    raw = resources.files(_DATA_PACKAGE).joinpath(name).read_bytes()
    return json.loads(gzip.decompress(raw))


@cache
def load_definitions() -> Definitions:
    """The R4 definitions, built once per process and shared (the object is immutable)."""
    structures = read_data("structures.json.gz")
    value_sets = read_data("valuesets.json.gz")
    search = read_data("search.json.gz")
    return build_definitions(structures, value_sets, search)


def build_definitions(structures: Any, value_sets: Any, search: Any) -> Definitions:
    types = {name: _type_def(name, raw) for name, raw in structures["types"].items()}
    elements = {e.path: e for t in types.values() for e in t.elements.values()}
    resource_types = frozenset(
        name for name, t in types.items() if t.kind == "resource" and not t.abstract
    )
    params = tuple(_search_parameter(raw) for raw in search["searchParameters"])
    return Definitions(
        fhir_version=structures["fhirVersion"],
        types=MappingProxyType(types),
        value_sets=MappingProxyType(
            {url: _value_set(url, raw) for url, raw in value_sets["valueSets"].items()}
        ),
        unexpanded_value_sets=MappingProxyType(dict(value_sets["unexpanded"])),
        compartments=_frozen_compartments(search["compartments"]),
        resource_types=resource_types,
        _elements=MappingProxyType(elements),
        _children=_children_index(types),
        _search=_search_index(params, types),
        _search_by_url=MappingProxyType({p.url: p for p in params}),
    )


def _type_ref(entry: str) -> TypeRef:
    code, _, targets = entry.partition("(")
    return TypeRef(code, tuple(targets.rstrip(")").split("|")) if targets else ())


def _element(raw: Mapping[str, Any]) -> ElementDef:
    binding = raw.get("binding")
    return ElementDef(
        path=raw["path"],
        min=int(raw["min"]),
        max=None if raw["max"] == "*" else int(raw["max"]),
        types=tuple(_type_ref(t) for t in raw.get("types", ())),
        content_reference=raw.get("contentReference"),
        binding=Binding(cast(BindingStrength, binding[0]), binding[1]) if binding else None,
        is_summary=bool(raw.get("summary")),
        is_modifier=bool(raw.get("modifier")),
    )


def _type_def(name: str, raw: Mapping[str, Any]) -> TypeDef:
    elements = (_element(e) for e in raw["elements"])
    return TypeDef(
        name=name,
        kind=cast(TypeKind, raw["kind"]),
        abstract=bool(raw["abstract"]),
        base=raw.get("base"),
        elements=MappingProxyType({e.path: e for e in elements}),
        regex=raw.get("regex"),
    )


def _children_index(types: Mapping[str, TypeDef]) -> Mapping[str, Mapping[str, ElementDef]]:
    index: dict[str, dict[str, ElementDef]] = {}
    for type_def in types.values():
        for element in type_def.elements.values():
            parent = element.path.rsplit(".", 1)[0]
            index.setdefault(parent, {})[element.name] = element
    return MappingProxyType({k: MappingProxyType(v) for k, v in index.items()})


def _search_parameter(raw: Mapping[str, Any]) -> SearchParameter:
    return SearchParameter(
        url=raw["url"],
        code=raw["code"],
        type=raw["type"],
        base=tuple(raw["base"]),
        expression=raw.get("expression"),
        target=tuple(raw.get("target", ())),
        modifier=tuple(raw.get("modifier", ())),
        comparator=tuple(raw.get("comparator", ())),
        chain=tuple(raw.get("chain", ())),
        multiple_or=raw.get("multipleOr"),
        multiple_and=raw.get("multipleAnd"),
        component=tuple(
            SearchComponent(c["definition"], c["expression"]) for c in raw.get("component", ())
        ),
    )


def _ancestors(name: str, types: Mapping[str, TypeDef]) -> Iterable[str]:
    current: str | None = name
    while current is not None and current in types:
        yield current
        current = types[current].base


def _search_index(
    params: Iterable[SearchParameter], types: Mapping[str, TypeDef]
) -> Mapping[str, Mapping[str, SearchParameter]]:
    by_base: dict[str, dict[str, SearchParameter]] = {}
    for param in params:
        for base in param.base:
            by_base.setdefault(base, {})[param.code] = param
    index: dict[str, Mapping[str, SearchParameter]] = {}
    for name, type_def in types.items():
        if type_def.kind != "resource":
            continue
        merged: dict[str, SearchParameter] = {}
        for ancestor in reversed(list(_ancestors(name, types))):
            merged.update(by_base.get(ancestor, {}))
        index[name] = MappingProxyType(merged)
    return MappingProxyType(index)


def _value_set(url: str, by_system: Mapping[str, list[str]]) -> ValueSetCodes:
    pairs = frozenset((system, code) for system, codes in by_system.items() for code in codes)
    return ValueSetCodes(url, pairs, frozenset(code for _, code in pairs))


def _frozen_compartments(
    raw: Mapping[str, Mapping[str, list[str]]],
) -> Mapping[str, Mapping[str, tuple[str, ...]]]:
    return MappingProxyType(
        {
            compartment: MappingProxyType({rt: tuple(ps) for rt, ps in members.items()})
            for compartment, members in raw.items()
        }
    )

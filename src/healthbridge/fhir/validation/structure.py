"""StructureDefinitions compiled for validation: https://hl7.org/fhir/R4/structuredefinition.html.

Each type, backbone element and contentReference target becomes one :class:`Struct`: a dict
from JSON property name to :class:`Field`, built once per validator and shared by every call.
JSON names follow https://hl7.org/fhir/R4/json.html: choice elements expand to one name per type
(``value[x]`` -> ``valueQuantity``, ``valueString``, ...) and every primitive element ``x`` gets
its ``_x`` sibling for the id and extensions of the primitive (json.html#primitive).
"""

from __future__ import annotations

from typing import Final

from healthbridge.fhir.definitions import Definitions, ElementDef, TypeRef
from healthbridge.fhir.validation.bindings import BindingCheck, binding_check
from healthbridge.fhir.validation.primitives import PrimitiveCheck

PRIMITIVE: Final = 0
COMPLEX: Final = 1
RESOURCE: Final = 2
PRIMITIVE_EXT: Final = 3  # the ``_x`` sibling of a primitive


def _no_check(value: object) -> str | None:
    return None


class Struct:
    """The compiled children of one type or backbone element (``path`` like ``Patient.contact``).

    ``required`` lists (element name, JSON keys any of which satisfies min >= 1);
    ``id_only_rule`` says whether ele-1's "children other than id" applies (not to resources, and
    not to the ``_x`` object of a primitive, whose value lives beside it).
    """

    __slots__ = (
        "fields",
        "has_choices",
        "id_only_rule",
        "is_extension",
        "is_resource",
        "path",
        "required",
    )

    def __init__(self, path: str, kind: str | None) -> None:
        self.path = path
        self.is_resource = kind == "resource"
        self.id_only_rule = kind not in ("resource", "primitive-type")
        self.is_extension = path == "Extension"
        self.fields: dict[str, Field] = {}
        self.required: tuple[tuple[str, tuple[str, ...]], ...] = ()
        self.has_choices = False


class Field:
    """One JSON property of a :class:`Struct`.

    ``segment`` is the FHIRPath step for the location (``name`` or ``value.ofType(Quantity)``);
    ``choice`` the stem of a choice element (``value``) and ``type_code`` the type carried.
    """

    __slots__ = (
        "array",
        "binding",
        "check",
        "choice",
        "contained",
        "element",
        "key",
        "kind",
        "max",
        "partner",
        "segment",
        "struct",
        "type_code",
    )

    def __init__(self, key: str, element: ElementDef, type_code: str, kind: int) -> None:
        self.key = key
        self.element = element.name
        self.array = element.is_array
        self.max = element.max
        self.kind = kind
        self.type_code = type_code
        self.choice: str | None = element.name[:-3] if element.is_choice else None
        self.segment = f"{self.choice}.ofType({type_code})" if self.choice else element.name
        self.check: PrimitiveCheck = _no_check  # set for primitive fields
        self.binding: BindingCheck | None = None
        self.struct: Struct | None = None
        self.partner = key[1:] if kind == PRIMITIVE_EXT else "_" + key
        self.contained = element.name == "contained"


class Compiler:
    """Builds the :class:`Struct` of every resource type, and everything reachable from them,
    up front (~0.1 s): afterwards nothing is mutated, so validators are safe to share across
    threads."""

    def __init__(self, definitions: Definitions, checks: dict[str, PrimitiveCheck]) -> None:
        self._defs = definitions
        self._checks = checks
        self._structs: dict[str, Struct] = {}
        for resource_type in sorted(definitions.resource_types):
            self.struct(resource_type)

    def struct(self, path: str) -> Struct:
        """The compiled struct for a type name or element path (built once, then cached)."""
        struct = self._structs.get(path)
        if struct is None:
            type_def = self._defs.type_def(path)
            struct = Struct(path, type_def.kind if type_def is not None else None)
            self._structs[path] = struct  # before filling: types refer to themselves
            self._fill(struct)
        return struct

    def _fill(self, struct: Struct) -> None:
        required: list[tuple[str, tuple[str, ...]]] = []
        for element in self._defs.children(struct.path).values():
            keys: list[str] = []
            for key, type_ref in element.json_names:
                for field in self._fields(element, key, type_ref):
                    struct.fields[field.key] = field
                    keys.append(field.key)
            if element.min >= 1:
                required.append((element.name, tuple(keys)))
            struct.has_choices = struct.has_choices or element.is_choice
        struct.required = tuple(required)

    def _fields(self, element: ElementDef, key: str, type_ref: TypeRef) -> list[Field]:
        code = type_ref.code
        if element.content_reference:
            field = Field(key, element, element.content_reference, COMPLEX)
            field.struct = self.struct(element.content_reference)
            return [field]
        if code in self._checks:
            return self._primitive_fields(element, key, code)
        if code == "Resource":
            return [Field(key, element, code, RESOURCE)]
        field = Field(key, element, code, COMPLEX)
        own_children = bool(self._defs.children(element.path))
        field.struct = self.struct(element.path if own_children else code)
        field.binding = self._binding(element, code)
        return [field]

    def _primitive_fields(self, element: ElementDef, key: str, code: str) -> list[Field]:
        field = Field(key, element, code, PRIMITIVE)
        field.check = self._checks[code]
        field.binding = self._binding(element, code)
        if code == "xhtml":  # xhtml has no extensions in JSON (narrative.html)
            return [field]
        sibling = Field("_" + key, element, code, PRIMITIVE_EXT)
        sibling.struct = self.struct(code)
        return [field, sibling]

    def _binding(self, element: ElementDef, code: str) -> BindingCheck | None:
        binding = element.binding
        if binding is None or binding.strength != "required":
            return None
        return binding_check(code, self._defs.value_set(binding.value_set))

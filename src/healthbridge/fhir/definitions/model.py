"""The shapes of the generated R4 definitions.

Element definitions follow https://hl7.org/fhir/R4/elementdefinition.html, search parameters
https://hl7.org/fhir/R4/searchparameter.html, value set expansions
https://hl7.org/fhir/R4/valueset.html#expansion. All are frozen; they are built once by
:func:`healthbridge.fhir.definitions.load_definitions`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

TypeKind = Literal["primitive-type", "complex-type", "resource"]
BindingStrength = Literal["required", "extensible", "preferred"]


@dataclass(frozen=True, slots=True)
class TypeRef:
    """One allowed type of an element; ``targets`` are the type names a Reference/canonical
    may point to (empty means any)."""

    code: str
    targets: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Binding:
    strength: BindingStrength
    value_set: str


@dataclass(frozen=True, slots=True)
class ElementDef:
    """One element of a snapshot: ``path`` like ``Observation.value[x]``."""

    path: str
    min: int
    max: int | None  # None means "*"
    types: tuple[TypeRef, ...]
    content_reference: str | None = None
    binding: Binding | None = None
    is_summary: bool = False
    is_modifier: bool = False

    @property
    def name(self) -> str:
        """The last path segment, e.g. ``value[x]``."""
        return self.path.rsplit(".", 1)[-1]

    @property
    def is_choice(self) -> bool:
        return self.path.endswith("[x]")

    @property
    def is_array(self) -> bool:
        """True when the JSON form is an array (max is ``*`` or above 1)."""
        return self.max is None or self.max > 1

    @property
    def json_names(self) -> tuple[tuple[str, TypeRef], ...]:
        """The JSON property names of this element with the type each one carries.

        A choice element expands per https://hl7.org/fhir/R4/formats.html#choice:
        ``value[x]`` with types Quantity, string gives ``valueQuantity`` and ``valueString``.
        A contentReference element has no type of its own and yields ``(name, TypeRef(""))``.
        """
        if not self.is_choice:
            return ((self.name, self.types[0] if self.types else TypeRef("")),)
        stem = self.name[:-3]
        return tuple((stem + t.code[0].upper() + t.code[1:], t) for t in self.types)


@dataclass(frozen=True, slots=True)
class TypeDef:
    """A primitive type, complex datatype or resource with its elements keyed by path."""

    name: str
    kind: TypeKind
    abstract: bool
    base: str | None
    elements: Mapping[str, ElementDef]
    regex: str | None = None  # primitive types only: the spec's regex for the value


@dataclass(frozen=True, slots=True)
class SearchComponent:
    definition: str  # canonical URL of the component's SearchParameter
    expression: str


@dataclass(frozen=True, slots=True)
class SearchParameter:
    url: str
    code: str
    type: str  # number | date | string | token | reference | composite | quantity | uri | special
    base: tuple[str, ...]
    expression: str | None = None
    target: tuple[str, ...] = ()
    modifier: tuple[str, ...] = ()
    comparator: tuple[str, ...] = ()
    chain: tuple[str, ...] = ()
    multiple_or: bool | None = None
    multiple_and: bool | None = None
    component: tuple[SearchComponent, ...] = ()


@dataclass(frozen=True, slots=True)
class ValueSetCodes:
    """The expansion of a value set as system|code pairs, plus the bare codes for ``code``
    elements (whose system is implied by the binding)."""

    url: str
    pairs: frozenset[tuple[str, str]]
    codes: frozenset[str]

    def __contains__(self, item: object) -> bool:
        return item in self.pairs

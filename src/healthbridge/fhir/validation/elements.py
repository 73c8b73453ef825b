"""A profile's snapshot compiled into a tree of element rules: https://hl7.org/fhir/R4/profiling.html.

``StructureDefinition.snapshot.element`` (https://hl7.org/fhir/R4/elementdefinition.html) is a flat
list ordered by path; element ids (https://hl7.org/fhir/R4/elementdefinition.html#id) name the
slice each element belongs to (``Composition.section:sectionProblems.code``). The tree built here
has one :class:`Node` per element: its children by element name and, when the element is sliced,
its slicing rules and slices in snapshot order. It is built once per profile and only read after.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from healthbridge.fhir.definitions import Definitions
from healthbridge.fhir.validation.element_limits import Limits, limits_of
from healthbridge.fhir.validation.fhirpath_invariants import Constraint, compile_constraints
from healthbridge.fhir.validation.patterns import fixed_or_pattern
from healthbridge.fhir.validation.profile_bindings import max_value_set

_FHIRPATH_TYPES: Final = "http://hl7.org/fhirpath/System."
_FHIR_TYPE_EXT: Final = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"


@dataclass(frozen=True, slots=True)
class TypeRule:
    """One ``ElementDefinition.type``: the type code and its profiles and target profiles."""

    code: str
    profiles: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Slicing:
    """``ElementDefinition.slicing`` (https://hl7.org/fhir/R4/profiling.html#slicing)."""

    discriminators: tuple[tuple[str, str], ...]  # (type, path)
    rules: str  # closed | open | openAtEnd
    ordered: bool


@dataclass(slots=True)
class Node:
    """The rules of one element of a profile (``path`` like ``Composition.section``)."""

    id: str
    path: str
    slice_name: str | None
    min: int
    max: int | None  # None means "*"
    inherited_cardinality: bool  # same min/max as the base element: the base validator checks it
    base_path: str
    types: tuple[TypeRule, ...] = ()
    fixed: tuple[str, object] | None = None
    pattern: tuple[str, object] | None = None
    binding: tuple[str, str] | None = None  # (strength, value set url)
    inherited_binding: bool = False  # the base validator already checks this required binding
    max_value_set: str | None = None  # the binding's maxValueSet extension
    limits: Limits | None = None  # minValue[x], maxValue[x], maxLength
    constraints: tuple[Constraint, ...] = ()
    must_support: bool = False
    children: dict[str, Node] = field(default_factory=dict)
    slicing: Slicing | None = None
    slices: list[Node] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The last path segment, e.g. ``value[x]``."""
        return self.path.rsplit(".", 1)[-1]

    @property
    def label(self) -> str:
        """The element id without the type prefix, for messages (``section:sectionProblems``)."""
        return self.id

    def child(self, name: str, fallback: Node | None = None) -> Node | None:
        """The child element ``name``; a slice without its own copy uses the sliced element's."""
        found = self.children.get(name)
        if found is None and fallback is not None:
            return fallback.children.get(name)
        return found

    def type_codes(self) -> frozenset[str]:
        return frozenset(t.code for t in self.types)


@dataclass(frozen=True, slots=True)
class Profile:
    """One compiled StructureDefinition: ``type`` is the constrained type (``Composition``)."""

    url: str
    version: str | None
    name: str
    type: str
    root: Node

    @property
    def title(self) -> str:
        return self.url if self.version is None else f"{self.url}|{self.version}"


def _type_code(raw: dict[str, Any]) -> str:
    code = str(raw.get("code", ""))
    if not code.startswith(_FHIRPATH_TYPES):
        return code
    for ext in raw.get("extension", ()):
        if isinstance(ext, dict) and ext.get("url") == _FHIR_TYPE_EXT:
            return str(ext.get("valueUrl") or ext.get("valueUri") or "string")
    return "string"


def _types(raw: object) -> tuple[TypeRule, ...]:
    if not isinstance(raw, list):
        return ()
    return tuple(
        TypeRule(
            _type_code(t),
            tuple(str(p) for p in t.get("profile", ())),
            tuple(str(p) for p in t.get("targetProfile", ())),
        )
        for t in raw
        if isinstance(t, dict)
    )


def _slicing(raw: object) -> Slicing | None:
    if not isinstance(raw, dict):
        return None
    discriminators = tuple(
        (str(d.get("type")), str(d.get("path")))
        for d in raw.get("discriminator", ())
        if isinstance(d, dict)
    )
    return Slicing(discriminators, str(raw.get("rules", "open")), bool(raw.get("ordered", False)))


def _cardinality(element: dict[str, Any]) -> tuple[int, int | None, bool]:
    minimum = int(element.get("min", 0))
    raw_max = str(element.get("max", "*"))
    maximum = None if raw_max == "*" else int(raw_max)
    base = element.get("base")
    same = (
        isinstance(base, dict)
        and int(base.get("min", -1)) == minimum
        and str(base.get("max", "")) == raw_max
    )
    return minimum, maximum, same


def _binding(
    element: dict[str, Any], base_path: str, definitions: Definitions
) -> tuple[tuple[str, str] | None, bool]:
    raw = element.get("binding")
    if not isinstance(raw, dict) or not isinstance(raw.get("valueSet"), str):
        return None, False
    strength, value_set = str(raw.get("strength")), str(raw["valueSet"])
    base = definitions.element(base_path)
    inherited = (
        base is not None
        and base.binding is not None
        and base.binding.strength == strength == "required"
        and base.binding.value_set.split("|")[0] == value_set.split("|", maxsplit=1)[0]
    )
    return (strength, value_set), inherited


def make_node(element: dict[str, Any], definitions: Definitions) -> Node:
    """The rules of one snapshot element."""
    path = str(element["path"])
    base = element.get("base")
    base_path = str(base.get("path", path)) if isinstance(base, dict) else path
    minimum, maximum, same = _cardinality(element)
    fixed, pattern = fixed_or_pattern(element)
    binding, inherited = _binding(element, base_path, definitions)
    slice_name = element.get("sliceName")
    return Node(
        id=str(element.get("id") or path),
        path=path,
        slice_name=str(slice_name) if slice_name else None,
        min=minimum,
        max=maximum,
        inherited_cardinality=same,
        base_path=base_path,
        types=_types(element.get("type")),
        fixed=fixed,
        pattern=pattern,
        binding=binding,
        inherited_binding=inherited,
        max_value_set=max_value_set(element.get("binding")),
        limits=limits_of(element),
        constraints=compile_constraints(element.get("constraint")),
        must_support=bool(element.get("mustSupport")),
        slicing=_slicing(element.get("slicing")),
    )


def _parent_id(node_id: str) -> tuple[str, bool]:
    """``(id of the owner, is_slice)``: a slice belongs to the element it slices (or, when
    re-sliced ``a:b/c``, to slice ``a:b``); any other element to the element above it."""
    head, _, last = node_id.rpartition(".")
    name, colon, slice_name = last.partition(":")
    if colon:
        owner = f"{name}:{slice_name.rpartition('/')[0]}" if "/" in slice_name else name
        return (f"{head}.{owner}" if head else owner), True
    return head, False


def build_tree(elements: list[dict[str, Any]], definitions: Definitions) -> Node:
    """The root :class:`Node` of a snapshot; elements whose owner is missing are ignored."""
    by_id: dict[str, Node] = {}
    root: Node | None = None
    for element in elements:
        if not isinstance(element, dict) or "path" not in element:
            continue
        node = make_node(element, definitions)
        by_id[node.id] = node
        if root is None:
            root = node
            continue
        owner_id, is_slice = _parent_id(node.id)
        owner = by_id.get(owner_id)
        if owner is None:
            continue
        if is_slice:
            owner.slices.append(node)
        else:
            owner.children[node.name] = node
    if root is None:
        raise ValueError("the snapshot has no elements")
    return root


PRIMITIVES: Final = frozenset(
    [
        "base64Binary",
        "boolean",
        "canonical",
        "code",
        "date",
        "dateTime",
        "decimal",
        "id",
        "instant",
        "integer",
        "markdown",
        "oid",
        "positiveInt",
        "string",
        "time",
        "unsignedInt",
        "uri",
        "url",
        "uuid",
        "xhtml",
    ]
)


def choice_type(suffix: str) -> str:
    """The type code of a choice element's JSON suffix: ``Quantity`` -> ``Quantity``,
    ``DateTime`` -> ``dateTime`` (formats.html#choice)."""
    lowered = suffix[:1].lower() + suffix[1:]
    return lowered if lowered in PRIMITIVES else suffix


ANY_RESOURCE: Final = Profile(
    url="http://hl7.org/fhir/StructureDefinition/Resource",
    version=None,
    name="Resource",
    type="Resource",
    root=Node("Resource", "Resource", None, 0, None, True, "Resource"),
)
"""A profile with no rules: the context of checks that belong to no profile (extensions)."""

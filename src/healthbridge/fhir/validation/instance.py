"""One walk over a resource instance against the compiled structures.

Implements the JSON representation rules of https://hl7.org/fhir/R4/json.html (arrays for
repeating elements, ``_x`` primitive siblings aligned with ``null``, no ``null``, ``{}`` or
``[]``, ``resourceType`` on every resource, one type per choice element) and cardinality from the
StructureDefinitions (https://hl7.org/fhir/R4/conformance-rules.html#cardinality). Locations are
FHIRPath expressions such as ``Patient.name[0].given[1]``, built only when an issue is reported.
"""

from __future__ import annotations

import difflib
from typing import Any, Final

from healthbridge.fhir.definitions import Definitions
from healthbridge.fhir.errors import Issue, Severity
from healthbridge.fhir.validation import invariants
from healthbridge.fhir.validation.invariants import Violation
from healthbridge.fhir.validation.structure import (
    COMPLEX,
    PRIMITIVE,
    PRIMITIVE_EXT,
    Compiler,
    Field,
    Struct,
)

#: A location: (parent location, FHIRPath step, index or -1). Rendered only on error.
Loc = tuple[Any, str, int]

_ROOT: Final[Loc] = (None, "resourceType", -1)


def render(loc: Loc | None) -> str:
    """``(( (None,'Patient',-1), 'name', 0), 'given', 1)`` -> ``Patient.name[0].given[1]``."""
    steps: list[str] = []
    while loc is not None:
        parent, step, index = loc
        steps.append(step if index < 0 else f"{step}[{index}]")
        loc = parent
    return ".".join(reversed(steps))


def json_kind(value: object) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), "a number"
    )


class NestingTooDeep(Exception):
    """Raised (once, ending the walk) when objects nest deeper than the validator allows."""

    def __init__(self, expression: str) -> None:
        super().__init__(expression)
        self.expression = expression


def _aligned(partner: object, index: int) -> bool:
    """True when ``partner`` (the other array of a primitive pair) has a value at ``index``."""
    return type(partner) is list and index < len(partner) and partner[index] is not None


class InstanceWalk:
    """Collects the issues of one ``validate`` call."""

    __slots__ = ("compiler", "definitions", "issues", "max_depth")

    def __init__(self, definitions: Definitions, compiler: Compiler, max_depth: int) -> None:
        self.definitions = definitions
        self.compiler = compiler
        self.max_depth = max_depth
        self.issues: list[Issue] = []

    def report(self, code: str, message: str, loc: Loc, severity: Severity = "error") -> None:
        self.issues.append(Issue(severity, code, message, (render(loc),)))

    def violation(self, found: Violation, loc: Loc) -> None:
        for step, index in found.steps:
            loc = (loc, step, index)
        self.report("invariant", f"{found.key}: {found.message}", loc, found.severity)

    # -- resources ---------------------------------------------------------------------------

    def resource(
        self, value: object, loc: Loc | None, depth: int, expected: str | None, contained: bool
    ) -> None:
        if type(value) is not dict:
            message = f"expected a resource (a JSON object), got {json_kind(value)}"
            self.report("structure", message, loc or _ROOT)
            return
        resource_type = value.get("resourceType")
        problem = self._type_problem(resource_type, expected)
        if problem is not None:
            code = "structure" if resource_type is None else "invalid"
            self.report(code, problem, loc or _ROOT)
            return
        assert isinstance(resource_type, str)
        here: Loc = loc if loc is not None else (None, resource_type, -1)
        self.obj(value, self.compiler.struct(resource_type), here, depth)
        if contained:
            for found in invariants.contained_violations(value):
                self.violation(found, here)
        if "contained" in value:
            for found in invariants.unreferenced_contained(value):
                self.violation(found, here)

    def _type_problem(self, resource_type: object, expected: str | None) -> str | None:
        if resource_type is None:
            return "the resource has no resourceType"
        if type(resource_type) is not str or not self.definitions.is_resource_type(resource_type):
            type_def = self.definitions.type_def(str(resource_type))
            if type_def is not None and type_def.kind == "resource":
                return f"{resource_type} is an abstract type; send a concrete resource type"
            return f"resourceType {resource_type!r} is not an R4 resource type"
        if expected is not None and resource_type != expected:
            return f"expected resourceType {expected!r}, got {resource_type!r}"
        return None

    # -- objects -----------------------------------------------------------------------------

    def obj(self, obj: dict[str, Any], struct: Struct, loc: Loc, depth: int) -> None:
        if depth > self.max_depth:
            raise NestingTooDeep(render(loc))
        if not obj:
            self.report("structure", "empty object: {} SHALL NOT appear (omit it)", loc)
            return
        fields = struct.fields
        chosen: dict[str, str] | None = {} if struct.has_choices else None
        for key, value in obj.items():
            field = fields.get(key)
            if field is None:
                if key != "resourceType" or not struct.is_resource:
                    self.report("structure", self.unknown_message(key, struct), (loc, key, -1))
                continue
            if chosen is not None and field.choice is not None:
                self.choose(chosen, field, loc)
            kind = field.kind
            if field.array:
                self.array(obj, field, value, loc, depth)
            elif kind == PRIMITIVE and value is not None and type(value) is not list:
                self.primitive(field, value, (loc, field.segment, -1))
            elif kind == COMPLEX and type(value) is dict:
                self.complex(field, value, (loc, field.segment, -1), depth)
            else:
                self.single(field, value, loc, depth)
        if struct.required:
            self.required(obj, struct, loc)
        if struct.is_extension or (len(obj) == 1 and "id" in obj and struct.id_only_rule):
            self.object_invariants(obj, struct, chosen, loc)

    def object_invariants(
        self, obj: dict[str, Any], struct: Struct, chosen: dict[str, str] | None, loc: Loc
    ) -> None:
        if struct.is_extension:
            found = invariants.extension_violation(obj, bool(chosen))
        else:
            found = invariants.id_only_violation(obj)
        if found is not None:
            self.violation(found, loc)

    def choose(self, chosen: dict[str, str], field: Field, loc: Loc) -> None:
        stem = field.choice
        assert stem is not None
        previous = chosen.setdefault(stem, field.type_code)
        if previous != field.type_code:
            message = (
                f"only one type may be given for {stem}[x]; found both "
                f"{stem}{previous[0].upper()}{previous[1:]} and {field.key.lstrip('_')}"
            )
            self.report("structure", message, (loc, stem, -1))

    def required(self, obj: dict[str, Any], struct: Struct, loc: Loc) -> None:
        for name, keys in struct.required:
            for key in keys:
                if key in obj:
                    break
            else:
                self.missing(name, keys, struct, loc)

    def missing(self, name: str, keys: tuple[str, ...], struct: Struct, loc: Loc) -> None:
        stem = name.removesuffix("[x]")
        hint = f" (one of {', '.join(k for k in keys if k[0] != '_')})" if name != stem else ""
        message = f"{struct.path}.{name} is required (min 1) but missing{hint}"
        self.report("required", message, (loc, stem, -1))

    # -- values ------------------------------------------------------------------------------

    def single(self, field: Field, value: object, loc: Loc, depth: int) -> None:
        if type(value) is list:
            message = f"{field.element} has max cardinality 1: expected one value, not an array"
            self.report("structure", message, (loc, field.segment, -1))
            return
        here: Loc = (loc, field.segment, -1)
        if value is None:
            self.report("structure", "null is not allowed here (omit the element)", here)
        elif field.kind == PRIMITIVE:
            self.primitive(field, value, here)
        elif field.kind in (COMPLEX, PRIMITIVE_EXT):
            self.complex(field, value, here, depth)
        else:
            self.resource(value, here, depth + 1, None, field.contained)

    def array(self, obj: dict[str, Any], field: Field, value: object, loc: Loc, depth: int) -> None:
        segment = field.segment
        if type(value) is not list:
            message = f"{field.element} repeats (max *): expected an array, got {json_kind(value)}"
            self.report("structure", message, (loc, segment, -1))
            return
        if not value:
            self.report(
                "structure", "empty array: [] SHALL NOT appear (omit it)", (loc, segment, -1)
            )
            return
        if field.max is not None and len(value) > field.max:
            message = f"{field.element} allows at most {field.max} items, got {len(value)}"
            self.report("structure", message, (loc, segment, -1))
        kind = field.kind
        if kind in (PRIMITIVE, PRIMITIVE_EXT):
            self.primitive_items(obj, field, value, loc, depth)
        elif kind == COMPLEX:
            for index, item in enumerate(value):
                self.complex(field, item, (loc, segment, index), depth)
        else:
            for index, item in enumerate(value):
                self.resource(item, (loc, segment, index), depth + 1, None, field.contained)

    def primitive_items(
        self, obj: dict[str, Any], field: Field, items: list[Any], loc: Loc, depth: int
    ) -> None:
        """A primitive array or its ``_x`` sibling: nulls only where the other array has a value
        (json.html#primitive), and both arrays of the same length."""
        partner = obj.get(field.partner)
        if field.kind == PRIMITIVE_EXT and type(partner) is list and len(partner) != len(items):
            message = f"{field.key} has {len(items)} items but {field.partner} has {len(partner)}"
            self.report("structure", message + ": the arrays must align", (loc, field.segment, -1))
        for index, item in enumerate(items):
            here: Loc = (loc, field.segment, index)
            if item is None:
                if not _aligned(partner, index):
                    message = "null is only allowed where the matching _ array has a value"
                    self.report("structure", message, here)
            elif field.kind == PRIMITIVE:
                self.primitive(field, item, here)
            else:
                self.complex(field, item, here, depth)

    def primitive(self, field: Field, value: object, here: Loc) -> None:
        message = field.check(value)
        if message is not None:
            code = "invariant" if message.startswith("txt-") else "value"
            self.report(code, message, here)
        elif field.binding is not None:
            message = field.binding(value)
            if message is not None:
                self.report("code-invalid", message, here)

    def complex(self, field: Field, value: object, here: Loc, depth: int) -> None:
        if type(value) is not dict:
            what = f"{field.type_code} object" if field.kind == COMPLEX else "object"
            self.report("structure", f"expected a JSON {what}, got {json_kind(value)}", here)
            return
        assert field.struct is not None
        self.obj(value, field.struct, here, depth + 1)
        if field.binding is not None:
            message = field.binding(value)
            if message is not None:
                self.report("code-invalid", message, here)

    # -- messages ----------------------------------------------------------------------------

    @staticmethod
    def unknown_message(key: str, struct: Struct) -> str:
        names = [k for k in struct.fields if not k.startswith("_")]
        base = f"unknown element {key!r} in {struct.path}"
        for field in struct.fields.values():
            stem = field.choice
            if stem is not None and key.lstrip("_").startswith(stem):
                options = ", ".join(f.key for f in struct.fields.values() if f.choice == stem)
                return f"{base}: {stem}[x] must be one of {options}"
        if key.startswith("_"):
            return f"{base}: there is no primitive element {key[1:]!r} to extend"
        close = difflib.get_close_matches(key, names, n=1)
        return f"{base} (did you mean {close[0]!r}?)" if close else base

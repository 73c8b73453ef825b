"""Search-parameter expressions compiled to Python accessors: https://hl7.org/fhir/R4/fhirpath.html.

SearchParameter.expression (https://hl7.org/fhir/R4/searchparameter-definitions.html#SearchParameter.expression)
is FHIRPath. Nearly all of R4's expressions are a few simple shapes, compiled here once into a
chain of small Python steps over plain dicts:

- dotted paths (``Observation.subject``), flattening arrays as FHIRPath does;
- unions ``A | B`` across resource types, keeping only the branches for one type (``Resource.``
  and ``DomainResource.`` branches apply to every type);
- choice elements narrowed by ``(X as T)``, ``.as(T)`` or ``.ofType(T)`` (``valueQuantity``);
  an unnarrowed choice selects every ``value[x]`` property;
- ``.where(resolve() is T)`` (reference type check) and ``.where(name='literal')`` filters;
- ``[n]`` indexing and a ``%resource.`` head (composite components).

Everything else is evaluated by fhirpathpy (compiled once per parameter and resource type).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import fhirpathpy
from fhirpathpy.models import models

from healthbridge.fhir.definitions import Definitions, ElementDef
from healthbridge.fhir.search.references import reference_type

Step = Callable[[list[Any], dict[str, Any]], list[Any]]
"""One compiled step: (focus collection, root resource) -> new collection."""

_GENERIC_ROOTS = frozenset({"Resource", "DomainResource"})
_IDENT = re.compile(r"[A-Za-z_]\w*")
_INDEXED = re.compile(r"([A-Za-z_]\w*)\[(\d+)\]")
_CAST = re.compile(r"(?:as|ofType)\((\w+)\)")
_RESOLVE_IS = re.compile(r"where\(resolve\(\) is (\w+)\)")
_WHERE_EQ = re.compile(r"where\((\w+)\s*=\s*'([^']*)'\)")
_PAREN_AS = re.compile(r"\(([^()]+) as (\w+)\)(.*)")


class Unsupported(Exception):
    """The expression is outside the compiled subset; fhirpathpy evaluates it instead."""


@dataclass(frozen=True, slots=True)
class Accessor:
    """A compiled expression: call it with the focus node and the root resource.

    ``type_hint`` is the one FHIR type of every selected element when the compiler knows it
    statically (``Identifier``, ``string``), else None. ``compiled`` is False for the fhirpathpy
    fallback. ``root_keys`` are the top-level properties a root-relative expression reads: a
    resource with none of them selects nothing (None when unknown).
    """

    expression: str
    fn: Callable[[Any, dict[str, Any]], list[Any]]
    type_hint: str | None
    compiled: bool
    root_keys: frozenset[str] | None = None

    def __call__(self, focus: Any, root: dict[str, Any]) -> list[Any]:
        return self.fn(focus, root)


def split_union(expression: str) -> list[str]:
    """The top-level ``|`` branches of an expression (not inside parentheses or quotes)."""
    branches: list[str] = []
    depth, quoted, start = 0, False, 0
    for i, char in enumerate(expression):
        if char == "'":
            quoted = not quoted
        elif not quoted and char in "([":
            depth += 1
        elif not quoted and char in ")]":
            depth -= 1
        elif not quoted and depth == 0 and char == "|":
            branches.append(expression[start:i].strip())
            start = i + 1
    branches.append(expression[start:].strip())
    return branches


def split_steps(branch: str) -> list[str]:
    """The ``.``-separated steps of one branch, with ``(X as T).rest`` rewritten to
    ``X.as(T).rest``."""
    match = _PAREN_AS.fullmatch(branch)
    if match:
        branch = f"{match[1]}.as({match[2]}){match[3]}"
    steps: list[str] = []
    depth, start = 0, 0
    for i, char in enumerate(branch):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "." and depth == 0:
            steps.append(branch[start:i])
            start = i + 1
    steps.append(branch[start:])
    return steps


def branches_for(expression: str, resource_type: str) -> list[str]:
    """The union branches that apply to ``resource_type``, with a generic ``Resource.`` head
    rewritten to the type (fhirpathpy selects nothing for ``Resource.id`` on a Patient) and a
    head-less relative path (``name``) prefixed with it."""
    kept: list[str] = []
    for branch in split_union(expression):
        inner = branch[1:] if branch.startswith("(") else branch
        head = _IDENT.match(inner)
        name = head.group(0) if head else ""
        if name == resource_type:
            kept.append(branch)
        elif name in _GENERIC_ROOTS:
            kept.append(branch.replace(name, resource_type, 1))
        elif name[:1].islower():  # relative to the resource (R4 InsurancePlan.name: name | alias)
            kept.append(branch.replace(name, f"{resource_type}.{name}", 1))
    return kept


def _collect(keys: Sequence[str]) -> Step:
    if len(keys) == 1:
        key = keys[0]

        def one(nodes: list[Any], root: dict[str, Any]) -> list[Any]:
            out: list[Any] = []
            for node in nodes:
                value = node.get(key) if isinstance(node, dict) else None
                if value is None:
                    continue
                if isinstance(value, list):
                    out.extend(value)
                else:
                    out.append(value)
            return out

        return one

    steps = [_collect((key,)) for key in keys]

    def many(nodes: list[Any], root: dict[str, Any]) -> list[Any]:
        return [value for step in steps for value in step(nodes, root)]

    return many


def _index(position: int) -> Step:
    return lambda nodes, root: nodes[position : position + 1]


def _where_eq(name: str, literal: str) -> Step:
    return lambda nodes, root: [n for n in nodes if isinstance(n, dict) and n.get(name) == literal]


def _resolve_is(type_name: str) -> Step:
    return lambda nodes, root: [
        n for n in nodes if isinstance(n, dict) and reference_type(n, root) == type_name
    ]


@dataclass(slots=True)
class _Compiler:
    """Compiles the steps of one branch against the definitions, tracking the element type."""

    definitions: Definitions
    context: str | None  # definition path of the focus (``Observation.component``, ``Quantity``)
    choices: tuple[tuple[str, str], ...] = ()  # pending unnarrowed choice: (json name, type)

    def compile(self, steps: list[str]) -> list[Step]:
        compiled: list[Step] = []
        for step in steps:
            compiled.extend(self._step(step))
        if self.choices:
            compiled.append(_collect([name for name, _ in self.choices]))
            self.context = None if len(self.choices) > 1 else self.choices[0][1]
        return compiled

    def _step(self, step: str) -> list[Step]:
        cast = _CAST.fullmatch(step)
        if cast:
            return self._cast(cast[1])
        out = self._flush_choices()
        if _IDENT.fullmatch(step):
            return [*out, self._child(step)]
        indexed = _INDEXED.fullmatch(step)
        if indexed:
            return [*out, self._child(indexed[1]), _index(int(indexed[2]))]
        resolve_is = _RESOLVE_IS.fullmatch(step)
        if resolve_is:
            return [*out, _resolve_is(resolve_is[1])]
        where = _WHERE_EQ.fullmatch(step)
        if where and self.context and where[1] in self.definitions.children(self.context):
            return [*out, _where_eq(where[1], where[2])]
        raise Unsupported(step)

    def _flush_choices(self) -> list[Step]:
        if not self.choices:
            return []
        if len(self.choices) > 1:
            raise Unsupported("navigation below an unnarrowed choice element")
        name, type_code = self.choices[0]
        self.choices, self.context = (), type_code
        return [_collect([name])]

    def _cast(self, type_name: str) -> list[Step]:
        if self.choices:
            keys = [name for name, code in self.choices if self._is_a(code, type_name)]
            if not keys:
                raise Unsupported(f"{type_name} is not a type of the choice element")
            codes = {code for name, code in self.choices if name in keys}
            self.choices = ()
            self.context = codes.pop() if len(codes) == 1 else type_name
            return [_collect(keys)]
        if self.context and self._is_a(self.context, type_name):
            return []
        raise Unsupported(f"as({type_name}) on a non-choice element")

    def _is_a(self, type_code: str, type_name: str) -> bool:
        """True when ``type_code`` is ``type_name`` or derives from it (canonical is a uri,
        Age is a Quantity); names compare case-insensitively (``DateTime``)."""
        current: str | None = type_code
        while current:
            if current.lower() == type_name.lower():
                return True
            found = self.definitions.type_def(current)
            current = found.base if found else None
        return False

    def _child(self, name: str) -> Step:
        children = self.definitions.children(self.context) if self.context else {}
        element = children.get(name)
        if element is not None:
            self.context = self._context_of(element)
            return _collect([name])
        choice = children.get(name + "[x]")
        if choice is None:
            raise Unsupported(f"unknown element {self.context}.{name}")
        self.choices = tuple((json, ref.code) for json, ref in choice.json_names)
        return lambda nodes, root: nodes

    def _context_of(self, element: ElementDef) -> str | None:
        if element.content_reference:
            return element.content_reference.lstrip("#")
        if not element.types:
            return None
        code = element.types[0].code
        if code in ("BackboneElement", "Element") and self.definitions.children(element.path):
            return element.path
        return code


def compile_branch(
    definitions: Definitions, steps: list[str], context: str
) -> tuple[list[Step], str | None]:
    """Compile path steps relative to the definition path ``context``; returns the steps and
    the statically known type of the result (None when mixed or unknown)."""
    compiler = _Compiler(definitions, context)
    return compiler.compile(steps), compiler.context


def _run(steps: list[Step]) -> Callable[[Any, dict[str, Any]], list[Any]]:
    def run(focus: Any, root: dict[str, Any]) -> list[Any]:
        nodes = focus if isinstance(focus, list) else [focus]
        for step in steps:
            if not nodes:
                return nodes
            nodes = step(nodes, root)
        return nodes

    return run


def distinct(values: list[Any]) -> list[Any]:
    """The values without repeats, in first-seen order (FHIRPath ``|`` is a set union).

    Repeats are judged on the exact JSON value, so ``1.0`` and ``1.00`` both stay (their
    precision ranges differ) and ``true`` is not ``1``.
    """
    out: list[Any] = []
    for value in values:
        if value not in out or all(repr(value) != repr(kept) for kept in out if kept == value):
            out.append(value)
    return out


def _union(
    runs: list[Callable[[Any, dict[str, Any]], list[Any]]],
) -> Callable[[Any, dict[str, Any]], list[Any]]:
    if len(runs) == 1:
        return runs[0]
    return lambda focus, root: distinct([value for run in runs for value in run(focus, root)])


_PRESENT_AND_NOT_FALSE = re.compile(
    r"(?P<type>[A-Z][A-Za-z]+)\.(?P<name>[a-z][A-Za-z]*)\.exists\(\) and "
    r"(?P=type)\.(?P=name) != false"
)


def _present_and_not_false(expression: str, resource_type: str) -> Accessor | None:
    """``Patient.deceased.exists() and Patient.deceased != false`` (the one R4 expression the
    subset cannot compile, evaluated on every Patient write): true when the choice element has
    any value other than ``false``, else false, exactly as FHIRPath's three-valued ``and``
    gives it."""
    match = _PRESENT_AND_NOT_FALSE.fullmatch(expression.strip())
    if match is None or match["type"] != resource_type:
        return None
    prefix = match["name"]

    def present_and_not_false(focus: Any, root: dict[str, Any]) -> list[Any]:
        if not isinstance(focus, dict):
            return []
        values = [
            v for k, v in focus.items() if k.startswith(prefix) and k[len(prefix) :][:1].isupper()
        ]
        return [any(v is not False for v in values)]

    return Accessor(expression, present_and_not_false, "boolean", compiled=True, root_keys=None)


def compile_expression(
    definitions: Definitions, expression: str, resource_type: str, relative_to: str | None = None
) -> Accessor:
    """Compile ``expression`` for ``resource_type``; fhirpathpy evaluates what the subset misses.

    With ``relative_to`` (a definition path such as ``Observation.component``) the expression
    is a composite component evaluated against that focus (``%resource.`` means the root).
    """
    try:
        return _compile(definitions, expression, resource_type, relative_to)
    except Unsupported:
        special = None if relative_to else _present_and_not_false(expression, resource_type)
        return special or fallback(expression, resource_type, relative_to)


def _compile(
    definitions: Definitions, expression: str, resource_type: str, relative_to: str | None
) -> Accessor:
    branches = split_union(expression) if relative_to else branches_for(expression, resource_type)
    runs: list[Callable[[Any, dict[str, Any]], list[Any]]] = []
    hints: set[str | None] = set()
    keys: set[str] | None = set()
    for branch in branches:
        steps = split_steps(branch)
        root_relative = relative_to is None or steps[0] == "%resource"
        first = _root_keys(definitions, resource_type, steps) if relative_to is None else None
        keys = None if first is None or keys is None else keys | first
        context = resource_type if root_relative else str(relative_to)
        compiled, hint = compile_branch(definitions, steps[1:] if root_relative else steps, context)
        run = _run(compiled)
        runs.append(_from_root(run) if root_relative and relative_to else run)
        hints.add(hint)
    hint = hints.pop() if len(hints) == 1 else None
    fn = _union(runs) if runs else _nothing
    return Accessor(expression, fn, hint, True, frozenset(keys) if keys is not None else None)


def _root_keys(definitions: Definitions, resource_type: str, steps: list[str]) -> set[str] | None:
    """The JSON properties the first step below the resource reads (None: the resource itself)."""
    if len(steps) < 2:
        return None
    head = _IDENT.match(steps[1])
    name = head.group(0) if head else ""
    children = definitions.children(resource_type)
    if name in children:
        return {name}
    choice = children.get(name + "[x]")
    return {json for json, _ in choice.json_names} if choice else None


def _from_root(
    run: Callable[[Any, dict[str, Any]], list[Any]],
) -> Callable[[Any, dict[str, Any]], list[Any]]:
    """A ``%resource.`` branch of a component: evaluated on the root, whatever the focus."""
    return lambda focus, root: run(root, root)


def _nothing(focus: Any, root: dict[str, Any]) -> list[Any]:
    return []


def fallback(expression: str, resource_type: str, relative_to: str | None = None) -> Accessor:
    """An accessor evaluating ``expression`` with fhirpathpy (compiled once)."""
    text = expression if relative_to else " | ".join(branches_for(expression, resource_type))
    if not text:
        return Accessor(expression, _nothing, None, compiled=False)
    path_fn = fhirpathpy.compile(text, models["r4"])

    def evaluate(focus: Any, root: dict[str, Any]) -> list[Any]:
        try:
            return list(path_fn(focus, {"resource": root}))
        except Exception:  # an expression fhirpathpy cannot evaluate indexes nothing
            return []

    return Accessor(expression, evaluate, None, compiled=False)

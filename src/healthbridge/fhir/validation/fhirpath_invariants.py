"""Profile invariants evaluated with FHIRPath: https://hl7.org/fhir/R4/conformance-rules.html#constraints.

``ElementDefinition.constraint`` (https://hl7.org/fhir/R4/elementdefinition-definitions.html#ElementDefinition.constraint)
carries a FHIRPath ``expression`` that SHALL be true for every instance of the element; its
``severity`` says whether a failure is an error or a warning. Each expression is parsed once by
fhirpathpy (https://hl7.org/fhirpath/) and cached, then run per element with ``%resource`` and
``%rootResource`` bound; the common existence shapes run as Python predicates instead
(invariant_shapes.py), with fhirpathpy as the fallback. :class:`Evaluations` remembers results
within one validation, per expression, node and environment. An expression the engine cannot
evaluate is reported as a warning that the invariant could not be checked: it never stops
validation.

The invariants the base validator already enforces without an engine (``ele-1``, ``ext-1``,
``dom-2`` .. ``dom-5``, ``txt-1``, ``txt-2``) are skipped here so they are not reported twice.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import fhirpathpy
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models

from healthbridge.fhir.errors import Severity
from healthbridge.fhir.validation.invariant_shapes import Fallback, Predicate, compile_shape

#: Invariants the base validator checks itself (validation/invariants.py, narrative.py).
BASE_KEYS: Final = frozenset(
    {"ele-1", "ext-1", "dom-2", "dom-3", "dom-4", "dom-5", "txt-1", "txt-2"}
)

_MODEL: Final = models["r4"]
# fhirpathpy is untyped: its entry points, typed once here.
_parser: Callable[[str], Any] = fhirpathpy.parse  # type: ignore[attr-defined]
_node: Callable[[object, str], Any] = ResourceNode.create_node
_apply: Callable[..., Any] = fhirpathpy.apply_parsed_path


def _has_value(inputs: list[Any]) -> list[bool]:
    """``hasValue()`` (https://hl7.org/fhir/R4/fhirpath.html#functions), which fhirpathpy lacks:
    true for a single primitive value (not an object such as a primitive's extension holder)."""
    return [len(inputs) == 1 and not isinstance(inputs[0], dict | list) and inputs[0] is not None]


_OPTIONS: Final = {"userInvocationTable": {"hasValue": {"fn": _has_value, "arity": {0: []}}}}
_parsed: dict[str, Any] = {}
_lock = threading.Lock()


def _parse(expression: str) -> Any:
    """The fhirpathpy parse tree of ``expression`` (parsed once per process)."""
    tree = _parsed.get(expression)
    if tree is None:
        tree = _parser(expression)
        with _lock:
            _parsed[expression] = tree
    return tree


@dataclass(frozen=True, slots=True)
class Constraint:
    """One compiled ``ElementDefinition.constraint``; ``tree`` is None when it failed to parse."""

    key: str
    severity: Severity
    human: str
    expression: str
    tree: Any
    shape: Predicate | None = None  # the expression as a Python predicate, when it compiles


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one evaluation: ``passed`` is None when the engine could not tell."""

    passed: bool | None
    problem: str = ""


def compile_constraints(raw: object) -> tuple[Constraint, ...]:
    """The checkable constraints of one element definition (``constraint`` array)."""
    if not isinstance(raw, list):
        return ()
    found: list[Constraint] = []
    for item in raw:
        if not isinstance(item, dict):
            continue
        key, expression = item.get("key"), item.get("expression")
        if not isinstance(key, str) or not isinstance(expression, str) or key in BASE_KEYS:
            continue
        severity: Severity = "warning" if item.get("severity") == "warning" else "error"
        try:
            tree = _parse(expression)
        except Exception:
            tree = None
        human = str(item.get("human") or key)
        shape = compile_shape(expression) if tree is not None else None
        found.append(Constraint(key, severity, human, expression, tree, shape))
    return tuple(found)


def _truth(result: object) -> bool | None:
    """FHIRPath boolean evaluation of a result collection (fhirpath.html#boolean-evaluation)."""
    if not isinstance(result, list) or not result:
        return None if isinstance(result, list) else bool(result)
    if len(result) == 1 and isinstance(result[0], bool):
        return result[0]
    return True


def evaluate(
    constraint: Constraint, focus: object, base_path: str, env: Mapping[str, object]
) -> Outcome:
    """Run ``constraint`` on ``focus`` (an element value; ``base_path`` like
    ``Observation.component`` types it for the engine); ``env`` holds ``resource`` and
    ``rootResource``. An empty result counts as passing (the invariant does not apply)."""
    if constraint.tree is None:
        return Outcome(None, "the expression could not be parsed")
    if constraint.shape is not None:
        try:
            truth = constraint.shape(focus, base_path)
        except Fallback:
            pass
        else:
            return Outcome(True if truth is None else truth)
    return interpret(constraint, focus, base_path, env)


def interpret(
    constraint: Constraint, focus: object, base_path: str, env: Mapping[str, object]
) -> Outcome:
    """:func:`evaluate` by fhirpathpy alone."""
    try:
        node = _node(focus, base_path)
        result = _apply(node, constraint.tree, dict(env), _MODEL, _OPTIONS)
    except Exception as exc:
        return Outcome(None, f"{type(exc).__name__}: {exc}"[:200])
    truth = _truth(result)
    return Outcome(True if truth is None else truth)


class Evaluations:
    """Invariant results within one validation: profiles that share a base (or a value reached
    twice, by a slice discriminator and by the walk) evaluate each expression once per node.
    Keys hold object ids (the focus is kept alive with its result, so an id is never reused):
    the instance must not change while an ``Evaluations`` is in use."""

    __slots__ = ("_found",)

    def __init__(self) -> None:
        self._found: dict[tuple[str, int, str, int, int], tuple[object, Outcome]] = {}

    def outcome(
        self, constraint: Constraint, focus: object, base_path: str, resource: object, root: object
    ) -> Outcome:
        key = (constraint.expression, id(focus), base_path, id(resource), id(root))
        found = self._found.get(key)
        if found is None:
            env = {"resource": resource, "rootResource": root}
            found = self._found[key] = (focus, evaluate(constraint, focus, base_path, env))
        return found[1]

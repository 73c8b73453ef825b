"""An in-memory index over the concepts of one code system version.

Answers what the terminology operations ask of a code system
(https://hl7.org/fhir/R4/terminology-service.html): concepts by code, direct children,
subsumption (https://hl7.org/fhir/R4/codesystem-operation-subsumes.html) and the
``ValueSet.compose.include.filter`` operators (https://hl7.org/fhir/R4/valueset.html#filters,
codes from http://hl7.org/fhir/ValueSet/filter-operator):

* ``concept`` (or ``code``) with ``is-a`` (the code and its descendants), ``descendent-of``
  (descendants only), ``is-not-a``, ``generalizes`` (the code and its ancestors), ``=``,
  ``in``/``not-in`` (comma-separated codes) and ``regex`` (the whole code);
* ``display`` with ``=`` and ``regex``; ``inactive`` with ``=`` true/false;
* any other property code with ``=``, ``in``, ``not-in``, ``regex`` (on the value) and
  ``exists`` (``true``: the concept has the property).

Used by the memory store (:mod:`healthbridge.store.memory_terminology`) and for CodeSystem
resources (R4 core, packages, uploads); the SQL store implements the same semantics in SQL.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import Protocol

from healthbridge.fhir.terminology.concepts import Concept, PropertyValue
from healthbridge.fhir.terminology.words import matches, words

HIERARCHY_PROPERTIES = frozenset({"concept", "code"})


class FilterLike(Protocol):
    """``ValueSet.compose.include.filter`` (``ConceptFilter`` of the store has this shape)."""

    @builtins.property
    def property(self) -> str: ...

    @builtins.property
    def op(self) -> str: ...

    @builtins.property
    def value(self) -> str: ...


class UnsupportedFilter(ValueError):
    """A filter operator this property does not support."""


def value_text(value: PropertyValue) -> str:
    """A property value as filters compare it: the code of a Coding, ``true``/``false``."""
    if isinstance(value, tuple):
        return value[1]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return str(value)
    return str(value)


def full_match(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise UnsupportedFilter(f"the regex {pattern!r} is not valid: {exc}") from None


class ConceptIndex:
    def __init__(self, concepts: Iterable[Concept]) -> None:
        self.concepts: dict[str, Concept] = {c.code: c for c in concepts}
        self._children: dict[str, list[str]] = {}
        for concept in self.concepts.values():
            for parent in concept.parents:
                self._children.setdefault(parent, []).append(concept.code)
        self._sorted = sorted(self.concepts)

    def children(self, code: str) -> list[str]:
        return sorted(self._children.get(code, ()))

    def ancestors(self, code: str) -> set[str]:
        """``code`` and every code it is-a."""
        return _walk(code, self._parents)

    def descendants(self, code: str) -> set[str]:
        """``code`` and every code that is-a it."""
        return _walk(code, lambda c: self._children.get(c, ()))

    def _parents(self, code: str) -> Iterable[str]:
        concept = self.concepts.get(code)
        return concept.parents if concept is not None else ()

    def subsumes(self, ancestor: str, code: str) -> bool:
        return code in self.concepts and ancestor in self.ancestors(code)

    def select(
        self,
        filters: Sequence[FilterLike] = (),
        text: str | None = None,
        active_only: bool = True,
    ) -> list[str]:
        """The codes matching every filter (and ``text``), in code order."""
        codes: set[str] | None = None
        for rule in filters:
            found = self._filtered(rule)
            codes = found if codes is None else codes & found
        ordered = self._sorted if codes is None else sorted(codes & self.concepts.keys())
        query = words(text)
        out: list[str] = []
        for code in ordered:
            concept = self.concepts[code]
            if active_only and concept.inactive:
                continue
            if query and not matches(query, _names(concept)):
                continue
            out.append(code)
        return out

    def _filtered(self, rule: FilterLike) -> set[str]:
        prop, op, value = rule.property, rule.op, rule.value
        if prop in HIERARCHY_PROPERTIES:
            return self._by_code(op, value)
        if prop == "display" and op in ("=", "regex"):
            pattern = full_match(value) if op == "regex" else None
            return {
                c.code
                for c in self.concepts.values()
                if (pattern.fullmatch(c.display or "") if pattern else c.display == value)
            }
        if prop == "inactive" and op == "=":
            wanted = value.lower() == "true"
            return {c.code for c in self.concepts.values() if c.inactive == wanted}
        return self._by_property(prop, op, value)

    def _by_code(self, op: str, value: str) -> set[str]:
        if op == "is-a":
            return self.descendants(value) if value in self.concepts else set()
        if op == "descendent-of":
            return self.descendants(value) - {value} if value in self.concepts else set()
        if op == "is-not-a":
            return set(self.concepts) - self.descendants(value)
        if op == "generalizes":
            return self.ancestors(value) & self.concepts.keys() if value in self.concepts else set()
        if op == "=":
            return {value} & self.concepts.keys()
        if op in ("in", "not-in"):
            listed = {v.strip() for v in value.split(",")}
            return listed & self.concepts.keys() if op == "in" else set(self.concepts) - listed
        if op == "regex":
            pattern = full_match(value)
            return {code for code in self.concepts if pattern.fullmatch(code)}
        raise UnsupportedFilter(f"the filter concept {op} is not supported")

    def _by_property(self, prop: str, op: str, value: str) -> set[str]:
        if op == "exists":
            wanted = value.lower() != "false"
            return {
                c.code
                for c in self.concepts.values()
                if any(p.code == prop for p in c.properties) == wanted
            }
        if op == "not-in":
            return set(self.concepts) - self._by_property(prop, "in", value)
        accept = _acceptor(prop, op, value)
        return {
            c.code
            for c in self.concepts.values()
            if any(p.code == prop and accept(value_text(p.value)) for p in c.properties)
        }


def _acceptor(prop: str, op: str, value: str) -> Callable[[str], bool]:
    if op == "=":
        return lambda text: text == value
    if op == "in":
        listed = {v.strip() for v in value.split(",")}
        return lambda text: text in listed
    if op == "regex":
        pattern = full_match(value)
        return lambda text: pattern.fullmatch(text) is not None
    raise UnsupportedFilter(f"the filter {prop} {op} is not supported")


def _walk(start: str, step: Callable[[str], Iterable[str]]) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for nxt in step(todo.pop()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _names(concept: Concept) -> list[str | None]:
    return [concept.display, *(d.value for d in concept.designations)]

"""Code hierarchies and value set contents from CodeSystem and ValueSet resources.

https://hl7.org/fhir/R4/codesystem.html (``concept`` nesting and the ``parent``/``child``
properties, with ``hierarchyMeaning`` is-a) and https://hl7.org/fhir/R4/valueset.html
(``compose`` with include/exclude of concepts, whole systems, ``is-a``/``descendent-of``/``=``
filters and imported value sets; or a stored ``expansion``), worked out synchronously from
resources held in memory. Only profile validation's value-set membership check uses it now
(rest/profiles/codes.py, which must answer synchronously during a validation); the terminology
service (rest/terminology/, used by the operations and by search's ``:in``/``:below``) is the
full engine, and folding this one into its pure index (concept_index.py) is still to do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from healthbridge.fhir.types import Resource

Pair = tuple[str, str]
Lookup = Callable[[str], Resource | None]
"""Finds a CodeSystem or ValueSet resource by canonical URL (``url|version`` allowed)."""


class NotExpandable(ValueError):
    """A value set or hierarchy that cannot be worked out from what the server knows."""


class Missing(LookupError):
    """A lookup needs ``url``, which the caller has not fetched yet (it fetches and retries)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


def _concepts(
    nodes: Any, parent: str | None = None
) -> Iterator[tuple[str, str | None, dict[str, Any]]]:
    for node in nodes or []:
        if isinstance(node, dict) and isinstance(node.get("code"), str):
            yield node["code"], parent, node
            yield from _concepts(node.get("concept"), node["code"])


def parents(code_system: Resource) -> dict[str, set[str]]:
    """code -> its parents, from nesting and from ``parent``/``child`` properties."""
    found: dict[str, set[str]] = {}
    for code, parent, node in _concepts(code_system.get("concept")):
        links = found.setdefault(code, set())
        if parent is not None:
            links.add(parent)
        for prop in node.get("property") or []:
            if not isinstance(prop, dict) or not isinstance(prop.get("valueCode"), str):
                continue
            if prop.get("code") == "parent":
                links.add(prop["valueCode"])
            elif prop.get("code") == "child":
                found.setdefault(prop["valueCode"], set()).add(code)
    return found


def _closure(start: str, edges: dict[str, set[str]]) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for nxt in edges.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def ancestors(code_system: Resource, code: str) -> set[str]:
    """``code`` and every code it is-a (``:above``)."""
    return _closure(code, parents(code_system))


def descendants(code_system: Resource, code: str) -> set[str]:
    """``code`` and every code that is-a it (``:below``)."""
    children: dict[str, set[str]] = {}
    for child, ups in parents(code_system).items():
        for up in ups:
            children.setdefault(up, set()).add(child)
    return _closure(code, children)


def all_codes(code_system: Resource) -> set[str]:
    return {code for code, _, _ in _concepts(code_system.get("concept"))}


def _system_codes(include: dict[str, Any], lookup: Lookup) -> set[str]:
    system = include.get("system")
    if not isinstance(system, str):
        raise NotExpandable("an include without a system")
    concepts = include.get("concept")
    if concepts:
        return {
            c["code"] for c in concepts if isinstance(c, dict) and isinstance(c.get("code"), str)
        }
    code_system = lookup(system)
    if code_system is None:
        raise NotExpandable(f"the code system {system} is not known to this server")
    codes = all_codes(code_system)
    for rule in include.get("filter") or []:
        codes &= _filtered(code_system, rule)
    return codes


def _filtered(code_system: Resource, rule: Any) -> set[str]:
    op, value = (rule.get("op"), rule.get("value")) if isinstance(rule, dict) else (None, None)
    if rule.get("property") not in ("concept", "code") or not isinstance(value, str):
        raise NotExpandable(f"the filter {rule!r} is not supported")
    if op == "is-a":
        return descendants(code_system, value)
    if op == "descendent-of":
        return descendants(code_system, value) - {value}
    if op == "=":
        return {value}
    raise NotExpandable(f"the filter operator {op!r} is not supported")


def _part(part: dict[str, Any], lookup: Lookup, depth: int) -> set[Pair]:
    pairs: set[Pair] | None = None
    if part.get("system") is not None:
        system = str(part["system"])
        pairs = {(system, code) for code in _system_codes(part, lookup)}
    for url in part.get("valueSet") or []:
        imported = value_set_pairs(_required(lookup, url), lookup, depth + 1)
        pairs = imported if pairs is None else pairs & imported
    if pairs is None:
        raise NotExpandable("an include with neither a system nor a value set")
    return pairs


def _required(lookup: Lookup, url: str) -> Resource:
    found = lookup(url)
    if found is None:
        raise NotExpandable(f"the value set {url} is not known to this server")
    return found


def value_set_pairs(value_set: Resource, lookup: Lookup, depth: int = 0) -> set[Pair]:
    """Every (system, code) in ``value_set``: its stored expansion, else its compose."""
    if depth > 8:
        raise NotExpandable("value sets import each other too deeply")
    expansion = value_set.get("expansion")
    if isinstance(expansion, dict) and expansion.get("contains"):
        return {
            (c["system"], c["code"])
            for c in _flat(expansion["contains"])
            if isinstance(c.get("system"), str) and isinstance(c.get("code"), str)
        }
    compose = value_set.get("compose")
    if not isinstance(compose, dict) or not compose.get("include"):
        raise NotExpandable(f"the value set {value_set.get('url')} has no compose or expansion")
    pairs: set[Pair] = set()
    for include in compose["include"]:
        pairs |= _part(include, lookup, depth)
    for exclude in compose.get("exclude") or []:
        pairs -= _part(exclude, lookup, depth)
    return pairs


def _flat(contains: Any) -> Iterator[dict[str, Any]]:
    for item in contains or []:
        if isinstance(item, dict):
            yield item
            yield from _flat(item.get("contains"))

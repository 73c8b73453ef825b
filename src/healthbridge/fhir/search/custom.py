"""Custom search parameters: https://hl7.org/fhir/R4/searchparameter.html.

A SearchParameter resource stored on the server defines a parameter that the R4 core package
does not have (for example an extension). :func:`custom_parameter` checks one and turns it into
the same :class:`~healthbridge.fhir.definitions.SearchParameter` the core ones are, so that the
indexer, the parser and the planner treat both alike; ``Definitions.with_search_parameters``
adds them. A parameter only becomes searchable after a ``$reindex`` has indexed the resources
stored before it existed (see ``rest/operations/reindex.py``).

Refused (Unprocessable, with the element named): a missing url or code, a code that is not a
plain token or that starts with ``_``, a code that a core parameter of the same base already
uses, an unknown base or target type, a type outside the R4 list, a missing or unparseable
expression, or a composite whose components are unknown.
"""

from __future__ import annotations

import re
from typing import Any

from healthbridge.fhir.definitions import Definitions, SearchComponent, SearchParameter
from healthbridge.fhir.errors import Unprocessable
from healthbridge.fhir.search.fhirpath import compile_expression
from healthbridge.fhir.types import Resource

TYPES = frozenset(
    {"number", "date", "string", "token", "reference", "composite", "quantity", "uri", "special"}
)
_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-.]{0,63}")
_ANY = ("Resource", "DomainResource")


def _fail(text: str, element: str) -> Unprocessable:
    return Unprocessable(text, code="invariant", expression=f"SearchParameter.{element}")


def _strings(resource: Resource, element: str) -> tuple[str, ...]:
    found = resource.get(element) or []
    if not isinstance(found, list) or not all(isinstance(v, str) for v in found):
        raise _fail(f"{element} must be a list of resource type names", element)
    return tuple(found)


def _types(definitions: Definitions, names: tuple[str, ...], element: str, any_ok: bool) -> None:
    for name in names:
        if not (definitions.is_resource_type(name) or (any_ok and name in _ANY)):
            raise _fail(f"{name!r} is not an R4 resource type", element)


def _well_formed(expression: str) -> bool:
    """Balanced brackets and quotes, no empty path step (fhirpathpy's parser recovers from
    such errors silently, so they are caught here)."""
    depth, quote, previous = 0, "", ""
    for char in expression:
        if quote:
            quote = "" if char == quote and previous != "\\" else quote
        elif char in "'`":
            quote = char
        elif char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
            if depth < 0:
                return False
        elif char == "." and previous in (".", "(", ""):
            return False
        previous = char if not (char == "\\" and previous == "\\") else ""
    return depth == 0 and not quote and not expression.rstrip().endswith(".")


def _check_expression(definitions: Definitions, expression: str, bases: tuple[str, ...]) -> None:
    if not _well_formed(expression):
        raise _fail(f"expression {expression!r} is not well-formed FHIRPath", "expression")
    for base in bases:
        focus = "Resource" if base in _ANY else base
        try:
            accessor = compile_expression(definitions, expression, focus)
            list(accessor.fn({"resourceType": focus}, {"resourceType": focus}))
        except Exception as exc:  # any FHIRPath error: refuse the definition
            text = f"expression {expression!r} cannot be evaluated: {exc}"
            raise _fail(text, "expression") from exc


def _components(resource: Resource, definitions: Definitions) -> tuple[SearchComponent, ...]:
    found: list[SearchComponent] = []
    for index, component in enumerate(resource.get("component") or []):
        where = f"component[{index}]"
        if not isinstance(component, dict):
            raise _fail("a component must be an object", where)
        url, expression = component.get("definition"), component.get("expression")
        if not isinstance(url, str) or definitions.search_parameter(url) is None:
            raise _fail(f"component definition {url!r} is not a known parameter", where)
        if not isinstance(expression, str) or not expression:
            raise _fail("a component needs an expression", where)
        found.append(SearchComponent(url, expression))
    if not found:
        raise _fail("a composite parameter needs components", "component")
    return tuple(found)


def custom_parameter(resource: Resource, definitions: Definitions) -> SearchParameter:
    """The search parameter a SearchParameter resource defines (Unprocessable if unusable)."""
    url, code, kind = resource.get("url"), resource.get("code"), resource.get("type")
    if not isinstance(url, str) or not url:
        raise _fail("a custom search parameter needs a url", "url")
    if not isinstance(code, str) or not _CODE.fullmatch(code):
        raise _fail(
            f"code {code!r} must be letters, digits, '-' or '.', not starting with '_'", "code"
        )
    if kind not in TYPES:
        raise _fail(f"type {kind!r} is not one of {', '.join(sorted(TYPES))}", "type")
    bases = _strings(resource, "base")
    if not bases:
        raise _fail("a search parameter needs at least one base", "base")
    _types(definitions, bases, "base", any_ok=True)
    for base in bases:
        existing = definitions.search_parameters("Resource" if base in _ANY else base).get(code)
        if existing is not None and existing.url != url:
            raise _fail(f"{base} already has a search parameter {code!r} ({existing.url})", "code")
    targets = _strings(resource, "target")
    _types(definitions, targets, "target", any_ok=False)
    expression = resource.get("expression")
    if kind != "special" and (not isinstance(expression, str) or not expression):
        raise _fail("a search parameter needs an expression", "expression")
    if isinstance(expression, str):
        _check_expression(definitions, expression, bases)
    components = _components(resource, definitions) if kind == "composite" else ()
    return SearchParameter(
        url=url,
        code=code,
        type=str(kind),
        base=bases,
        expression=expression if isinstance(expression, str) else None,
        target=targets,
        modifier=_strings(resource, "modifier") if "modifier" in resource else (),
        comparator=_strings(resource, "comparator") if "comparator" in resource else (),
        component=components,
    )


def is_active(resource: dict[str, Any]) -> bool:
    """Only active parameters are applied (https://hl7.org/fhir/R4/valueset-publication-status.html)."""
    return resource.get("status") == "active"

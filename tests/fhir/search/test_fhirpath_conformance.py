"""The compiled accessors select what FHIRPath selects: https://hl7.org/fhir/R4/fhirpath.html.

For every search parameter (https://hl7.org/fhir/R4/searchparameter-registry.html) of every
example resource of the R4 examples package, the compiled accessor must select the same element
list as fhirpathpy evaluating the original SearchParameter.expression (with the branches of other
resource types dropped and a ``Resource.`` head named by the type, because fhirpathpy selects
nothing for ``Resource.id`` on a Patient). Composite components are compared the same way,
evaluated against each focus element.

fhirpathpy cannot evaluate ``resolve()`` ("Not implemented: resolve"); for the
``.where(resolve() is T)`` expressions the oracle replaces the filter by
``.where(reference.matches('^([a-z]+://.+/)?T/[id]$'))``, which agrees with the compiled check for
literal references and resolves contained ``#id`` references through ``%resource.contained``.
The ``as`` operator needs a singleton in fhirpathpy ("Expected singleton on left side of 'as'"),
as FHIRPath says; where an expression applies it to a repeating element the failure is listed
and the oracle retries with ``.ofType(T)``, the collection form search indexing means.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

import fhirpathpy
import pytest
from fhirpathpy.models import models

from healthbridge.fhir import jsonformat
from healthbridge.fhir.definitions import Definitions
from healthbridge.fhir.search.fhirpath import branches_for, compile_expression, split_union
from healthbridge.fhir.search.index import Indexer
from tests.fhir.conftest import package_resources, shared_file

pytestmark = pytest.mark.shared_data

_RESOLVE_IS = re.compile(r"\.where\(resolve\(\) is (\w+)\)")
_PAREN_AS = re.compile(r"\(([\w.]+) as (\w+)\)")
_ID = r"[A-Za-z0-9\\-.]{1,64}"
DELIBERATE = {
    "value.as(DateTime) | value.as(Period)": "R4 writes the FHIR type dateTime as DateTime "
    "(Observation code-value-date); fhirpathpy reads it as System.DateTime and selects "
    "nothing, the compiler matches type names case-insensitively and selects valueDateTime",
}
"""Component expressions where the compiled accessor deliberately differs from fhirpathpy."""


def _resolve_is(match: re.Match[str]) -> str:
    literal = f"reference.matches('^([a-z]+://.+/)?{match[1]}/{_ID}(/_history/{_ID})?$')"
    contained = (
        f"(reference.startsWith('#') and "
        f"(%resource.contained.where(resourceType = '{match[1]}').id "
        f"contains reference.substring(1)))"
    )
    return f".where({literal} or {contained})"


def oracle_expression(expression: str, resource_type: str) -> str:
    """The expression fhirpathpy can evaluate for ``resource_type`` (see the module doc)."""
    return _RESOLVE_IS.sub(_resolve_is, " | ".join(branches_for(expression, resource_type)))


@functools.cache
def _oracle(text: str) -> Callable[[dict[str, Any]], list[Any]]:
    compiled = fhirpathpy.compile(text, models["r4"])
    return lambda resource: list(compiled(resource, {"resource": resource}))


def _compare(
    name: str, text: str, got: list[Any], resource: dict[str, Any]
) -> tuple[str | None, str | None]:
    """(fhirpathpy failure, mismatch description) of one selection."""
    try:
        wanted = _oracle(text)(resource)
    except Exception as exc:
        failure = f"{text!r}: {type(exc).__name__}: {str(exc).split(', got')[0]}"
        if "singleton" not in failure:
            return failure, None
        wanted = _oracle(_PAREN_AS.sub(r"\1.ofType(\2)", text))(resource)
        if got != wanted:
            return (
                failure,
                f"{name}: {text!r} (as ofType): compiled {got!r:.300} != {wanted!r:.300}",
            )
        return failure, None
    if got == wanted:
        return None, None
    return None, f"{name}: {text!r}: compiled {got!r:.300} != fhirpathpy {wanted!r:.300}"


def _check_resource(
    indexer: Indexer, resource: dict[str, Any], failures: set[str], mismatches: list[str]
) -> None:
    resource_type = resource["resourceType"]
    for param in indexer.parameters(resource_type):
        if not param.accessor.compiled:
            continue
        name = f"{resource_type}.{param.code} ({resource.get('id')})"
        focus_text = oracle_expression(param.accessor.expression, resource_type)
        checks = [(focus_text, param.accessor(resource, resource))]
        for branch in split_union(focus_text) if param.components else []:
            foci = compile_expression(indexer.definitions, branch, resource_type)(
                resource, resource
            )
            for _, component in param.components:
                if component.expression in DELIBERATE:
                    continue
                got = [value for focus in foci for value in component(focus, resource)]
                checks.append((f"{branch}.select({component.expression})", got))
        for text, got in checks:
            failure, mismatch = _compare(name, text, got, resource)
            if failure:
                failures.add(failure)
            if mismatch:
                mismatches.append(mismatch)


def test_compiled_accessors_select_what_fhirpathpy_selects(definitions: Definitions) -> None:
    path = shared_file("fhir-r4/hl7.fhir.r4.examples-4.0.1.tgz")
    indexer = Indexer(definitions)
    failures: set[str] = set()
    mismatches: list[str] = []
    checked = 0
    for _, raw in package_resources(path):
        resource = jsonformat.loads(raw)
        if not isinstance(resource, dict) or resource.get("resourceType") not in (
            definitions.resource_types
        ):
            continue
        checked += 1
        _check_resource(indexer, resource, failures, mismatches)
    assert checked > 2000
    print(f"\n{checked} example resources; fhirpathpy failures:", *sorted(failures), sep="\n  ")
    assert not mismatches, "\n".join(mismatches[:50]) + f"\n... {len(mismatches)} in all"

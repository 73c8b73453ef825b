"""Invariants of the common existence shapes run as Python predicates and agree with fhirpathpy
(https://hl7.org/fhirpath/#existence, https://hl7.org/fhirpath/#boolean-logic): on hand-made
cases, and on every invariant evaluation made while validating the IPS and Genomics examples."""

from __future__ import annotations

from typing import Any

import pytest

from healthbridge.fhir.definitions import Definitions
from healthbridge.fhir.validation import fhirpath_invariants
from healthbridge.fhir.validation.fhirpath_invariants import (
    Constraint,
    Outcome,
    compile_constraints,
    interpret,
)
from healthbridge.fhir.validation.invariant_shapes import Fallback, compile_shape
from healthbridge.fhir.validation.profiles import ProfileValidator, claimed_profiles
from tests.fhir.validation_profiles.conftest import GENOMICS, IPS, Packages

OBS = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
INSTANCES: list[tuple[Any, str]] = [
    (OBS, "Observation"),
    (OBS | {"valueQuantity": {"value": 1}}, "Observation"),
    (OBS | {"valueString": ""}, "Observation"),
    (OBS | {"dataAbsentReason": {"text": "n/a"}, "valueBoolean": False}, "Observation"),
    (OBS | {"component": [{"code": {}}, {"code": {}, "valueInteger": 0}]}, "Observation"),
    (OBS | {"component": []}, "Observation"),
    (OBS | {"_issued": {"extension": [{"url": "u"}]}}, "Observation"),
    (OBS | {"text": {"status": "generated", "div": "<div/>"}}, "Observation"),
    (OBS | {"text": {"status": "empty"}}, "Observation"),
    ({"fullUrl": "urn:uuid:1", "resource": OBS}, "Bundle.entry"),
    ({"fullUrl": "http://a/Observation/1/_history/2"}, "Bundle.entry"),
    ({"_fullUrl": {"extension": []}}, "Bundle.entry"),
    ({"low": {"value": 1}}, "Range"),
    ({}, "Range"),
    (None, "Range"),
    ("plain", "string"),
]
EXPRESSIONS = [
    "value.exists()",
    "dataAbsentReason.empty() or value.empty()",
    "component.exists() implies (component.value.exists() or component.dataAbsentReason.exists())",
    "component.value.empty() and component.code.exists()",
    "issued.exists().not()",
    "text.`div`.exists()",
    "fullUrl.contains('/_history/').not()",
    "resource.exists() or request.exists() or response.exists()",
    "low.exists() or high.exists() or text.exists()",
    "(low.empty() and high.empty()) implies text.exists()",
    "value.empty() or component.code.where(code.exists()).empty()",
]


def _interpreted(expression: str, focus: Any, base: str) -> Outcome:
    (constraint,) = compile_constraints(
        [{"key": "k", "severity": "error", "expression": expression}]
    )
    return interpret(constraint, focus, base, {"resource": focus, "rootResource": focus})


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_shapes_agree_with_fhirpathpy(expression: str) -> None:
    shape = compile_shape(expression)
    assert shape is not None
    for focus, base in INSTANCES:
        expected = _interpreted(expression, focus, base)
        try:
            truth = shape(focus, base)
        except Fallback:
            continue  # fhirpathpy decides; covered by the guard and contains() cases
        assert (True if truth is None else truth) is expected.passed, (expression, focus)


@pytest.mark.parametrize(
    "expression",
    [
        "where(use = 'home').empty()",
        "(identifier.count() + name.count()) > 0",
        "Patient.name.exists()",
        "a.exists() implies b = 1",
        "%resource.exists()",
        "value.length().exists()",
        "a.exists() xor b.exists()",
    ],
)
def test_other_expressions_are_left_to_fhirpathpy(expression: str) -> None:
    assert compile_shape(expression) is None


def test_contains_on_a_non_string_falls_back() -> None:
    shape = compile_shape("fullUrl.contains('x')")
    assert shape is not None
    with pytest.raises(Fallback):
        shape({"_fullUrl": {"extension": []}}, "Bundle.entry")


def test_guard_decides_only_when_true() -> None:
    """``value.empty() or <anything>`` is true when value is empty; otherwise fhirpathpy runs."""
    shape = compile_shape("value.empty() or component.code.where(code = 'x').empty()")
    assert shape is not None
    assert shape(OBS, "Observation") is True
    with pytest.raises(Fallback):
        shape(OBS | {"valueInteger": 1}, "Observation")


def test_every_evaluation_in_the_package_examples_agrees(
    definitions: Definitions, packages: Packages, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Validating every IPS and Genomics example: each invariant result from a compiled shape
    equals fhirpathpy's on the same node."""
    original = fhirpath_invariants.evaluate
    compared: list[str] = []
    disagreements: list[tuple[str, str]] = []

    def checked(constraint: Constraint, focus: object, base: str, env: Any) -> Outcome:
        found = original(constraint, focus, base, env)
        if constraint.shape is not None:
            compared.append(constraint.expression)
            if found.passed is not interpret(constraint, focus, base, env).passed:
                disagreements.append((constraint.expression, base))
        return found

    monkeypatch.setattr(fhirpath_invariants, "evaluate", checked)
    validator = ProfileValidator(definitions, packages.structures.get, packages.terminology)
    for package in (IPS, GENOMICS):
        for example in packages.examples[package].values():
            validator.validate(example, claimed_profiles(example))
    assert disagreements == []
    assert len(compared) > 500
    assert "text.`div`.exists()" in compared

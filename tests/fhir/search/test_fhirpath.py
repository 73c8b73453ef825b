"""The search-expression compiler: https://hl7.org/fhir/R4/fhirpath.html as used by
https://hl7.org/fhir/R4/searchparameter-definitions.html#SearchParameter.expression.

Unions keep the branch of the resource type (https://hl7.org/fhir/R4/fhirpath.html#union), a
choice element narrowed with ``as``/``ofType`` selects its typed property
(https://hl7.org/fhir/R4/formats.html#choice), ``resolve() is T`` checks the reference target.
"""

from __future__ import annotations

import copy
from decimal import Decimal

import pytest

from healthbridge.fhir.definitions import Definitions
from healthbridge.fhir.search.fhirpath import compile_expression, fallback, split_union

OBSERVATION = {
    "resourceType": "Observation",
    "id": "o1",
    "contained": [{"resourceType": "Patient", "id": "baby"}],
    "subject": {"reference": "Patient/p1"},
    "performer": [{"reference": "#baby"}, {"reference": "Practitioner/x"}],
    "valueQuantity": {"value": Decimal("72.50"), "unit": "kg"},
    "effectivePeriod": {"start": "2020"},
    "component": [
        {"code": {"text": "a"}, "valueQuantity": {"value": 1}},
        {"code": {"text": "b"}, "valueString": "x"},
    ],
}


def test_union_keeps_only_the_branch_of_the_type(definitions: Definitions) -> None:
    accessor = compile_expression(
        definitions, "Patient.name | Practitioner.name | Observation.id", "Observation"
    )
    assert accessor.compiled
    assert accessor(OBSERVATION, OBSERVATION) == ["o1"]


def test_resource_level_paths_apply_to_every_type(definitions: Definitions) -> None:
    accessor = compile_expression(definitions, "Resource.id", "Observation")
    assert accessor(OBSERVATION, OBSERVATION) == ["o1"]


def test_choice_narrowing_forms(definitions: Definitions) -> None:
    for expression in (
        "(Observation.value as Quantity)",
        "Observation.value.as(Quantity)",
        "Observation.value.ofType(Quantity)",
    ):
        accessor = compile_expression(definitions, expression, "Observation")
        assert accessor.compiled
        assert accessor.type_hint == "Quantity"
        assert accessor(OBSERVATION, OBSERVATION) == [OBSERVATION["valueQuantity"]]


def test_an_unnarrowed_choice_selects_every_typed_property(definitions: Definitions) -> None:
    accessor = compile_expression(definitions, "Observation.effective", "Observation")
    assert accessor(OBSERVATION, OBSERVATION) == [{"start": "2020"}]
    assert accessor.type_hint is None


def test_arrays_flatten(definitions: Definitions) -> None:
    accessor = compile_expression(definitions, "Observation.component.code", "Observation")
    assert accessor(OBSERVATION, OBSERVATION) == [{"text": "a"}, {"text": "b"}]
    assert accessor.type_hint == "CodeableConcept"


def test_resolve_is_checks_literal_and_contained_targets(definitions: Definitions) -> None:
    patients = compile_expression(
        definitions, "Observation.performer.where(resolve() is Patient)", "Observation"
    )
    assert patients(OBSERVATION, OBSERVATION) == [{"reference": "#baby"}]
    subject = compile_expression(
        definitions, "Observation.subject.where(resolve() is Patient)", "Observation"
    )
    assert subject(OBSERVATION, OBSERVATION) == [{"reference": "Patient/p1"}]


def test_where_equality_filter(definitions: Definitions) -> None:
    patient = {
        "resourceType": "Patient",
        "telecom": [{"system": "phone", "value": "1"}, {"system": "email", "value": "a@b"}],
    }
    accessor = compile_expression(definitions, "Patient.telecom.where(system='phone')", "Patient")
    assert accessor.compiled
    assert accessor(patient, patient) == [{"system": "phone", "value": "1"}]


def test_union_removes_repeats_but_keeps_precision(definitions: Definitions) -> None:
    resource = {
        "resourceType": "Observation",
        "code": {"text": "x"},
        "component": [{"code": {"text": "x"}}, {"code": {"text": "y"}}],
    }
    accessor = compile_expression(
        definitions, "Observation.code | Observation.component.code", "Observation"
    )
    assert accessor(resource, resource) == [{"text": "x"}, {"text": "y"}]


def test_relative_component_and_percent_resource(definitions: Definitions) -> None:
    component = compile_expression(
        definitions, "value.as(Quantity)", "Observation", relative_to="Observation.component"
    )
    focus = OBSERVATION["component"][0]  # type: ignore[index]
    assert component(focus, OBSERVATION) == [{"value": 1}]
    root = compile_expression(
        definitions, "%resource.id", "Observation", relative_to="Observation.component"
    )
    assert root(focus, OBSERVATION) == ["o1"]


def test_unsupported_expressions_fall_back_to_fhirpathpy(definitions: Definitions) -> None:
    expression = "Observation.value.exists() and Observation.value.empty().not()"
    accessor = compile_expression(definitions, expression, "Observation")
    assert not accessor.compiled
    observation = {"resourceType": "Observation", "valueString": "x"}
    before = copy.deepcopy(observation)
    assert accessor(observation, observation) == [True]
    assert observation == before, "evaluation must not modify the resource"


@pytest.mark.parametrize(
    "patient",
    [
        {},
        {"deceasedBoolean": True},
        {"deceasedBoolean": False},
        {"deceasedDateTime": "2020-01-01"},
    ],
)
def test_deceased_compiles_and_agrees_with_fhirpathpy(
    definitions: Definitions, patient: dict[str, object]
) -> None:
    """Patient ``deceased`` (``X.exists() and X != false``) is evaluated on every Patient
    write: compiled, it must give what FHIRPath's three-valued logic gives."""
    expression = "Patient.deceased.exists() and Patient.deceased != false"
    resource = {"resourceType": "Patient", **patient}
    accessor = compile_expression(definitions, expression, "Patient")
    assert accessor.compiled
    assert accessor(resource, resource) == fallback(expression, "Patient")(resource, resource)


def test_split_union_respects_parentheses_and_quotes() -> None:
    assert split_union("(A.b as X) | A.c.where(d='e|f') | A.g") == [
        "(A.b as X)",
        "A.c.where(d='e|f')",
        "A.g",
    ]


def test_every_r4_expression_compiles(definitions: Definitions) -> None:
    """Every R4 search-parameter expression runs as compiled Python (none needs fhirpathpy)."""
    fallback = set()
    for resource_type in definitions.resource_types:
        for param in definitions.search_parameters(resource_type).values():
            if param.expression and param.type != "special":
                accessor = compile_expression(definitions, param.expression, resource_type)
                if not accessor.compiled:
                    fallback.add(param.expression)
    assert fallback == set()

"""The generated R4 definitions: https://hl7.org/fhir/R4/structuredefinition.html,
https://hl7.org/fhir/R4/searchparameter.html, https://hl7.org/fhir/R4/compartmentdefinition.html
and ``_summary`` (https://hl7.org/fhir/R4/search.html#summary)."""

from __future__ import annotations

import dataclasses
import gzip
import importlib.util
import json
from importlib import resources
from pathlib import Path
from types import ModuleType

import pytest

from healthbridge.fhir.definitions import Definitions, TypeRef, load_definitions
from tests.fhir.conftest import REPO_ROOT, shared_file

DATA_FILES = (
    "structures.json.gz",
    "valuesets.json.gz",
    "search.json.gz",
    "terminology.json.gz",
    "profiles.json.gz",
)


def test_load_definitions_is_cached_and_frozen(definitions: Definitions) -> None:
    assert load_definitions() is definitions
    with pytest.raises(dataclasses.FrozenInstanceError):
        definitions.fhir_version = "5.0.0"  # type: ignore[misc]
    with pytest.raises(TypeError):
        definitions.types["Patient"] = definitions.types["Person"]  # type: ignore[index]


def test_resource_types_are_the_146_concrete_r4_resources(definitions: Definitions) -> None:
    assert len(definitions.resource_types) == 146
    assert definitions.is_resource_type("Patient")
    assert definitions.is_resource_type("MolecularSequence")
    assert not definitions.is_resource_type("DomainResource")
    assert not definitions.is_resource_type("Resource")
    assert not definitions.is_resource_type("HumanName")
    assert not definitions.is_resource_type("patient")


def test_every_datatype_is_present(definitions: Definitions) -> None:
    primitives = {n for n, t in definitions.types.items() if t.kind == "primitive-type"}
    assert len(primitives) == 20
    assert {"base64Binary", "positiveInt", "xhtml", "canonical"} <= primitives
    complex_types = {n for n, t in definitions.types.items() if t.kind == "complex-type"}
    assert {"HumanName", "Quantity", "Dosage", "Extension", "Narrative", "Meta"} <= complex_types
    assert definitions.types["date"].regex is not None


def test_element_lookup(definitions: Definitions) -> None:
    gender = definitions.element("Patient.gender")
    assert gender is not None
    assert (gender.min, gender.max, gender.is_summary) == (0, 1, True)
    assert gender.binding is not None
    assert gender.binding.strength == "required"
    assert gender.binding.value_set == "http://hl7.org/fhir/ValueSet/administrative-gender"
    subject = definitions.element("Observation.subject")
    assert subject is not None
    assert subject.types == (TypeRef("Reference", ("Patient", "Group", "Device", "Location")),)
    active = definitions.element("Patient.active")
    assert active is not None and active.is_modifier
    assert definitions.element("Patient.nope") is None


def test_choice_elements_expand_to_json_names(definitions: Definitions) -> None:
    value = definitions.element("Observation.value[x]")
    assert value is not None and value.is_choice
    names = dict(value.json_names)
    assert names["valueQuantity"] == TypeRef("Quantity")
    assert names["valueCodeableConcept"] == TypeRef("CodeableConcept")
    assert len(names) == 11


def test_content_references(definitions: Definitions) -> None:
    item = definitions.element("Questionnaire.item.item")
    assert item is not None and item.content_reference == "Questionnaire.item"
    link = definitions.element("Bundle.entry.link")
    assert link is not None and link.content_reference == "Bundle.link"
    assert "linkId" in definitions.children("Questionnaire.item")


def test_resource_id_has_the_id_type(definitions: Definitions) -> None:
    """resource.html documents Resource.id as ``id``; the snapshot types it System.String."""
    element = definitions.element("Patient.id")
    assert element is not None and element.types == (TypeRef("id"),)
    nested = definitions.element("Patient.contact.id")
    assert nested is not None and nested.types == (TypeRef("string"),)


def test_summary_and_mandatory_elements(definitions: Definitions) -> None:
    patient = definitions.summary_elements("Patient")
    assert {"id", "meta", "name", "birthDate", "deceasedBoolean", "deceasedDateTime"} <= patient
    assert "contact" not in patient
    assert "text" not in patient
    assert "valueQuantity" in definitions.summary_elements("Observation")
    assert definitions.mandatory_elements("Observation") == {"status", "code"}
    assert definitions.mandatory_elements("Patient") == frozenset()
    assert "active" in definitions.modifier_elements("Patient")


def test_search_parameters(definitions: Definitions) -> None:
    params = definitions.search_parameters("Patient")
    assert {"_id", "_lastUpdated", "_tag", "_text", "name", "birthdate", "gender"} <= set(params)
    birthdate = params["birthdate"]
    assert birthdate.type == "date"
    assert birthdate.expression is not None and "Patient.birthDate" in birthdate.expression
    subject = definitions.search_parameters("Observation")["subject"]
    assert subject.type == "reference" and "Patient" in subject.target
    composite = definitions.search_parameters("Observation")["code-value-quantity"]
    assert composite.type == "composite"
    assert [c.expression for c in composite.component] == ["code", "value.as(Quantity)"]
    component = definitions.search_parameter(composite.component[1].definition)
    assert component is not None and component.code == "value-quantity"
    assert "eq" in component.comparator
    assert definitions.search_parameters("NotAType") == {}


def test_compartments(definitions: Definitions) -> None:
    assert set(definitions.compartments) == {
        "Patient",
        "Encounter",
        "RelatedPerson",
        "Practitioner",
        "Device",
    }
    assert definitions.compartment_params("Patient", "Observation") == ("subject", "performer")
    assert definitions.compartment_params("Patient", "Patient") == ("link",)
    assert definitions.compartment_params("Patient", "ActivityDefinition") == ()
    assert "encounter" in definitions.compartment_params("Encounter", "Observation")
    assert definitions.compartment_params("Encounter", "Encounter") == ("{def}",)
    assert definitions.compartment_params("Device", "Observation") == ("subject", "device")
    assert len(definitions.compartments["Device"]) > 20


def test_value_set_codes(definitions: Definitions) -> None:
    gender = definitions.value_set("http://hl7.org/fhir/ValueSet/administrative-gender|4.0.1")
    assert gender is not None
    assert gender.codes == {"male", "female", "other", "unknown"}
    assert ("http://hl7.org/fhir/administrative-gender", "male") in gender
    assert definitions.value_set("http://hl7.org/fhir/ValueSet/mimetypes") is None


def test_unexpanded_value_sets_are_listed_with_a_reason(definitions: Definitions) -> None:
    assert set(definitions.unexpanded_value_sets) == {
        "http://hl7.org/fhir/ValueSet/mimetypes",
        "http://hl7.org/fhir/ValueSet/ucum-units",
        "http://loinc.org/vs/LL379-9",
    }
    assert all(definitions.unexpanded_value_sets.values())


def test_every_required_binding_has_codes_or_is_listed(definitions: Definitions) -> None:
    for type_def in definitions.types.values():
        for element in type_def.elements.values():
            binding = element.binding
            if binding is None or binding.strength != "required":
                continue
            known = definitions.value_set(binding.value_set) is not None
            assert known or binding.value_set in definitions.unexpanded_value_sets, element.path


def test_generated_data_is_small() -> None:
    data = resources.files("healthbridge.fhir.definitions.data")
    total = sum(len(data.joinpath(name).read_bytes()) for name in DATA_FILES)
    assert total < 3 * 1024 * 1024


def _generator() -> ModuleType:
    path = REPO_ROOT / "scripts" / "generate_definitions.py"
    spec = importlib.util.spec_from_file_location("generate_definitions", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.shared_data
def test_committed_data_matches_the_generator() -> None:
    """Regenerating from ../shared/data/fhir-r4 gives exactly the committed package data."""
    core = shared_file("fhir-r4/hl7.fhir.r4.core-4.0.1.tgz")
    expansions = shared_file("fhir-r4/hl7.fhir.r4.expansions-4.0.1.tgz")
    payloads = _generator().build(Path(core), Path(expansions))
    data = resources.files("healthbridge.fhir.definitions.data")
    assert set(payloads) == set(DATA_FILES)
    for name, payload in payloads.items():
        committed = json.loads(gzip.decompress(data.joinpath(name).read_bytes()))
        assert committed == json.loads(json.dumps(payload)), f"{name} is stale: regenerate it"

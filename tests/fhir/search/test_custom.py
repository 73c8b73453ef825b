"""Custom SearchParameter resources (https://hl7.org/fhir/R4/searchparameter.html) become
parameters the indexer and parser use like the core ones."""

from __future__ import annotations

from typing import Any

import pytest

from healthbridge.fhir.definitions import load_definitions
from healthbridge.fhir.errors import Unprocessable
from healthbridge.fhir.search import Indexer
from healthbridge.fhir.search.custom import custom_parameter
from healthbridge.fhir.search.parse import SearchParser
from healthbridge.fhir.search.values import TokenValue

BIRTHPLACE: dict[str, Any] = {
    "resourceType": "SearchParameter",
    "url": "http://example.org/SearchParameter/patient-birthplace-city",
    "name": "birthplace-city",
    "status": "active",
    "code": "birthplace-city",
    "base": ["Patient"],
    "type": "token",
    "expression": "Patient.extension.where(url = "
    "'http://hl7.org/fhir/StructureDefinition/patient-birthPlace').value.city",
}
PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "extension": [
        {
            "url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
            "valueAddress": {"city": "Lyon"},
        }
    ],
}


def test_a_custom_parameter_is_indexed_and_parsed_like_a_core_one() -> None:
    core = load_definitions()
    param = custom_parameter(BIRTHPLACE, core)
    definitions = core.with_search_parameters([param])
    rows = Indexer(definitions).index_rows(PATIENT)
    assert [r.value for r in rows if r.param == "birthplace-city"] == [TokenValue(None, "Lyon")]
    query = SearchParser(definitions).parse("Patient", [("birthplace-city", "Lyon")], strict=True)
    assert query.clauses[0].param == "birthplace-city"
    assert "birthplace-city" not in core.search_parameters("Patient")  # core is untouched


def test_a_parameter_on_resource_applies_to_every_type() -> None:
    core = load_definitions()
    everywhere = BIRTHPLACE | {
        "code": "ext-url",
        "base": ["Resource"],
        "expression": "extension.url",
    }
    definitions = core.with_search_parameters([custom_parameter(everywhere, core)])
    assert "ext-url" in definitions.search_parameters("Observation")
    assert "ext-url" in definitions.search_parameters("Patient")


@pytest.mark.parametrize(
    ("change", "element"),
    [
        ({"url": None}, "url"),
        ({"code": "_secret"}, "code"),
        ({"code": "name"}, "code"),  # Patient already has "name"
        ({"type": "fuzzy"}, "type"),
        ({"base": []}, "base"),
        ({"base": ["Pateint"]}, "base"),
        ({"target": ["Nope"], "type": "reference"}, "target"),
        ({"expression": None}, "expression"),
        ({"expression": "Patient.name.where("}, "expression"),
        ({"expression": "Patient..name"}, "expression"),
        ({"expression": "Patient.name)"}, "expression"),
        (
            {"type": "composite", "component": [{"definition": "http://x/y", "expression": "a"}]},
            "component[0]",
        ),
    ],
)
def test_unusable_definitions_are_refused_naming_the_element(
    change: dict[str, Any], element: str
) -> None:
    resource = {k: v for k, v in (BIRTHPLACE | change).items() if v is not None}
    with pytest.raises(Unprocessable) as info:
        custom_parameter(resource, load_definitions())
    assert info.value.issues[0].expression == (f"SearchParameter.{element}",)

"""FHIRPath Patch (https://hl7.org/fhir/R4/fhirpatch.html): every case of the official
``../shared/data/fhir-patch/fhir-patch-tests.xml`` (FHIR XML, converted to JSON), plus the
spec's rules the cases do not exercise."""

from __future__ import annotations

import copy
import xml.etree.ElementTree as ET
from decimal import Decimal
from functools import cache
from typing import Any

import pytest

from healthbridge.fhir.definitions import Definitions, load_definitions
from healthbridge.fhir.errors import FhirError, InvalidRequest, Unprocessable
from healthbridge.fhir.patch import apply_fhirpath_patch
from tests.fhir.conftest import SHARED_DATA, shared_file
from tests.support.fhir_xml import resource_from_element, resource_from_xml

CASES_FILE = "fhir-patch/fhir-patch-tests.xml"


@cache
def _case_elements() -> dict[str, ET.Element]:
    path = SHARED_DATA / CASES_FILE
    if not path.exists():
        return {}
    return {case.attrib["name"]: case for case in ET.parse(path).getroot().iter("case")}


def _only_child(case: ET.Element, tag: str) -> ET.Element:
    holder = case.find(tag)
    assert holder is not None and len(holder) == 1, f"<{tag}> must hold one resource"
    return holder[0]


@pytest.mark.shared_data
@pytest.mark.parametrize("name", list(_case_elements()) or ["(no cases)"])
def test_the_official_case(name: str, definitions: Definitions) -> None:
    """One case: the expected output, or an error (and the input left as it was)."""
    shared_file(CASES_FILE)  # skips, with the reason, without ../shared/data
    case = _case_elements()[name]
    resource = resource_from_element(_only_child(case, "input"), definitions)
    parameters = resource_from_element(_only_child(case, "diff"), definitions)
    before = copy.deepcopy(resource)
    error = case.find("error")
    if error is None:
        expected = resource_from_element(_only_child(case, "output"), definitions)
        assert apply_fhirpath_patch(resource, parameters, definitions) == expected
    else:
        with pytest.raises(Unprocessable) as raised:
            apply_fhirpath_patch(resource, parameters, definitions)
        assert raised.value.issues[0].expression == ("Parameters.parameter[0]",)
    assert resource == before, "the input was modified"


@pytest.mark.shared_data
def test_all_the_official_cases_are_run() -> None:
    shared_file(CASES_FILE)
    assert len(_case_elements()) >= 33


# -- the spec's rules, beyond the official cases ---------------------------------------------
DEFS = load_definitions()


def operation(kind: str, path: str, **parts: Any) -> dict[str, Any]:
    """One ``operation`` parameter; a part is a string (valueString), an int (valueInteger),
    a ``("valueX", value)`` pair or a dict of the part's value keys."""
    part: list[dict[str, Any]] = [
        {"name": "type", "valueCode": kind},
        {"name": "path", "valueString": path},
    ]
    for name, value in parts.items():
        if isinstance(value, tuple):
            part.append({"name": name, value[0]: value[1]})
        elif isinstance(value, str):
            part.append({"name": name, "valueString": value})
        elif isinstance(value, int):
            part.append({"name": name, "valueInteger": value})
        else:
            part.append({"name": name, **value})
    return {"name": "operation", "part": part}


def patch(resource: dict[str, Any], *operations: dict[str, Any]) -> dict[str, Any]:
    return apply_fhirpath_patch(
        resource, {"resourceType": "Parameters", "parameter": list(operations)}, DEFS
    )


PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "p1",
    "active": True,
    "name": [{"family": "Ash", "given": ["Ann", "Bea"]}, {"use": "nickname", "text": "Annie"}],
    "identifier": [{"use": "official", "value": "1"}, {"use": "usual", "value": "2"}],
    "deceasedBoolean": False,
}


def test_where_selects_one_element_to_replace() -> None:
    patched = patch(
        PATIENT,
        operation(
            "replace", "Patient.identifier.where(use = 'usual').value", value=("valueString", "9")
        ),
    )
    assert patched["identifier"][1] == {"use": "usual", "value": "9"}
    assert patched["identifier"][0] == PATIENT["identifier"][0]


def test_list_functions_and_primitive_lists() -> None:
    patched = patch(
        PATIENT,
        operation("delete", "Patient.name.first().given[0]"),
        operation("insert", "Patient.name.last().given", value=("valueString", "Cy"), index=0),
        operation("move", "Patient.identifier", source=1, destination=0),
    )
    assert patched["name"] == [
        {"family": "Ash", "given": ["Bea"]},
        {"use": "nickname", "text": "Annie", "given": ["Cy"]},
    ]
    assert [i["value"] for i in patched["identifier"]] == ["2", "1"]


def test_a_choice_element_changes_type_on_replace_and_is_named_on_add() -> None:
    replaced = patch(
        PATIENT, operation("replace", "Patient.deceased", value=("valueDateTime", "2020-01-01"))
    )
    assert replaced["deceasedDateTime"] == "2020-01-01" and "deceasedBoolean" not in replaced
    added = patch(
        {"resourceType": "Observation", "status": "final"},
        operation(
            "add", "Observation", name="value", value={"valueQuantity": {"value": Decimal("72.50")}}
        ),
    )
    assert added["valueQuantity"] == {"value": Decimal("72.50")}


def test_primitive_extensions_travel_with_the_value() -> None:
    extension = {"url": "http://example.org/x", "valueString": "y"}
    patched = patch(
        PATIENT,
        operation(
            "insert",
            "Patient.name[0].given",
            value={"valueString": "Zed", "_valueString": {"extension": [extension]}},
            index=1,
        ),
    )
    assert patched["name"][0]["given"] == ["Ann", "Zed", "Bea"]
    assert patched["name"][0]["_given"] == [None, {"extension": [extension]}, None]
    deleted = patch(patched, operation("delete", "Patient.name[0].given[1]"))
    assert deleted["name"][0] == {"family": "Ash", "given": ["Ann", "Bea"]}
    on_primitive = patch(
        PATIENT,
        operation("add", "Patient.active", name="extension", value={"valueExtension": extension}),
    )
    assert on_primitive["_active"] == {"extension": [extension]} and on_primitive["active"] is True


def test_extension_function_and_contained_resources() -> None:
    resource = {
        "resourceType": "Patient",
        "extension": [
            {"url": "http://a", "valueString": "1"},
            {"url": "http://b", "valueString": "2"},
        ],
    }
    patched = patch(resource, operation("delete", "Patient.extension('http://a')"))
    assert patched["extension"] == [{"url": "http://b", "valueString": "2"}]
    org = {"resourceType": "Organization", "id": "o1", "name": "Acme"}
    contained = patch(
        PATIENT, operation("add", "Patient", name="contained", value={"resource": org})
    )
    assert contained["contained"] == [org]
    renamed = patch(
        contained,
        operation(
            "replace", "Patient.contained.ofType(Organization).name", value=("valueString", "Apex")
        ),
    )
    assert renamed["contained"][0]["name"] == "Apex"


@pytest.mark.parametrize(
    ("operations", "error"),
    [
        (
            [operation("replace", "Patient.identifier.value", value=("valueString", "x"))],
            Unprocessable,
        ),
        (
            [operation("replace", "Patient.birthDate", value=("valueDate", "2000-01-01"))],
            Unprocessable,
        ),
        ([operation("delete", "Patient.identifier")], Unprocessable),  # two elements
        (
            [operation("add", "Patient", name="active", value=("valueBoolean", False))],
            Unprocessable,
        ),
        ([operation("add", "Patient", name="colour", value=("valueString", "red"))], Unprocessable),
        ([operation("add", "Patient", name="gender", value=("valueInteger", 3))], Unprocessable),
        (
            [operation("insert", "Patient.identifier", value={"valueIdentifier": {}}, index=3)],
            Unprocessable,
        ),
        ([operation("move", "Patient.identifier", source=0, destination=2)], Unprocessable),
        (
            [operation("insert", "Patient.active", value=("valueBoolean", True), index=0)],
            Unprocessable,
        ),
        ([operation("replace", "Patient", value=("valueString", "x"))], Unprocessable),
        ([operation("delete", "Patient.name.resolve()")], Unprocessable),
        ([operation("delete", "Patient.name | Patient.identifier")], Unprocessable),
        ([operation("delete", "Observation.status")], Unprocessable),
        ([operation("delete", "Patient.name.where(")], InvalidRequest),
        ([operation("delete", "Patient..name")], InvalidRequest),
        ([operation("frobnicate", "Patient.name")], InvalidRequest),
        ([operation("replace", "Patient.active")], InvalidRequest),  # no value
        ([operation("delete", "Patient.active", index=1)], InvalidRequest),
        (
            [operation("insert", "Patient.name", value=("valueHumanName", {}), index=-1)],
            InvalidRequest,
        ),
        ([operation("add", "Patient", name="gender", value={"valueFoo": "x"})], InvalidRequest),
        ([{"name": "op", "part": []}], InvalidRequest),
    ],
)
def test_bad_patches(operations: list[dict[str, Any]], error: type[FhirError]) -> None:
    before = copy.deepcopy(PATIENT)
    with pytest.raises(error) as raised:
        patch(PATIENT, *operations)
    assert raised.value.issues[0].expression[0].startswith("Parameters.parameter[0]")
    assert before == PATIENT


@pytest.mark.parametrize(
    "body", [[], {"resourceType": "Patient"}, {"resourceType": "Parameters", "parameter": {}}]
)
def test_not_a_parameters_resource(body: Any) -> None:
    with pytest.raises(InvalidRequest):
        apply_fhirpath_patch(PATIENT, body, DEFS)


def test_delete_of_nothing_is_fine_and_empty_parents_go() -> None:
    assert patch(PATIENT, operation("delete", "Patient.birthDate")) == PATIENT
    assert patch(PATIENT, operation("delete", "Patient.name.where(use = 'official')")) == PATIENT
    patched = patch(
        PATIENT,
        operation("delete", "Patient.name[1].use"),
        operation("delete", "Patient.name[1].text"),
    )
    assert patched["name"] == [PATIENT["name"][0]]


def test_the_xml_converter() -> None:
    """Lists by cardinality, typed primitives, ``_x`` for primitive extensions."""
    resource = resource_from_xml(
        '<Observation xmlns="http://hl7.org/fhir"><status value="final"/>'
        '<code><text value="t"/></code><valueQuantity><value value="72.50"/></valueQuantity>'
        '<component><code><text value="c"/></code><valueInteger value="3"/></component>'
        '<component><code><text value="d"/></code><valueBoolean value="true"/></component>'
        "</Observation>",
        DEFS,
    )
    assert resource == {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "t"},
        "valueQuantity": {"value": Decimal("72.50")},
        "component": [
            {"code": {"text": "c"}, "valueInteger": 3},
            {"code": {"text": "d"}, "valueBoolean": True},
        ],
    }

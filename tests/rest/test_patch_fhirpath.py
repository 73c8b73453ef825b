"""PATCH with FHIRPath Patch (https://hl7.org/fhir/R4/http.html#patch,
https://hl7.org/fhir/R4/fhirpatch.html): a Parameters body sent as FHIR JSON, on every backend."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

FHIR_JSON = {"Content-Type": "application/fhir+json"}
PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "p1",
    "active": True,
    "name": [{"family": "Ash", "given": ["Ann"]}],
    "birthDate": "1980-02-29",
}


def operation(kind: str, path: str, *parts: dict[str, Any]) -> dict[str, Any]:
    head = [{"name": "type", "valueCode": kind}, {"name": "path", "valueString": path}]
    return {"name": "operation", "part": head + list(parts)}


def parameters(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": list(operations)}


def patch(client: TestClient, body: Any, **headers: str) -> Any:
    return client.patch("/fhir/Patient/p1", json=body, headers=FHIR_JSON | headers)


def test_a_fhirpath_patch_makes_the_next_version(client: TestClient) -> None:
    assert client.put("/fhir/Patient/p1", json=PATIENT).status_code == 201
    body = parameters(
        operation("replace", "Patient.name[0].family", {"name": "value", "valueString": "Birch"}),
        operation(
            "add",
            "Patient",
            {"name": "name", "valueString": "gender"},
            {"name": "value", "valueCode": "female"},
        ),
        operation("delete", "Patient.active"),
        operation(
            "insert",
            "Patient.name",
            {"name": "value", "valueHumanName": {"use": "nickname", "text": "Annie"}},
            {"name": "index", "valueInteger": 1},
        ),
    )
    answer = patch(client, body, **{"If-Match": 'W/"1"'})
    assert answer.status_code == 200, answer.text
    assert answer.headers["ETag"] == 'W/"2"'
    patched = answer.json()
    assert patched["name"] == [
        {"family": "Birch", "given": ["Ann"]},
        {"use": "nickname", "text": "Annie"},
    ]
    assert patched["gender"] == "female" and "active" not in patched
    assert patched["meta"]["versionId"] == "2"
    assert client.get("/fhir/Patient/p1").json()["name"][0]["family"] == "Birch"
    assert client.get("/fhir/Patient?family=birch").json()["total"] == 1  # indexes follow


def test_application_json_carries_a_fhirpath_patch_too(client: TestClient) -> None:
    assert client.put("/fhir/Patient/p1", json=PATIENT).status_code == 201
    body = parameters(operation("delete", "Patient.birthDate"))
    answer = patch(client, body, **{"Content-Type": "application/json; charset=utf-8"})
    assert answer.status_code == 200, answer.text
    assert "birthDate" not in answer.json()


def test_failed_fhirpath_patches_store_nothing(client: TestClient) -> None:
    assert client.put("/fhir/Patient/p1", json=PATIENT).status_code == 201
    value = {"name": "value", "valueBoolean": False}
    cases: list[tuple[Any, dict[str, str], int]] = [
        (parameters(operation("replace", "Patient.active", value)), {"If-Match": 'W/"9"'}, 412),
        (parameters(operation("replace", "Patient.gender", value)), {}, 422),  # no such element
        (parameters(operation("replace", "Patient.birthDate", value)), {}, 422),  # wrong type
        (parameters(operation("replace", "Patient.name.given.where(", value)), {}, 400),
        (parameters(operation("delete", "Patient.name[0].family")), {}, 200),  # the control
        (parameters(operation("frobnicate", "Patient.active")), {}, 400),
        ({"resourceType": "Patient"}, {}, 400),
        (
            parameters(
                operation("delete", "Patient.active"),
                operation("replace", "Patient.id", {"name": "value", "valueId": "p2"}),
            ),
            {},
            422,
        ),
        (
            parameters(
                operation(
                    "replace", "Patient.birthDate", {"name": "value", "valueDate": "yesterday"}
                )
            ),
            {},
            422,
        ),
    ]
    for body, headers, status in cases:
        answer = patch(client, body, **headers)
        assert answer.status_code == status, (body, answer.text)
        if status != 200:
            outcome = answer.json()
            assert outcome["resourceType"] == "OperationOutcome", answer.text
            assert outcome["issue"][0]["diagnostics"]
    stored = client.get("/fhir/Patient/p1").json()
    assert stored["meta"]["versionId"] == "2"  # only the control went through
    assert stored["active"] is True and stored["birthDate"] == "1980-02-29"


def test_a_failed_operation_is_named(client: TestClient) -> None:
    assert client.put("/fhir/Patient/p1", json=PATIENT).status_code == 201
    body = parameters(
        operation("delete", "Patient.active"),
        operation(
            "insert",
            "Patient.name",
            {"name": "value", "valueHumanName": {"text": "x"}},
            {"name": "index", "valueInteger": 5},
        ),
    )
    answer = patch(client, body)
    assert answer.status_code == 422, answer.text
    issue = answer.json()["issue"][0]
    assert issue["expression"] == ["Parameters.parameter[1]"]
    assert "out of range" in issue["diagnostics"]
    assert client.get("/fhir/Patient/p1").json()["active"] is True


def test_media_types_and_bodies(client: TestClient) -> None:
    assert client.put("/fhir/Patient/p1", json=PATIENT).status_code == 201
    delete = parameters(operation("delete", "Patient.active"))
    as_xml = client.patch(
        "/fhir/Patient/p1", content=b"<Parameters/>", headers={"Content-Type": "application/xml"}
    )
    assert as_xml.status_code == 415
    json_patch_list = [{"op": "remove", "path": "/active"}]
    assert patch(client, json_patch_list).status_code == 415  # a JSON Patch needs its type
    as_json_patch = patch(client, delete, **{"Content-Type": "application/json-patch+json"})
    assert as_json_patch.status_code == 400
    assert client.patch("/fhir/Patient/p1", content=b"{", headers=FHIR_JSON).status_code == 400
    assert client.get("/fhir/Patient/p1").json()["meta"]["versionId"] == "1"
    assert client.patch("/fhir/Patient/nobody", json=delete, headers=FHIR_JSON).status_code == 404

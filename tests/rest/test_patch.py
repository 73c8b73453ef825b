"""PATCH with JSON Patch (https://hl7.org/fhir/R4/http.html#patch), on every backend."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

JSON_PATCH = {"Content-Type": "application/json-patch+json"}
PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "p1",
    "active": True,
    "name": [{"family": "Ash"}],
    "birthDate": "1980-02-29",
}


def patch(client: TestClient, body: Any, **headers: str) -> Any:
    return client.patch("/fhir/Patient/p1", json=body, headers=JSON_PATCH | headers)


def test_a_json_patch_makes_the_next_version(client: TestClient) -> None:
    assert client.put("/fhir/Patient/p1", json=PATIENT).status_code == 201
    answer = patch(
        client,
        [
            {"op": "test", "path": "/name/0/family", "value": "Ash"},
            {"op": "replace", "path": "/name/0/family", "value": "Birch"},
            {"op": "remove", "path": "/active"},
            {"op": "add", "path": "/gender", "value": "female"},
        ],
        **{"If-Match": 'W/"1"'},
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["ETag"] == 'W/"2"'
    body = answer.json()
    assert body["name"] == [{"family": "Birch"}] and body["gender"] == "female"
    assert "active" not in body and body["meta"]["versionId"] == "2"
    assert client.get("/fhir/Patient/p1").json()["name"][0]["family"] == "Birch"
    assert client.get("/fhir/Patient?family=birch").json()["total"] == 1  # indexes follow


def test_patch_errors_store_nothing(client: TestClient) -> None:
    assert client.put("/fhir/Patient/p1", json=PATIENT).status_code == 201
    cases = [
        ([{"op": "replace", "path": "/active", "value": False}], {"If-Match": 'W/"9"'}, 412),
        ([{"op": "test", "path": "/active", "value": False}], {}, 422),
        ([{"op": "remove", "path": "/nothing"}], {}, 422),
        ([{"op": "replace", "path": "/id", "value": "p2"}], {}, 422),
        ([{"op": "replace", "path": "/birthDate", "value": "yesterday"}], {}, 422),
        ([{"op": "add", "path": "/colour", "value": "red"}], {}, 422),
        ({"op": "add"}, {}, 400),
        ([{"op": "frobnicate", "path": "/a"}], {}, 400),
    ]
    for body, headers, status in cases:
        answer = patch(client, body, **headers)
        assert answer.status_code == status, (body, answer.text)
        assert answer.json()["resourceType"] == "OperationOutcome"
    assert client.get("/fhir/Patient/p1").json()["meta"]["versionId"] == "1"


def test_patch_needs_json_patch_and_a_live_resource(client: TestClient) -> None:
    replace = [{"op": "replace", "path": "/active", "value": False}]
    assert patch(client, replace).status_code == 404
    assert client.put("/fhir/Patient/p1", json=PATIENT).status_code == 201
    fhir_json = client.patch(
        "/fhir/Patient/p1", json=replace, headers={"Content-Type": "application/fhir+json"}
    )
    assert fhir_json.status_code == 415
    malformed = client.patch("/fhir/Patient/p1", content=b"[{", headers=JSON_PATCH)
    assert malformed.status_code == 400
    assert client.delete("/fhir/Patient/p1").status_code in (200, 204)
    assert patch(client, replace).status_code == 410

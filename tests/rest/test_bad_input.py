"""Hostile and malformed input gets a clear OperationOutcome with the right status and path,
never a 500, and nothing stored changes. https://hl7.org/fhir/R4/http.html#2.21.0.4 and
https://hl7.org/fhir/R4/json.html; ../shared/SECURITY.md "Hostile input"."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from tests.rest.conftest import make_client

FHIR_JSON = {"Content-Type": "application/fhir+json"}
GOOD = b'{"resourceType":"Patient","id":"p1","gender":"female"}'


def put_raw(client: TestClient, raw: bytes, rid: str = "p1") -> object:
    return client.put(f"/fhir/Patient/{rid}", content=raw, headers=FHIR_JSON)


CASES: list[tuple[str, bytes, int, str | None]] = [
    ("malformed json", b'{"resourceType": "Patient", ', 400, None),
    ("not an object", b'["Patient"]', 400, None),
    ("wrong resourceType", b'{"resourceType":"Observation","id":"p1"}', 400, "resourceType"),
    ("unknown resourceType", b'{"resourceType":"Patientt","id":"p1"}', 400, "resourceType"),
    (
        "unknown element",
        b'{"resourceType":"Patient","id":"p1","colour":"red"}',
        400,
        "Patient.colour",
    ),
    ("null value", b'{"resourceType":"Patient","id":"p1","gender":null}', 400, "Patient.gender"),
    ("empty string", b'{"resourceType":"Patient","id":"p1","gender":""}', 400, "Patient.gender"),
    ("empty array", b'{"resourceType":"Patient","id":"p1","name":[]}', 400, "Patient.name"),
    (
        "empty object",
        b'{"resourceType":"Patient","id":"p1","maritalStatus":{}}',
        400,
        "Patient.maritalStatus",
    ),
    (
        "NUL character",
        b'{"resourceType":"Patient","id":"p1","name":[{"family":"a\\u0000b"}]}',
        400,
        "Patient.name[0].family",
    ),
    (
        "lone surrogate",
        b'{"resourceType":"Patient","id":"p1","name":[{"family":"\\ud800"}]}',
        400,
        None,
    ),
    (
        "invalid date",
        b'{"resourceType":"Patient","id":"p1","birthDate":"2023-02-30"}',
        400,
        "Patient.birthDate",
    ),
    ("bad code", b'{"resourceType":"Patient","id":"p1","gender":"robot"}', 400, "Patient.gender"),
    (
        "boolean as string",
        b'{"resourceType":"Patient","id":"p1","active":"true"}',
        400,
        "Patient.active",
    ),
    (
        "array where single",
        b'{"resourceType":"Patient","id":"p1","gender":["female"]}',
        400,
        "Patient.gender",
    ),
    (
        "huge decimal",
        b'{"resourceType":"Observation","id":"p1","status":"final","code":{"text":"x"},'
        b'"valueQuantity":{"value":1e400}}',
        400,
        "Observation.value.ofType(Quantity).value",
    ),
    (
        "integer out of range",
        b'{"resourceType":"Patient","id":"p1","multipleBirthInteger":99999999999999999999}',
        400,
        "Patient.multipleBirth.ofType(integer)",
    ),
    (
        "script in narrative",
        b'{"resourceType":"Patient","id":"p1","text":{"status":"generated",'
        b'"div":"<div xmlns=\\"http://www.w3.org/1999/xhtml\\"><script>alert(1)</script></div>"}}',
        400,
        "Patient.text.div",
    ),
]


@pytest.mark.parametrize(("name", "raw", "status", "path"), CASES, ids=[c[0] for c in CASES])
def test_rejected_with_outcome_and_nothing_changes(
    client: TestClient, name: str, raw: bytes, status: int, path: str | None
) -> None:
    assert put_raw(client, GOOD).status_code == 201
    url_type = "Observation" if name == "huge decimal" else "Patient"
    response = client.put(f"/fhir/{url_type}/p1", content=raw, headers=FHIR_JSON)
    assert response.status_code == status, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["severity"] in ("error", "fatal")
    if path is not None:
        expressions = [e for i in outcome["issue"] for e in i.get("expression", [])]
        assert any(e == path or e.startswith(path) for e in expressions), outcome
    current = client.get("/fhir/Patient/p1")
    assert current.json()["meta"]["versionId"] == "1"
    assert current.json()["gender"] == "female"


def test_string_over_one_megabyte_is_rejected(client: TestClient) -> None:
    big = "x" * (1024 * 1024 + 1)
    response = client.post(
        "/fhir/Patient",
        json={"resourceType": "Patient", "name": [{"family": big}]},
        headers=FHIR_JSON,
    )
    assert response.status_code == 400
    assert "Patient.name[0].family" in response.json()["issue"][0]["expression"]


def test_deep_nesting_is_rejected_quickly(client: TestClient) -> None:
    deep = b'{"resourceType":"Patient","extension":' + b"[" * 5000 + b"]" * 5000 + b"}"
    response = client.post("/fhir/Patient", content=deep, headers=FHIR_JSON)
    assert response.status_code == 400
    nested = {"url": "http://x", "valueString": "leaf"}
    for _ in range(200):
        nested = {"url": "http://x", "extension": [nested]}
    response = client.post(
        "/fhir/Patient", json={"resourceType": "Patient", "extension": [nested]}, headers=FHIR_JSON
    )
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"


def test_body_over_limit_is_413_before_parsing(tmp_path: object) -> None:
    with make_client("memory", tmp_path, max_body_bytes=2048) as small:  # type: ignore[arg-type]
        response = small.post("/fhir/Patient", content=b"{" * 4096, headers=FHIR_JSON)
        assert response.status_code == 413
        assert response.json()["issue"][0]["code"] == "too-costly"


def test_unsupported_media_type(client: TestClient) -> None:
    response = client.post(
        "/fhir/Patient", content=b"<Patient/>", headers={"Content-Type": "application/fhir+xml"}
    )
    assert response.status_code == 415
    assert response.json()["resourceType"] == "OperationOutcome"
    missing = client.post("/fhir/Patient", content=GOOD)
    assert missing.status_code == 415


def test_not_acceptable_formats(client: TestClient) -> None:
    assert client.get("/fhir/metadata?_format=xml").status_code == 406
    assert (
        client.get("/fhir/metadata", headers={"Accept": "application/fhir+xml"}).status_code == 406
    )
    for ok in ["application/fhir+json", "application/json", "*/*", "text/html,*/*;q=0.8"]:
        assert client.get("/fhir/metadata", headers={"Accept": ok}).status_code == 200, ok
    assert client.get("/fhir/metadata?_format=json").status_code == 200
    put_raw(client, GOOD)
    assert client.get("/fhir/Patient/p1?_format=xml").status_code == 406


def test_empty_body(client: TestClient) -> None:
    response = client.post("/fhir/Patient", content=b"", headers=FHIR_JSON)
    assert response.status_code == 400


def test_method_override_is_not_honoured(client: TestClient) -> None:
    put_raw(client, GOOD)
    response = client.post("/fhir/Patient/p1", headers={"X-HTTP-Method-Override": "DELETE"})
    assert response.status_code == 405
    assert client.get("/fhir/Patient/p1").status_code == 200


def test_no_stack_traces_in_errors(client: TestClient) -> None:
    response = client.post("/fhir/Patient", content=b'{"resourceType":', headers=FHIR_JSON)
    assert b"Traceback" not in response.content
    assert b".py" not in response.content

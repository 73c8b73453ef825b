"""create, read, vread, update, delete: https://hl7.org/fhir/R4/http.html#read, #vread, #create,
#update, #delete, on every backend."""

from __future__ import annotations

import json

from starlette.testclient import TestClient

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def patient(**extra: object) -> dict[str, object]:
    body: dict[str, object] = {
        "resourceType": "Patient",
        "name": [{"family": "Okafor", "given": ["Amara"]}],
        "gender": "female",
        "birthDate": "1980-02-29",
    }
    body.update(extra)
    return body


def test_create_assigns_id_and_meta_and_headers(client: TestClient) -> None:
    body = patient(
        id="client-chosen", meta={"versionId": "99", "lastUpdated": "2001-01-01T00:00:00Z"}
    )
    response = client.post("/fhir/Patient", json=body, headers=FHIR_JSON)
    assert response.status_code == 201
    created = response.json()
    assert created["id"] != "client-chosen"
    assert created["meta"]["versionId"] == "1"
    assert created["meta"]["lastUpdated"] != "2001-01-01T00:00:00Z"
    assert response.headers["etag"] == 'W/"1"'
    assert response.headers["location"].endswith(f"/fhir/Patient/{created['id']}/_history/1")
    assert response.headers["last-modified"].endswith("GMT")
    assert response.headers["content-type"].startswith("application/fhir+json")
    assert response.headers["cache-control"] == "no-store"


def test_read_returns_the_stored_bytes(client: TestClient) -> None:
    created = client.post("/fhir/Patient", json=patient(), headers=FHIR_JSON)
    read = client.get(f"/fhir/Patient/{created.json()['id']}")
    assert read.status_code == 200
    assert read.content == created.content
    assert read.headers["etag"] == 'W/"1"'


def test_decimal_precision_is_kept(client: TestClient) -> None:
    raw = (
        b'{"resourceType":"Observation","status":"final","code":{"text":"weight"},'
        b'"valueQuantity":{"value":72.50,"unit":"kg"}}'
    )
    created = client.post("/fhir/Observation", content=raw, headers=FHIR_JSON)
    assert created.status_code == 201, created.text
    read = client.get(f"/fhir/Observation/{created.json()['id']}")
    assert b'"value":72.50' in read.content


def test_update_makes_a_new_version(client: TestClient) -> None:
    pid = client.post("/fhir/Patient", json=patient(), headers=FHIR_JSON).json()["id"]
    response = client.put(
        f"/fhir/Patient/{pid}", json=patient(id=pid, gender="other"), headers=FHIR_JSON
    )
    assert response.status_code == 200
    assert response.json()["meta"]["versionId"] == "2"
    assert response.headers["etag"] == 'W/"2"'
    assert client.get(f"/fhir/Patient/{pid}").json()["gender"] == "other"
    old = client.get(f"/fhir/Patient/{pid}/_history/1")
    assert old.status_code == 200
    assert old.json()["gender"] == "female"


def test_update_as_create_with_client_id(client: TestClient) -> None:
    response = client.put("/fhir/Patient/mrn-123", json=patient(id="mrn-123"), headers=FHIR_JSON)
    assert response.status_code == 201
    assert response.json()["id"] == "mrn-123"
    assert response.headers["location"].endswith("/fhir/Patient/mrn-123/_history/1")


def test_update_body_id_must_match_url(client: TestClient) -> None:
    response = client.put("/fhir/Patient/1", json=patient(id="2"), headers=FHIR_JSON)
    assert response.status_code == 400
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["expression"] == ["Patient.id"]
    assert client.get("/fhir/Patient/1").status_code == 404


def test_update_without_body_id_is_rejected(client: TestClient) -> None:
    response = client.put("/fhir/Patient/1", json=patient(), headers=FHIR_JSON)
    assert response.status_code == 400
    assert response.json()["issue"][0]["code"] == "required"


def test_delete_then_read_is_gone_and_history_keeps_versions(client: TestClient) -> None:
    pid = client.post("/fhir/Patient", json=patient(), headers=FHIR_JSON).json()["id"]
    deleted = client.delete(f"/fhir/Patient/{pid}")
    assert deleted.status_code == 204
    assert deleted.headers["etag"] == 'W/"2"'
    gone = client.get(f"/fhir/Patient/{pid}")
    assert gone.status_code == 410
    assert gone.json()["issue"][0]["code"] == "deleted"
    assert client.get(f"/fhir/Patient/{pid}/_history/1").status_code == 200
    assert client.get(f"/fhir/Patient/{pid}/_history/2").status_code == 410
    history = client.get(f"/fhir/Patient/{pid}/_history").json()
    assert [e["request"]["method"] for e in history["entry"]] == ["DELETE", "POST"]
    assert "resource" not in history["entry"][0]


def test_delete_of_absent_resource_is_not_an_error(client: TestClient) -> None:
    assert client.delete("/fhir/Patient/never-was").status_code == 204


def test_update_after_delete_revives_the_resource(client: TestClient) -> None:
    client.put("/fhir/Patient/p1", json=patient(id="p1"), headers=FHIR_JSON)
    client.delete("/fhir/Patient/p1")
    revived = client.put("/fhir/Patient/p1", json=patient(id="p1"), headers=FHIR_JSON)
    assert revived.status_code == 201
    assert revived.json()["meta"]["versionId"] == "3"


def test_read_unknown_id_type_and_version(client: TestClient) -> None:
    assert client.get("/fhir/Patient/nope").status_code == 404
    unknown = client.get("/fhir/Patientt/1")
    assert unknown.status_code == 404
    assert unknown.json()["issue"][0]["code"] == "not-supported"
    client.put("/fhir/Patient/p1", json=patient(id="p1"), headers=FHIR_JSON)
    assert client.get("/fhir/Patient/p1/_history/7").status_code == 404
    assert client.get("/fhir/Patient/p1/_history/x").status_code == 404


def test_invalid_ids_are_rejected(client: TestClient) -> None:
    too_long = "a" * 65
    for bad in [too_long, "a_b", "a%20b"]:
        response = client.get(f"/fhir/Patient/{bad}")
        assert response.status_code == 400, bad
        assert response.json()["resourceType"] == "OperationOutcome"
    assert client.get("/fhir/Patient/..%2F..%2Fetc").status_code in (400, 404)


def test_prefer_return(client: TestClient) -> None:
    minimal = client.post(
        "/fhir/Patient", json=patient(), headers={**FHIR_JSON, "Prefer": "return=minimal"}
    )
    assert minimal.status_code == 201
    assert minimal.content == b""
    assert minimal.headers["location"]
    outcome = client.post(
        "/fhir/Patient", json=patient(), headers={**FHIR_JSON, "Prefer": "return=OperationOutcome"}
    )
    assert outcome.json()["resourceType"] == "OperationOutcome"
    assert outcome.json()["issue"][0]["severity"] == "information"


def test_if_match(client: TestClient) -> None:
    pid = client.post("/fhir/Patient", json=patient(), headers=FHIR_JSON).json()["id"]
    stale = client.put(
        f"/fhir/Patient/{pid}", json=patient(id=pid), headers={**FHIR_JSON, "If-Match": 'W/"7"'}
    )
    assert stale.status_code == 412
    ok = client.put(
        f"/fhir/Patient/{pid}", json=patient(id=pid), headers={**FHIR_JSON, "If-Match": 'W/"1"'}
    )
    assert ok.status_code == 200
    assert ok.json()["meta"]["versionId"] == "2"
    garbage = client.put(
        f"/fhir/Patient/{pid}", json=patient(id=pid), headers={**FHIR_JSON, "If-Match": "soon"}
    )
    assert garbage.status_code == 400
    assert client.delete(f"/fhir/Patient/{pid}", headers={"If-Match": 'W/"1"'}).status_code == 412
    assert client.get(f"/fhir/Patient/{pid}").status_code == 200


def test_conditional_read(client: TestClient) -> None:
    created = client.post("/fhir/Patient", json=patient(), headers=FHIR_JSON)
    pid = created.json()["id"]
    same = client.get(f"/fhir/Patient/{pid}", headers={"If-None-Match": 'W/"1"'})
    assert same.status_code == 304
    assert same.content == b""
    changed = client.get(f"/fhir/Patient/{pid}", headers={"If-None-Match": 'W/"0"'})
    assert changed.status_code == 200
    since = client.get(
        f"/fhir/Patient/{pid}", headers={"If-Modified-Since": created.headers["last-modified"]}
    )
    assert since.status_code == 304
    before = client.get(
        f"/fhir/Patient/{pid}", headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}
    )
    assert before.status_code == 200


def test_summary_and_elements(client: TestClient) -> None:
    body = patient(
        text={
            "status": "generated",
            "div": '<div xmlns="http://www.w3.org/1999/xhtml">Amara</div>',
        },
        maritalStatus={"text": "married"},
    )
    pid = client.post("/fhir/Patient", json=body, headers=FHIR_JSON).json()["id"]
    summary = client.get(f"/fhir/Patient/{pid}?_summary=true").json()
    assert "name" in summary and "birthDate" in summary
    assert "maritalStatus" not in summary and "text" not in summary
    assert any(t["code"] == "SUBSETTED" for t in summary["meta"]["tag"])
    data = client.get(f"/fhir/Patient/{pid}?_summary=data").json()
    assert "text" not in data and "maritalStatus" in data
    text = client.get(f"/fhir/Patient/{pid}?_summary=text").json()
    assert "text" in text and "name" not in text
    elements = client.get(f"/fhir/Patient/{pid}?_elements=gender").json()
    assert elements["gender"] == "female" and "name" not in elements and elements["id"] == pid
    assert client.get(f"/fhir/Patient/{pid}?_summary=bogus").status_code == 400


def test_pretty(client: TestClient) -> None:
    pid = client.post("/fhir/Patient", json=patient(), headers=FHIR_JSON).json()["id"]
    pretty = client.get(f"/fhir/Patient/{pid}?_pretty=true")
    assert b"\n  " in pretty.content
    assert json.loads(pretty.content)["id"] == pid

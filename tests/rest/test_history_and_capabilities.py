"""history (https://hl7.org/fhir/R4/http.html#history) with _since, _at, _count and paging;
capabilities (http.html#capabilities); $validate (resource-operation-validate.html)."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

from starlette.testclient import TestClient

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def _put(client: TestClient, rid: str, gender: str = "female") -> dict[str, object]:
    response = client.put(
        f"/fhir/Patient/{rid}",
        headers=FHIR_JSON,
        json={"resourceType": "Patient", "id": rid, "gender": gender},
    )
    assert response.status_code in (200, 201), response.text
    result: dict[str, object] = response.json()
    return result


def test_instance_type_and_system_history(client: TestClient) -> None:
    _put(client, "a")
    _put(client, "a", "male")
    _put(client, "b")
    client.post(
        "/fhir/Observation",
        headers=FHIR_JSON,
        json={"resourceType": "Observation", "status": "final", "code": {"text": "x"}},
    )
    instance = client.get("/fhir/Patient/a/_history").json()
    assert instance["type"] == "history"
    assert instance["total"] == 2
    assert [e["response"]["etag"] for e in instance["entry"]] == ['W/"2"', 'W/"1"']
    assert instance["entry"][0]["request"] == {"method": "PUT", "url": "Patient/a"}
    assert instance["entry"][0]["fullUrl"].endswith("/fhir/Patient/a")
    of_type = client.get("/fhir/Patient/_history").json()
    assert len(of_type["entry"]) == 3
    assert {e["resource"]["resourceType"] for e in of_type["entry"]} == {"Patient"}
    system = client.get("/fhir/_history").json()
    assert len(system["entry"]) == 4
    assert client.get("/fhir/Patient/zzz/_history").status_code == 404


def test_history_since_and_at(client: TestClient) -> None:
    first = _put(client, "a")
    time.sleep(0.01)
    second = _put(client, "a", "male")
    since = second["meta"]["lastUpdated"]  # type: ignore[index]
    page = client.get(f"/fhir/Patient/a/_history?_since={since}").json()
    assert [e["response"]["etag"] for e in page["entry"]] == ['W/"2"']
    at = first["meta"]["lastUpdated"]  # type: ignore[index]
    page = client.get(f"/fhir/Patient/_history?_at={at}").json()
    assert [e["resource"]["gender"] for e in page["entry"]] == ["female"]
    bad = client.get("/fhir/Patient/_history?_since=yesterday")
    assert bad.status_code == 400
    assert bad.json()["issue"][0]["expression"] == ["_since"]


def test_history_paging_with_count(client: TestClient) -> None:
    for i in range(7):
        _put(client, f"p{i}")
    seen: list[str] = []
    url: str | None = "/fhir/Patient/_history?_count=3"
    pages = 0
    while url:
        bundle = client.get(url).json()
        pages += 1
        seen += [e["resource"]["id"] for e in bundle.get("entry", [])]
        links = {link["relation"]: link["url"] for link in bundle["link"]}
        url = None
        if "next" in links:
            parts = urlsplit(links["next"])
            assert parse_qs(parts.query)["_count"] == ["3"]
            url = f"{parts.path}?{parts.query}"
    assert pages == 3
    assert sorted(seen) == [f"p{i}" for i in range(7)]
    assert client.get("/fhir/Patient/_history?_count=-1").status_code == 400
    assert client.get("/fhir/Patient/_history?_count=abc").status_code == 400


def test_capability_statement_lists_what_is_served(client: TestClient) -> None:
    response = client.get("/fhir/metadata")
    assert response.status_code == 200
    statement = response.json()
    assert statement["resourceType"] == "CapabilityStatement"
    assert statement["fhirVersion"] == "4.0.1"
    assert statement["kind"] == "instance"
    rest = statement["rest"][0]
    types = {r["type"]: r for r in rest["resource"]}
    assert len(types) == 146
    patient = types["Patient"]
    codes = {i["code"] for i in patient["interaction"]}
    assert codes == {
        "read",
        "vread",
        "update",
        "patch",
        "delete",
        "history-instance",
        "history-type",
        "create",
        "search-type",
    }
    assert {
        "name": "validate",
        "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate",
    } in patient["operation"]
    assert {"code": "history-system"} in rest["interaction"]
    assert statement["implementation"]["url"].endswith("/fhir")


def test_validate_operation(client: TestClient) -> None:
    ok = client.post(
        "/fhir/Patient/$validate",
        headers=FHIR_JSON,
        json={"resourceType": "Patient", "gender": "female"},
    )
    assert ok.status_code == 200
    assert all(i["severity"] not in ("error", "fatal") for i in ok.json()["issue"])
    bad = client.post(
        "/fhir/Patient/$validate",
        headers=FHIR_JSON,
        json={
            "resourceType": "Patient",
            "gender": "robot",
            "birthDate": "1999-13-01",
            "colour": "red",
        },
    )
    assert bad.status_code == 200
    issues = bad.json()["issue"]
    paths = {e for i in issues for e in i.get("expression", [])}
    assert {"Patient.gender", "Patient.birthDate", "Patient.colour"} <= paths
    wrapped = client.post(
        "/fhir/Patient/$validate",
        headers=FHIR_JSON,
        json={
            "resourceType": "Parameters",
            "parameter": [
                {"name": "resource", "resource": {"resourceType": "Patient", "gender": "robot"}},
                {"name": "mode", "valueCode": "create"},
            ],
        },
    )
    assert any(i["expression"] == ["Patient.gender"] for i in wrapped.json()["issue"])
    _put(client, "v1")
    instance = client.get("/fhir/Patient/v1/$validate")
    assert instance.status_code == 200
    assert client.post("/fhir/Patient/$everything").status_code == 404
    assert client.get("/fhir/Patient/$validate").status_code == 400

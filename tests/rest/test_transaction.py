"""Transaction Bundles over HTTP: https://hl7.org/fhir/R4/http.html#transaction and #trules."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

MRN = "urn:oid:1.2.36.146.595.217.0.1"


def tx(*entries: dict[str, Any], kind: str = "transaction") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def post(resource: dict[str, Any], full_url: str | None = None, **request: str) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"], **request},
    }
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def put(resource: dict[str, Any], url: str, **request: str) -> dict[str, Any]:
    return {"resource": resource, "request": {"method": "PUT", "url": url, **request}}


def get(url: str, **request: str) -> dict[str, Any]:
    return {"request": {"method": "GET", "url": url, **request}}


def delete(url: str, **request: str) -> dict[str, Any]:
    return {"request": {"method": "DELETE", "url": url, **request}}


def patient(mrn: str, **more: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "identifier": [{"system": MRN, "value": mrn}], **more}


def observation(subject: str, **more: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2"}]},
        "subject": {"reference": subject},
        **more,
    }


def count(client: TestClient, query: str) -> int:
    joiner = "&" if "?" in query else "?"
    response = client.get(f"/fhir/{query}{joiner}_summary=count")
    assert response.status_code == 200, response.text
    return int(response.json()["total"])


def located(entry: dict[str, Any]) -> str:
    """``Patient/abc`` from ``response.location`` ``Patient/abc/_history/1``."""
    return "/".join(entry["response"]["location"].split("/")[:2])


def test_placeholders_are_replaced_everywhere(client: TestClient) -> None:
    """trules: urn:uuid and urn:oid fullUrls are replaced in references, extensions, contained
    resources, uri elements and narrative links."""
    p_url = "urn:uuid:5a0bbf3e-39a4-4bf5-a22e-0f2f7d7a4f01"
    o_url = "urn:oid:1.2.3.4.5"
    obs = observation(
        p_url,
        text={
            "status": "generated",
            "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><a href="{p_url}">patient</a></div>',
        },
        extension=[{"url": "http://example.org/x", "valueReference": {"reference": p_url}}],
        contained=[
            {
                "resourceType": "Provenance",
                "id": "prov",
                "target": [{"reference": p_url}],
                "recorded": "2024-01-01T00:00:00Z",
                "agent": [{"who": {"reference": o_url}}],
            }
        ],
        performer=[{"reference": o_url}],
        focus=[{"reference": "#prov"}],
    )
    organization = {"resourceType": "Organization", "name": "Lab"}
    response = client.post(
        "/fhir",
        json=tx(post(obs), post(patient("1"), p_url), post(organization, o_url)),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["type"] == "transaction-response"
    entries = body["entry"]
    assert [e["response"]["status"] for e in entries] == ["201 Created"] * 3
    obs_ref, patient_ref, org_ref = (located(e) for e in entries)
    assert entries[1]["fullUrl"] == f"http://testserver/fhir/{patient_ref}"
    assert patient_ref.startswith("Patient/") and org_ref.startswith("Organization/")
    stored = client.get(f"/fhir/{obs_ref}").json()
    assert stored["subject"]["reference"] == patient_ref
    assert stored["extension"][0]["valueReference"]["reference"] == patient_ref
    assert stored["contained"][0]["target"][0]["reference"] == patient_ref
    assert stored["contained"][0]["agent"][0]["who"]["reference"] == org_ref
    assert stored["performer"][0]["reference"] == org_ref
    assert f'href="{patient_ref}"' in stored["text"]["div"]
    assert "urn:" not in str(stored)
    # the rewritten reference is indexed: searching by the real patient finds the observation
    assert count(client, f"Observation?subject={patient_ref}") == 1


def test_an_invalid_entry_fails_everything_and_is_named(client: TestClient) -> None:
    """trules: one failure rolls back the whole transaction; the OperationOutcome names it."""
    bad = {"resourceType": "Patient", "gender": "not-a-gender"}
    response = client.post("/fhir", json=tx(post(patient("2")), post(bad)))
    assert response.status_code == 400
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    issue = outcome["issue"][0]
    assert "Bundle.entry[1]" in issue["diagnostics"]
    assert any(e.startswith("Bundle.entry[1]") for e in issue["expression"])
    assert count(client, f"Patient?identifier={MRN}|2") == 0


def test_a_failing_write_rolls_back_earlier_ones(client: TestClient) -> None:
    """A version conflict found by the database (ifMatch) undoes the entries before it."""
    first = client.post("/fhir/Patient", json=patient("3")).json()
    pid = first["id"]
    stale = put(patient("3", id=pid, active=True), f"Patient/{pid}", ifMatch='W/"9"')
    response = client.post("/fhir", json=tx(post(patient("4")), stale))
    assert response.status_code == 412
    assert "Bundle.entry[1]" in response.json()["issue"][0]["diagnostics"]
    assert count(client, f"Patient?identifier={MRN}|4") == 0
    assert client.get(f"/fhir/Patient/{pid}").json()["meta"]["versionId"] == "1"


def test_conditional_references_resolve_to_exactly_one(client: TestClient) -> None:
    """trules, Conditional References: Patient?identifier=... becomes Patient/[id]; none or
    several matches fail the transaction."""
    pid = client.post("/fhir/Patient", json=patient("5")).json()["id"]
    ok = client.post("/fhir", json=tx(post(observation(f"Patient?identifier={MRN}|5"))))
    assert ok.status_code == 200, ok.text
    obs = client.get(f"/fhir/{located(ok.json()['entry'][0])}").json()
    assert obs["subject"]["reference"] == f"Patient/{pid}"

    none = client.post("/fhir", json=tx(post(observation(f"Patient?identifier={MRN}|nobody"))))
    assert none.status_code == 412
    assert "matches no resource" in none.json()["issue"][0]["diagnostics"]
    client.post("/fhir/Patient", json=patient("5"))
    several = client.post("/fhir", json=tx(post(observation(f"Patient?identifier={MRN}|5"))))
    assert several.status_code == 412
    assert count(client, "Observation") == 1


def test_if_none_exist_in_an_entry(client: TestClient) -> None:
    """http.html#ccreate in a transaction: a match is used (200) and references to the entry's
    fullUrl point at it; no match creates."""
    pid = client.post("/fhir/Patient", json=patient("6")).json()["id"]
    p_url = "urn:uuid:6c1f4d55-0a6e-4bb2-8d0e-6b1a8f1f7a06"
    bundle = tx(
        post(patient("6"), p_url, ifNoneExist=f"identifier={MRN}|6"),
        post(observation(p_url)),
    )
    response = client.post("/fhir", json=bundle)
    assert response.status_code == 200, response.text
    first, second = response.json()["entry"]
    assert first["response"]["status"] == "200 OK"
    assert located(first) == f"Patient/{pid}"
    assert client.get(f"/fhir/{located(second)}").json()["subject"]["reference"] == (
        f"Patient/{pid}"
    )
    assert count(client, f"Patient?identifier={MRN}|6") == 1
    fresh = client.post(
        "/fhir", json=tx(post(patient("7"), p_url, ifNoneExist=f"identifier={MRN}|7"))
    )
    assert fresh.json()["entry"][0]["response"]["status"] == "201 Created"


def test_processing_order_and_reads_see_the_writes(client: TestClient) -> None:
    """trules: DELETE, then POST, then PUT, then GET, whatever the order of the entries; the
    response entries keep the request's order."""
    gone = client.post("/fhir/Patient", json=patient("8")).json()["id"]
    kept = client.post("/fhir/Patient", json=patient("9")).json()["id"]
    bundle = tx(
        get(f"Patient?identifier={MRN}|9"),
        put(patient("9", id=kept, active=True), f"Patient/{kept}"),
        post(patient("10")),
        delete(f"Patient/{gone}"),
        get(f"Patient/{kept}"),
    )
    response = client.post("/fhir", json=bundle)
    assert response.status_code == 200, response.text
    entries = response.json()["entry"]
    statuses = [e["response"]["status"] for e in entries]
    assert statuses == ["200 OK", "200 OK", "201 Created", "204 No Content", "200 OK"]
    searched = entries[0]["resource"]
    assert searched["type"] == "searchset"
    assert searched["entry"][0]["resource"]["active"] is True  # the GET ran after the PUT
    assert entries[4]["resource"]["meta"]["versionId"] == "2"
    assert entries[4]["response"]["etag"] == 'W/"2"'
    assert client.get(f"/fhir/Patient/{gone}").status_code == 410


def test_conditional_update_and_delete_entries(client: TestClient) -> None:
    """Conditional PUT and DELETE by criteria inside a transaction (http.html#cond-update,
    #cdelete)."""
    pid = client.post("/fhir/Patient", json=patient("11")).json()["id"]
    doomed = client.post("/fhir/Patient", json=patient("12")).json()["id"]
    bundle = tx(
        put(patient("11", active=False), f"Patient?identifier={MRN}|11"),
        put(patient("13"), f"Patient?identifier={MRN}|13"),
        delete(f"Patient?identifier={MRN}|12"),
        delete(f"Patient?identifier={MRN}|nobody"),
    )
    response = client.post("/fhir", json=bundle)
    assert response.status_code == 200, response.text
    entries = response.json()["entry"]
    assert located(entries[0]) == f"Patient/{pid}"
    assert entries[0]["response"]["status"] == "200 OK"
    assert entries[1]["response"]["status"] == "201 Created"
    assert [e["response"]["status"] for e in entries[2:]] == ["204 No Content"] * 2
    assert client.get(f"/fhir/Patient/{pid}").json()["active"] is False
    assert client.get(f"/fhir/Patient/{doomed}").status_code == 410


def test_one_resource_may_be_written_once(client: TestClient) -> None:
    """trules: identities that overlap between DELETE, POST and PUT fail the transaction."""
    pid = client.post("/fhir/Patient", json=patient("14")).json()["id"]
    bundle = tx(put(patient("14", id=pid), f"Patient/{pid}"), delete(f"Patient/{pid}"))
    response = client.post("/fhir", json=bundle)
    assert response.status_code == 400
    assert "only once" in response.json()["issue"][0]["diagnostics"]
    assert client.get(f"/fhir/Patient/{pid}").json()["meta"]["versionId"] == "1"


def test_get_entries_honour_if_none_match_and_if_modified_since(client: TestClient) -> None:
    """ifNoneMatch and ifModifiedSince on a read entry: 304 when the version matches or it
    has not changed since (http.html#cread)."""
    pid = client.post("/fhir/Patient", json=patient("15")).json()["id"]
    bundle = tx(
        get(f"Patient/{pid}", ifNoneMatch='W/"1"'),
        get("Patient/does-not-exist"),
        get(f"Patient/{pid}", ifModifiedSince="Fri, 01 Jan 2100 00:00:00 GMT"),
        get(f"Patient/{pid}", ifModifiedSince="Thu, 01 Jan 2004 00:00:00 GMT"),
    )
    response = client.post("/fhir", json=bundle)
    assert response.status_code == 200, response.text
    first, second, third, fourth = response.json()["entry"]
    assert first["response"]["status"] == "304 Not Modified"
    assert second["response"]["status"] == "404 Not Found"
    assert second["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert third["response"]["status"] == "304 Not Modified"
    assert fourth["response"]["status"] == "200 OK"
    assert fourth["resource"]["id"] == pid


def test_prefer_representation_returns_the_resources(client: TestClient) -> None:
    response = client.post(
        "/fhir", json=tx(post(patient("16"))), headers={"Prefer": "return=representation"}
    )
    entry = response.json()["entry"][0]
    assert entry["resource"]["identifier"][0]["value"] == "16"
    assert entry["resource"]["meta"]["versionId"] == "1"
    minimal = client.post("/fhir", json=tx(post(patient("17"))))
    assert "resource" not in minimal.json()["entry"][0]


def test_bad_bundles_are_refused_before_anything_runs(client: TestClient) -> None:
    assert client.post("/fhir", json={"resourceType": "Patient"}).status_code == 400
    collection = {"resourceType": "Bundle", "type": "collection", "entry": []}
    assert client.post("/fhir", json=collection).status_code == 400
    no_request = {"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": {}}]}
    refused = client.post("/fhir", json=no_request)
    assert refused.status_code == 400
    assert refused.json()["issue"][0]["expression"] == ["Bundle.entry[0].request"]
    bad_url = tx(post(patient("18")), {"request": {"method": "PUT", "url": "Patient"}})
    assert client.post("/fhir", json=bad_url).status_code == 400
    foreign = tx({"request": {"method": "GET", "url": "https://elsewhere.example/fhir/Patient"}})
    assert client.post("/fhir", json=foreign).status_code == 400
    unknown = tx(post({"resourceType": "Spaceship"} | {"request": None}))
    assert client.post("/fhir", json=unknown).status_code == 404
    assert count(client, "Patient") == 0


def test_the_entry_limit_applies_before_any_entry_runs(tmp_path: Any) -> None:
    from tests.rest.conftest import make_client

    with make_client("memory", tmp_path, max_bundle_entries=2) as client:
        bundle = tx(post(patient("19")), post(patient("20")), post(patient("21")))
        response = client.post("/fhir", json=bundle)
        assert response.status_code == 413
        assert "at most 2" in response.json()["issue"][0]["diagnostics"]
        assert count(client, "Patient") == 0


def test_batch_entries_succeed_or_fail_on_their_own(client: TestClient) -> None:
    """http.html#brules: each entry is processed on its own; failures do not affect others."""
    pid = client.post("/fhir/Patient", json=patient("22")).json()["id"]
    bundle = tx(
        post(patient("23")),
        post({"resourceType": "Patient", "gender": "nope"}),
        put(patient("22", id=pid, active=True), f"Patient/{pid}", ifMatch='W/"5"'),
        get(f"Patient/{pid}"),
        delete(f"Patient/{pid}"),
        kind="batch",
    )
    response = client.post("/fhir", json=bundle)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["type"] == "batch-response"
    statuses = [e["response"]["status"] for e in body["entry"]]
    assert statuses == [
        "201 Created",
        "400 Bad Request",
        "412 Precondition Failed",
        "200 OK",
        "204 No Content",
    ]
    assert body["entry"][1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert count(client, f"Patient?identifier={MRN}|23") == 1


def test_capability_statement_lists_transaction_and_batch(client: TestClient) -> None:
    rest = client.get("/fhir/metadata").json()["rest"][0]
    codes = [i["code"] for i in rest["interaction"]]
    assert "transaction" in codes and "batch" in codes


def test_patch_entries_json_patch_and_fhirpath_patch(client: TestClient) -> None:
    """http.html#patch in a transaction: a Binary holding a JSON Patch, or a FHIRPath Patch
    Parameters; ifMatch applies; a patch that does not apply fails the transaction."""
    import base64
    import json

    a = client.post("/fhir/Patient", json=patient("30")).json()["id"]
    b = client.post("/fhir/Patient", json=patient("31")).json()["id"]
    json_patch = [{"op": "add", "path": "/active", "value": True}]
    binary = {
        "resourceType": "Binary",
        "contentType": "application/json-patch+json",
        "data": base64.b64encode(json.dumps(json_patch).encode()).decode(),
    }
    fhirpath = {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "operation",
                "part": [
                    {"name": "type", "valueCode": "add"},
                    {"name": "path", "valueString": "Patient"},
                    {"name": "name", "valueString": "gender"},
                    {"name": "value", "valueCode": "female"},
                ],
            }
        ],
    }
    bundle = tx(
        {"resource": binary, "request": {"method": "PATCH", "url": f"Patient/{a}"}},
        {
            "resource": fhirpath,
            "request": {"method": "PATCH", "url": f"Patient/{b}", "ifMatch": 'W/"1"'},
        },
    )
    response = client.post("/fhir", json=bundle)
    assert response.status_code == 200, response.text
    assert [e["response"]["status"] for e in response.json()["entry"]] == ["200 OK"] * 2
    assert client.get(f"/fhir/Patient/{a}").json()["active"] is True
    assert client.get(f"/fhir/Patient/{b}").json()["gender"] == "female"

    stale = tx(
        {
            "resource": fhirpath,
            "request": {"method": "PATCH", "url": f"Patient/{b}", "ifMatch": 'W/"1"'},
        }
    )
    assert client.post("/fhir", json=stale).status_code == 412
    failing_test = [{"op": "test", "path": "/active", "value": False}]
    binary["data"] = base64.b64encode(json.dumps(failing_test).encode()).decode()
    both = tx(
        post(patient("32")),
        {"resource": binary, "request": {"method": "PATCH", "url": f"Patient/{a}"}},
    )
    refused = client.post("/fhir", json=both)
    assert refused.status_code == 422
    assert "Bundle.entry[1]" in refused.json()["issue"][0]["diagnostics"]
    assert count(client, f"Patient?identifier={MRN}|32") == 0


def test_a_read_of_an_unknown_type_fails_the_transaction_before_any_write(
    client: TestClient,
) -> None:
    """trules: a transaction fails as a whole when an entry cannot succeed; a read of a type
    the server does not have is found before the writes run."""
    response = client.post("/fhir", json=tx(post(patient("40")), get("Spaceship/1")))
    assert response.status_code == 404
    assert "Bundle.entry[1]" in response.json()["issue"][0]["diagnostics"]
    assert count(client, f"Patient?identifier={MRN}|40") == 0
    system = client.post("/fhir", json=tx(get("?_type=Patient"), get("_history")))
    assert [e["response"]["status"] for e in system.json()["entry"]] == ["200 OK"] * 2

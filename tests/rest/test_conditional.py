"""Conditional create and update (https://hl7.org/fhir/R4/http.html#ccreate, #cond-update), on
every backend, including concurrent conditional creates that must make exactly one resource."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from healthbridge.store.repository import Repository
from tests.rest.conftest import fhir_service, make_client
from tests.support.databases import PostgresDatabase


def patient(value: str, **more: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:mrn", "value": value}],
        **more,
    }


def test_if_none_exist_creates_once_and_returns_the_match(client: TestClient) -> None:
    headers = {"If-None-Exist": "identifier=urn:mrn|1"}
    first = client.post("/fhir/Patient", json=patient("1"), headers=headers)
    assert first.status_code == 201
    again = client.post("/fhir/Patient", json=patient("1", active=True), headers=headers)
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"] and "active" not in again.json()
    client.post("/fhir/Patient", json=patient("2"))
    client.post("/fhir/Patient", json=patient("2"))
    several = client.post(
        "/fhir/Patient", json=patient("2"), headers={"If-None-Exist": "identifier=urn:mrn|2"}
    )
    assert several.status_code == 412
    unknown = client.post(
        "/fhir/Patient", json=patient("3"), headers={"If-None-Exist": "colour=red"}
    )
    assert unknown.status_code == 400  # an ignored parameter would widen the match
    assert client.get("/fhir/Patient?identifier=urn:mrn|3").json()["total"] == 0


def test_conditional_update_creates_updates_or_refuses(client: TestClient) -> None:
    url = "/fhir/Patient?identifier=urn:mrn|7"
    created = client.put(url, json=patient("7"))
    assert created.status_code == 201
    id = created.json()["id"]
    updated = client.put(url, json=patient("7", active=True))
    assert updated.status_code == 200 and updated.json()["id"] == id
    assert updated.json()["meta"]["versionId"] == "2" and updated.json()["active"] is True
    wrong_id = client.put(url, json=patient("7", id="someone-else"))
    assert wrong_id.status_code == 400
    stale = client.put(url, json=patient("7"), headers={"If-Match": 'W/"1"'})
    assert stale.status_code == 412
    client.post("/fhir/Patient", json=patient("7"))
    assert client.put(url, json=patient("7")).status_code == 412  # now two match
    assert client.put("/fhir/Patient", json=patient("8")).status_code == 400  # no criteria


async def test_parallel_conditional_creates_make_exactly_one(repository: Repository) -> None:
    """Issue 4: 20-50 parallel conditional creates with the same If-None-Exist make one."""
    service = fhir_service(repository)
    results = await asyncio.gather(
        *(
            service.conditional_create("Patient", patient("42"), "identifier=urn:mrn|42")
            for _ in range(30)
        )
    )
    ids = {stored.id for stored, _ in results}
    assert len(ids) == 1
    assert sum(created for _, created in results) == 1
    query = service.search.parse("Patient", [("identifier", "urn:mrn|42")])
    assert len((await repository.search(query)).matches) == 1


def test_conditional_delete_one_none_or_refuses_several(client: TestClient) -> None:
    """http.html#cdelete: one match is deleted, none is fine, several are 412 by default."""
    first = client.post("/fhir/Patient", json=patient("5")).json()["id"]
    assert client.delete("/fhir/Patient?identifier=urn:mrn|5").status_code == 204
    assert client.get(f"/fhir/Patient/{first}").status_code == 410
    assert client.delete("/fhir/Patient?identifier=urn:mrn|5").status_code == 204  # none left
    client.post("/fhir/Patient", json=patient("6"))
    client.post("/fhir/Patient", json=patient("6"))
    assert client.delete("/fhir/Patient?identifier=urn:mrn|6").status_code == 412
    assert client.get("/fhir/Patient?identifier=urn:mrn|6").json()["total"] == 2
    assert client.delete("/fhir/Patient?colour=red").status_code == 400
    assert client.delete("/fhir/Patient").status_code == 400


def test_conditional_delete_of_several_when_configured(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    postgres: PostgresDatabase | None = (
        request.getfixturevalue("postgres_database") if backend == "postgresql" else None
    )
    with make_client(backend, tmp_path, postgres, conditional_delete_multiple=True) as client:
        for _ in range(3):
            client.post("/fhir/Patient", json=patient("9"))
        assert client.delete("/fhir/Patient?identifier=urn:mrn|9").status_code == 204
        assert client.get("/fhir/Patient?identifier=urn:mrn|9").json()["total"] == 0
        metadata = client.get("/fhir/metadata").json()
        assert metadata["rest"][0]["resource"][0]["conditionalDelete"] == "multiple"


def test_conditional_patch_one_match_none_or_several(client: TestClient) -> None:
    """http.html#patch, conditional: ``PATCH [type]?criteria`` patches the one match; no
    match is 404 and several are 412, with nothing changed."""
    json_patch = {"content-type": "application/json-patch+json"}
    ops = [{"op": "add", "path": "/active", "value": True}]
    id = client.post("/fhir/Patient", json=patient("60")).json()["id"]
    patched = client.patch("/fhir/Patient?identifier=urn:mrn|60", json=ops, headers=json_patch)
    assert patched.status_code == 200, patched.text
    assert patched.json()["id"] == id and patched.json()["active"] is True
    assert patched.json()["meta"]["versionId"] == "2"
    missing = client.patch("/fhir/Patient?identifier=urn:mrn|61", json=ops, headers=json_patch)
    assert missing.status_code == 404
    client.post("/fhir/Patient", json=patient("60"))
    several = client.patch("/fhir/Patient?identifier=urn:mrn|60", json=ops, headers=json_patch)
    assert several.status_code == 412
    assert client.get(f"/fhir/Patient/{id}").json()["meta"]["versionId"] == "2"
    stale = client.patch(
        f"/fhir/Patient?_id={id}", json=ops, headers=json_patch | {"If-Match": 'W/"1"'}
    )
    assert stale.status_code == 412
    assert client.patch("/fhir/Patient", json=ops, headers=json_patch).status_code == 400

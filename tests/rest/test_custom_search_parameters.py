"""Custom SearchParameters become searchable after $reindex (https://hl7.org/fhir/R4/searchparameter.html,
asynchronous pattern https://hl7.org/fhir/R4/async.html), on every backend."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.rest.conftest import make_client
from tests.support.databases import PostgresDatabase

EXTENSION = "http://hl7.org/fhir/StructureDefinition/patient-birthPlace"
PARAMETER: dict[str, Any] = {
    "resourceType": "SearchParameter",
    "url": "http://example.org/SearchParameter/patient-birthplace-city",
    "name": "birthplace-city",
    "status": "active",
    "description": "City of birth",
    "code": "birthplace-city",
    "base": ["Patient"],
    "type": "string",
    "expression": f"Patient.extension.where(url = '{EXTENSION}').value.city",
}


def patient(city: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "extension": [{"url": EXTENSION, "valueAddress": {"city": city}}],
    }


@pytest.fixture
def fast_client(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> TestClient:
    postgres: PostgresDatabase | None = (
        request.getfixturevalue("postgres_database") if backend == "postgresql" else None
    )
    return make_client(backend, tmp_path, postgres, search_refresh_seconds=0.05)


def ids(bundle: dict[str, Any]) -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"}


def wait_for(client: TestClient, location: str) -> dict[str, Any]:
    for _ in range(200):
        answer = client.get(location)
        if answer.status_code == 200:
            return dict(answer.json())
        assert answer.status_code == 202 and "X-Progress" in answer.headers
        time.sleep(0.05)
    raise AssertionError("the reindex did not finish")


def state(status: dict[str, Any]) -> dict[str, Any]:
    return {
        p["name"]: next(v for k, v in p.items() if k.startswith("value"))
        for p in status["parameter"]
    }


def test_a_custom_parameter_is_searchable_after_reindex(fast_client: TestClient) -> None:
    with fast_client as client:
        lyon = client.post("/fhir/Patient", json=patient("Lyon")).json()["id"]
        client.post("/fhir/Patient", json=patient("Paris"))
        assert client.post("/fhir/SearchParameter", json=PARAMETER).status_code == 201
        strict = {"Prefer": "handling=strict"}
        before = client.get("/fhir/Patient?birthplace-city=lyon", headers=strict)
        assert before.status_code == 400  # not searchable until reindexed

        started = client.post("/fhir/$reindex")
        assert started.status_code == 202
        location = started.headers["Content-Location"]
        late = client.post("/fhir/Patient", json=patient("Lyon")).json()["id"]  # during the job
        done = state(wait_for(client, location))
        assert done["state"] == "done" and int(done["processed"]) >= 3
        assert done["parameter"] == "birthplace-city"

        metadata = client.get("/fhir/metadata").json()
        entry = next(r for r in metadata["rest"][0]["resource"] if r["type"] == "Patient")
        listed = {p["name"]: p for p in entry["searchParam"]}
        assert listed["birthplace-city"]["definition"] == PARAMETER["url"]

        found = client.get("/fhir/Patient?birthplace-city=lyon", headers=strict)
        assert found.status_code == 200
        assert ids(found.json()) == {lyon, late}
        after = client.post("/fhir/Patient", json=patient("Lyon")).json()["id"]
        assert after in ids(client.get("/fhir/Patient?birthplace-city=LYON").json())


def test_reindex_refuses_unusable_parameters_and_unknown_jobs(fast_client: TestClient) -> None:
    with fast_client as client:
        broken = PARAMETER | {"code": "name"}  # Patient already has "name"
        assert client.post("/fhir/SearchParameter", json=broken).status_code == 201
        refused = client.post("/fhir/$reindex")
        assert refused.status_code == 422
        assert refused.json()["issue"][0]["expression"] == ["SearchParameter.code"]
        assert client.get("/fhir/$reindex-status?job=nope").status_code == 404
        assert client.get("/fhir/$reindex-status").status_code == 400

"""Profile validation on write and in ``$validate``: https://hl7.org/fhir/R4/profiling.html,
https://hl7.org/fhir/R4/http.html#2.21.0.9 (422 for a resource that breaks a profile) and
https://hl7.org/fhir/R4/resource-operation-validate.html (the ``profile`` parameter).

Small differential-only profiles uploaded through the API, on every backend; the real packages
(IPS 2.0.0, Synthea) are in test_profile_validation_packages.py.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from healthbridge.app import create_app
from healthbridge.settings import Settings
from healthbridge.store.repository import Repository
from healthbridge.store.sql import open_repository
from tests.rest.conftest import make_client
from tests.support.databases import SQL_BACKEND_PARAMS, PostgresDatabase, sqlite_url

CORE = "http://hl7.org/fhir/StructureDefinition/"
DATED = "http://example.org/fhir/StructureDefinition/dated-patient"


def dated_profile(*required: str, version: str = "1.0.0") -> dict[str, Any]:
    """A Patient profile with only a differential: ``required`` elements become 1..1."""
    elements: list[dict[str, Any]] = [{"id": "Patient", "path": "Patient"}]
    elements += [{"id": f"Patient.{e}", "path": f"Patient.{e}", "min": 1} for e in required]
    return {
        "resourceType": "StructureDefinition",
        "url": DATED,
        "version": version,
        "name": "DatedPatient",
        "status": "active",
        "kind": "resource",
        "abstract": False,
        "type": "Patient",
        "baseDefinition": CORE + "Patient",
        "derivation": "constraint",
        "differential": {"element": elements},
    }


def patient(*profiles: str, **content: Any) -> dict[str, Any]:
    meta = {"meta": {"profile": list(profiles)}} if profiles else {}
    return {"resourceType": "Patient", **meta, **content}


def issues(response: Any) -> list[tuple[str, str, str]]:
    """(severity, first expression, diagnostics) of an OperationOutcome response."""
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    return [
        (i["severity"], (i.get("expression") or [""])[0], i["diagnostics"]) for i in body["issue"]
    ]


def errors(response: Any) -> list[tuple[str, str]]:
    return [(where, text) for severity, where, text in issues(response) if severity == "error"]


def count(client: TestClient, resource_type: str) -> int:
    found = client.get(f"/fhir/{resource_type}", params={"_summary": "count"})
    return int(found.json()["total"])


@pytest.fixture
def api(backend: str, tmp_path: Path, postgres_database: PostgresDatabase) -> Iterator[TestClient]:
    if backend == "postgresql":
        postgres_database.require()
    with make_client(backend, tmp_path, postgres_database) as client:
        yield client


# -- a profile uploaded through the API, every backend -------------------------------------------


def test_uploaded_profile_is_used_at_once_and_follows_updates(api: TestClient) -> None:
    assert api.post("/fhir/Patient", json=patient(DATED)).status_code == 201  # unknown: ignored
    created = api.post("/fhir/StructureDefinition", json=dated_profile("birthDate"))
    assert created.status_code == 201, created.text
    refused = api.post("/fhir/Patient", json=patient(DATED, gender="male"))
    assert refused.status_code == 422
    assert errors(refused) == [
        (
            "Patient.birthDate",
            f"Patient.birthDate requires at least 1, found 0 (profile {DATED}|1.0.0)",
        )
    ]
    assert api.post("/fhir/Patient", json=patient(DATED, birthDate="1970")).status_code == 201

    sd_id = created.json()["id"]
    newer = dated_profile("birthDate", "gender", version="1.1.0") | {"id": sd_id}
    assert api.put(f"/fhir/StructureDefinition/{sd_id}", json=newer).status_code == 200
    refused = api.post("/fhir/Patient", json=patient(DATED, birthDate="1970"))
    assert [where for where, _ in errors(refused)] == ["Patient.gender"]

    assert api.delete(f"/fhir/StructureDefinition/{sd_id}").status_code in (200, 204)
    assert api.post("/fhir/Patient", json=patient(DATED)).status_code == 201


def test_bare_url_takes_the_newest_version_and_a_version_picks_its_own(api: TestClient) -> None:
    """https://hl7.org/fhir/R4/references.html#canonical: ``url|version`` names one version."""
    for profile in (dated_profile("gender", version="2.0.0"), dated_profile("birthDate")):
        assert api.post("/fhir/StructureDefinition", json=profile).status_code == 201
    newest = api.post("/fhir/Patient", json=patient(DATED, birthDate="1970"))
    assert [where for where, _ in errors(newest)] == ["Patient.gender"]
    older = api.post("/fhir/Patient", json=patient(f"{DATED}|1.0.0", gender="male"))
    assert [where for where, _ in errors(older)] == ["Patient.birthDate"]


def test_bindings_to_stored_value_sets_and_code_systems(api: TestClient) -> None:
    """A required binding (terminologies.html#strength) to a ValueSet that includes a whole
    CodeSystem stored on the server; a new code in the CodeSystem counts at once."""
    system, value_set = (
        "http://example.org/fhir/CodeSystem/colors",
        "http://example.org/fhir/ValueSet/colors",
    )
    code_system: dict[str, Any] = {
        "resourceType": "CodeSystem", "url": system, "status": "active", "content": "complete",
        "concept": [{"code": "red"}, {"code": "blue"}],
    }  # fmt: skip
    colors = {
        "resourceType": "ValueSet", "url": value_set, "status": "active",
        "compose": {"include": [{"system": system}]},
    }  # fmt: skip
    profile = dated_profile()
    profile["differential"]["element"].append(
        {
            "id": "Patient.maritalStatus",
            "path": "Patient.maritalStatus",
            "binding": {"strength": "required", "valueSet": value_set},
        }
    )
    stored = api.post("/fhir/CodeSystem", json=code_system).json()
    for resource in (colors, profile):
        assert api.post(f"/fhir/{resource['resourceType']}", json=resource).status_code == 201

    def married(code: str) -> int:
        status = {"coding": [{"system": system, "code": code}]}
        return int(api.post("/fhir/Patient", json=patient(DATED, maritalStatus=status)).status_code)

    assert married("red") == 201
    assert married("green") == 422
    code_system["concept"].append({"code": "green"})
    assert (
        api.put(
            f"/fhir/CodeSystem/{stored['id']}", json=code_system | {"id": stored["id"]}
        ).status_code
        == 200
    )
    assert married("green") == 201


def test_transaction_with_one_invalid_entry_fails_whole(api: TestClient) -> None:
    assert api.post("/fhir/StructureDefinition", json=dated_profile("birthDate")).status_code == 201
    entries = [
        {
            "resource": patient(DATED, birthDate="1980"),
            "request": {"method": "POST", "url": "Patient"},
        },
        {
            "resource": patient(DATED, gender="female"),
            "request": {"method": "POST", "url": "Patient"},
        },
    ]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    response = api.post("/fhir", json=bundle)
    assert response.status_code == 422, response.text
    assert [where for where, _ in errors(response)] == ["Bundle.entry[1].resource.birthDate"]
    assert count(api, "Patient") == 0


def test_patch_whose_result_breaks_the_profile_is_422(api: TestClient) -> None:
    assert api.post("/fhir/StructureDefinition", json=dated_profile("birthDate")).status_code == 201
    stored = api.post("/fhir/Patient", json=patient(DATED, birthDate="1990")).json()
    patch = [{"op": "remove", "path": "/birthDate"}]
    response = api.patch(
        f"/fhir/Patient/{stored['id']}",
        json=patch,
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert response.status_code == 422, response.text
    assert api.get(f"/fhir/Patient/{stored['id']}").json()["birthDate"] == "1990"


def test_validate_with_profile_parameter(api: TestClient) -> None:
    assert api.post("/fhir/StructureDefinition", json=dated_profile("birthDate")).status_code == 201
    good = api.post(f"/fhir/Patient/$validate?profile={DATED}", json=patient(birthDate="1970"))
    assert good.status_code == 200 and errors(good) == []
    bad = api.post(f"/fhir/Patient/$validate?profile={DATED}", json=patient())
    assert [where for where, _ in errors(bad)] == ["Patient.birthDate"]
    parameters = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "resource", "resource": patient()},
            {"name": "profile", "valueUri": "http://example.org/StructureDefinition/nothing"},
        ],
    }
    unknown = api.post("/fhir/Patient/$validate", json=parameters)
    assert errors(unknown) == [
        (
            "",
            "profile http://example.org/StructureDefinition/nothing is not known to this "
            "server; install its package with healthbridge packages install",
        )
    ]
    claimed = api.post("/fhir/Patient/$validate", json=patient("http://example.org/p"))
    assert [s for s, _, text in issues(claimed) if "http://example.org/p" in text] == ["warning"]


def test_core_profiles_ship_with_the_server(api: TestClient) -> None:
    """bodyweight (https://hl7.org/fhir/R4/bodyweight.html) fixes the LOINC code 29463-7."""
    weight: dict[str, Any] = {
        "resourceType": "Observation",
        "meta": {"profile": [CORE + "bodyweight"]},
        "status": "final",
        "category": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                         "code": "vital-signs"}]}
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2020-01-01",
        "valueQuantity": {"value": 70, "unit": "kg", "system": "http://unitsofmeasure.org",
                          "code": "kg"},
    }  # fmt: skip
    assert api.post("/fhir/Observation", json=weight).status_code == 201
    wrong = copy.deepcopy(weight)
    wrong["code"]["coding"][0]["code"] = "8302-2"  # body height
    response = api.post("/fhir/Observation", json=wrong)
    assert response.status_code == 422
    assert any(where.startswith("Observation.code") for where, _ in errors(response))


def test_capability_statement_lists_installed_profiles(api: TestClient) -> None:
    assert api.post("/fhir/StructureDefinition", json=dated_profile("birthDate")).status_code == 201
    statement = api.get("/fhir/metadata").json()
    entry = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Patient")
    assert entry["supportedProfile"] == [DATED]


# -- several processes, required profiles ------------------------------------------------------


@pytest.mark.parametrize("kind", SQL_BACKEND_PARAMS)
def test_another_process_sees_a_new_profile_within_seconds(
    kind: str, tmp_path: Path, postgres_database: PostgresDatabase
) -> None:
    """Two app instances on one database (as two Granian workers): a profile uploaded through
    one is enforced by the other after its next poll."""
    url = sqlite_url(tmp_path) if kind == "sqlite" else postgres_database.require()

    async def same_database() -> Repository:
        return await open_repository(url)

    settings = Settings(
        data_dir=tmp_path, access_log=False, no_auth=True, search_refresh_seconds=0.2
    )
    with make_client(kind, tmp_path, postgres_database, search_refresh_seconds=0.2) as first:
        app = create_app(settings, repository_factory=same_database)
        with TestClient(app, raise_server_exceptions=False) as second:
            assert second.post("/fhir/Patient", json=patient(DATED)).status_code == 201
            profile = dated_profile("birthDate")
            assert first.post("/fhir/StructureDefinition", json=profile).status_code == 201
            deadline = time.monotonic() + 5
            while second.post("/fhir/Patient", json=patient(DATED)).status_code != 422:
                assert time.monotonic() < deadline, "the other process never saw the profile"
                time.sleep(0.1)


def test_required_profile_unknown_to_the_server_stops_the_start(tmp_path: Path) -> None:
    client = make_client("memory", tmp_path, required_profiles={"Patient": [DATED]})
    with pytest.raises(Exception, match="healthbridge packages install") as raised, client:
        pass
    assert DATED in str(raised.value)

"""Shared data and helpers for the REST search tests (https://hl7.org/fhir/R4/search.html and
https://hl7.org/fhir/R4/http.html#search). Every resource is written through the API, so each
test runs the whole stack on every backend."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from starlette.testclient import TestClient

FHIR_JSON = {"Content-Type": "application/fhir+json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
LOINC = "http://loinc.org"


def put(client: TestClient, resource: dict[str, Any]) -> None:
    url = f"/fhir/{resource['resourceType']}/{resource['id']}"
    response = client.put(url, json=resource, headers=FHIR_JSON)
    assert response.status_code in (200, 201), response.text


def observation(id: str, subject: str, code: str, value: int, **fields: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": id,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": subject},
        "valueQuantity": {"value": value, "unit": "/min"},
        **fields,
    }


WORLD: list[dict[str, Any]] = [
    {"resourceType": "Practitioner", "id": "dr", "name": [{"family": "Doctor"}]},
    {
        "resourceType": "Patient",
        "id": "pa",
        "name": [{"family": "Álvarez", "given": ["Ana"]}],
        "gender": "female",
        "birthDate": "1980-02-29",
        "identifier": [{"system": "urn:mrn", "value": "12"}],
        "generalPractitioner": [{"reference": "Practitioner/dr"}],
        "text": {
            "status": "generated",
            "div": '<div xmlns="http://www.w3.org/1999/xhtml">Ana</div>',
        },
    },
    {
        "resourceType": "Patient",
        "id": "pb",
        "name": [{"family": "Brown"}],
        "gender": "male",
        "birthDate": "1990",
    },
    {
        "resourceType": "Patient",
        "id": "pc",
        "name": [{"family": "Chen"}],
        "gender": "female",
        "birthDate": "2001-07-01",
    },
    {
        "resourceType": "Encounter",
        "id": "e1",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": "Patient/pa"},
    },
    observation("o1", "Patient/pa", "8867-4", 72, encounter={"reference": "Encounter/e1"}),
    observation("o2", "Patient/pb", "8867-4", 90),
    observation("o3", "Patient/pa", "1234-5", 5, performer=[{"reference": "Practitioner/dr"}]),
    {
        "resourceType": "Provenance",
        "id": "prov",
        "target": [{"reference": "Observation/o1"}],
        "recorded": "2021-01-01T00:00:00Z",
        "agent": [{"who": {"reference": "Practitioner/dr"}}],
    },
]


def load_world(client: TestClient) -> None:
    for resource in WORLD:
        put(client, resource)


def search(client: TestClient, url: str, status: int = 200, **kwargs: Any) -> dict[str, Any]:
    response = client.get(url, **kwargs)
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


def entries(bundle: dict[str, Any], mode: str = "match") -> list[str]:
    """``Type/id`` of the entries of ``mode`` in bundle order."""
    return [
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in bundle.get("entry", [])
        if e["search"]["mode"] == mode
    ]


def ids(bundle: dict[str, Any], mode: str = "match") -> set[str]:
    return {e.split("/", 1)[1] for e in entries(bundle, mode)}


def links(bundle: dict[str, Any]) -> dict[str, str]:
    return {link["relation"]: link["url"] for link in bundle.get("link", [])}


def relative(url: str) -> str:
    """A link as a path and query the test client can follow."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def walk(client: TestClient, url: str) -> list[dict[str, Any]]:
    """Every page, following ``next`` links."""
    pages = [search(client, url)]
    while "next" in links(pages[-1]):
        assert len(pages) < 100, "next links never end"
        pages.append(search(client, relative(links(pages[-1])["next"])))
    return pages


def issue_expressions(response: Any) -> list[str]:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    return [e for issue in body["issue"] for e in issue.get("expression", [])]

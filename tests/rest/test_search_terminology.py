"""Token :above, :below, :in and :not-in (https://hl7.org/fhir/R4/search.html#modifiers) over the
CodeSystems and ValueSets stored on the server and the R4 value sets it ships, on every backend."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

CS = "http://example.org/fhir/CodeSystem/findings"
CODE_SYSTEM: dict[str, Any] = {
    "resourceType": "CodeSystem",
    "url": CS,
    "status": "active",
    "content": "complete",
    "hierarchyMeaning": "is-a",
    "concept": [
        {
            "code": "A",
            "concept": [{"code": "B", "concept": [{"code": "C"}]}],
        },
        {"code": "D", "property": [{"code": "parent", "valueCode": "A"}]},
        {"code": "E"},
    ],
}


def value_set(url: str, include: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "ValueSet",
        "url": url,
        "status": "active",
        "compose": {"include": [include]},
    }


def observation(id: str, code: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": id,
        "status": "final" if code != "E" else "preliminary",
        "code": {"coding": [{"system": CS, "code": code}]},
    }


def ids(client: TestClient, query: str) -> set[str]:
    answer = client.get(f"/fhir/Observation?{query}")
    assert answer.status_code == 200, answer.text
    return {e["resource"]["id"] for e in answer.json().get("entry", [])}


def test_hierarchies_and_value_sets_drive_token_modifiers(client: TestClient) -> None:
    assert client.post("/fhir/CodeSystem", json=CODE_SYSTEM).status_code == 201
    picked = value_set(
        "http://example.org/vs/picked", {"system": CS, "concept": [{"code": "B"}, {"code": "D"}]}
    )
    under_b = value_set(
        "http://example.org/vs/under-b",
        {"system": CS, "filter": [{"property": "concept", "op": "is-a", "value": "B"}]},
    )
    imported = value_set(
        "http://example.org/vs/imported", {"valueSet": ["http://example.org/vs/picked"]}
    )
    for resource in (picked, under_b, imported):
        assert client.post("/fhir/ValueSet", json=resource).status_code == 201
    for code in "ABCDE":
        assert (
            client.put(f"/fhir/Observation/o{code}", json=observation(f"o{code}", code)).status_code
            == 201
        )

    assert ids(client, f"code:below={CS}|A") == {"oA", "oB", "oC", "oD"}
    assert ids(client, f"code:below={CS}|B") == {"oB", "oC"}
    assert ids(client, f"code:above={CS}|C") == {"oA", "oB", "oC"}
    assert ids(client, "code:in=http://example.org/vs/picked") == {"oB", "oD"}
    assert ids(client, "code:not-in=http://example.org/vs/picked") == {"oA", "oC", "oE"}
    assert ids(client, "code:in=http://example.org/vs/under-b") == {"oB", "oC"}
    assert ids(client, "code:in=http://example.org/vs/imported") == {"oB", "oD"}
    # A value set the server ships with R4 (observation-status: final, preliminary, ...).
    shipped = "http://hl7.org/fhir/ValueSet/observation-status"
    assert ids(client, f"status:in={shipped}") == {"oA", "oB", "oC", "oD", "oE"}
    assert ids(client, f"status:in={shipped}&code:below={CS}|B") == {"oB", "oC"}


def test_unknown_terminology_is_a_clear_400(client: TestClient) -> None:
    for query, code in [
        ("code:below=http://unknown.org/cs|A", "not-supported"),
        ("code:in=http://unknown.org/vs", "not-supported"),
        ("code:below=A", "value"),
    ]:
        answer = client.get(f"/fhir/Observation?{query}")
        assert answer.status_code == 400, query
        issue = answer.json()["issue"][0]
        assert issue["code"] == code and issue["expression"] == [query.split("=")[0]]

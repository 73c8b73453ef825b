"""Unknown parameters, ``Prefer: handling`` (https://hl7.org/fhir/R4/search.html#errors),
``_summary``/``_elements`` on search results (search.html#summary, #elements) and the search
part of the CapabilityStatement (https://hl7.org/fhir/R4/capabilitystatement.html)."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

from tests.rest.search_support import entries, ids, issue_expressions, links, load_world, search

STRICT = {"Prefer": "handling=strict"}
SUBSETTED = "SUBSETTED"


def _outcomes(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == "outcome"]


def test_lenient_ignores_unknown_parameters_with_a_warning(client: TestClient) -> None:
    """search.html#errors: by default unknown or unsupported parameters are ignored; the
    bundle says so in an OperationOutcome entry and the self link leaves them out."""
    load_world(client)
    bundle = search(client, "/fhir/Patient?gender=female&colour=red&_query=x")
    assert ids(bundle) == {"pa", "pc"}
    (outcome,) = _outcomes(bundle)
    assert outcome["resourceType"] == "OperationOutcome"
    named = {e for issue in outcome["issue"] for e in issue["expression"]}
    assert {"colour", "_query"} <= named
    assert all(issue["severity"] == "warning" for issue in outcome["issue"])
    self_link = links(bundle)["self"]
    assert "gender=female" in self_link
    assert "colour" not in self_link and "_query" not in self_link
    assert bundle["total"] == 2


def test_strict_rejects_unknown_parameters(client: TestClient) -> None:
    """search.html#errors: ``Prefer: handling=strict`` makes unknown or unsupported
    parameters a 400 naming them."""
    load_world(client)
    unknown = client.get("/fhir/Patient?gender=female&colour=red", headers=STRICT)
    assert unknown.status_code == 400
    assert issue_expressions(unknown) == ["colour"]
    unsupported = client.get("/fhir/Location?_query=nearby", headers=STRICT)
    assert unsupported.status_code == 400
    assert issue_expressions(unsupported) == ["_query"]
    fine = client.get("/fhir/Patient?gender=female", headers={"Prefer": "handling=strict"})
    assert fine.status_code == 200
    assert _outcomes(fine.json()) == []
    lenient = client.get("/fhir/Patient?colour=red", headers={"Prefer": "handling=lenient"})
    assert lenient.status_code == 200


def test_elements_subset_the_matches(client: TestClient) -> None:
    """search.html#elements: only the listed (and mandatory) elements, tagged SUBSETTED;
    included resources are returned whole."""
    load_world(client)
    bundle = search(
        client, "/fhir/Observation?_id=o1&_elements=status,subject&_include=Observation:subject"
    )
    (match,) = [e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "match"]
    assert set(match) == {"resourceType", "id", "meta", "status", "subject", "code"}
    assert SUBSETTED in [tag["code"] for tag in match["meta"]["tag"]]
    (included,) = [e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "include"]
    assert included == client.get("/fhir/Patient/pa").json()
    assert "_elements=status,subject" in links(bundle)["self"]


def test_summary_modes(client: TestClient) -> None:
    """search.html#summary: ``true`` keeps the summary elements, ``text`` the narrative and
    mandatory elements, ``data`` drops the narrative, ``false`` returns everything."""
    load_world(client)
    summary = search(client, "/fhir/Patient?_id=pa&_summary=true")["entry"][0]["resource"]
    assert "name" in summary and "generalPractitioner" not in summary
    assert "text" not in summary
    assert SUBSETTED in [tag["code"] for tag in summary["meta"]["tag"]]
    text = search(client, "/fhir/Patient?_id=pa&_summary=text")["entry"][0]["resource"]
    assert set(text) == {"resourceType", "id", "meta", "text"}
    data = search(client, "/fhir/Patient?_id=pa&_summary=data")["entry"][0]["resource"]
    assert "text" not in data and "name" in data
    whole = search(client, "/fhir/Patient?_id=pa&_summary=false")["entry"][0]["resource"]
    assert whole == client.get("/fhir/Patient/pa").json()


def test_pretty_and_format(client: TestClient) -> None:
    load_world(client)
    pretty = client.get("/fhir/Patient?_id=pa&_pretty=true&_format=json")
    assert pretty.status_code == 200
    assert b"\n  " in pretty.content
    assert "_pretty=true" in links(pretty.json())["self"]
    assert client.get("/fhir/Patient?_format=xml").status_code == 406


def test_errors_are_outcomes_never_server_errors(client: TestClient) -> None:
    load_world(client)
    for url in (
        "/fhir/Patient?_sort=",
        "/fhir/Patient?_include=",
        "/fhir/Patient?_elements=",
        "/fhir/Patient?_has:Observation=x",
        "/fhir/Patient?_has:Observation:subject:_has:Provenance:target:agent=Practitioner/dr",
        "/fhir/Observation?subject:Patient.general-practitioner:Practitioner.name=doctor",
        "/fhir/Observation?subject:Patient.a.b.c.d.e=x",
        "/fhir/Observation?code-value-quantity=8867-4$gt70",
        "/fhir/Observation?code-value-quantity=8867-4",
        "/fhir/Patient?birthdate=ge1980-02-29T00:00:00+01:00",
        "/fhir/Patient?_count=99999999999999999999",
        "/fhir/Patient?_cursor=" + "A" * 3000,
        "/fhir/Patient?name=%00",
        "/fhir?_type=Patient&gender=female",
    ):
        response = client.get(url)
        assert response.status_code in (200, 400), (url, response.text)
        assert response.json()["resourceType"] in ("Bundle", "OperationOutcome")


def test_full_text(client: TestClient) -> None:
    """search.html#text: ``_text`` searches the narrative, ``_content`` the whole resource,
    by words."""
    load_world(client)
    assert ids(search(client, "/fhir/Patient?_text=ana")) == {"pa"}
    assert ids(search(client, "/fhir/Patient?_text=brown")) == set()
    assert ids(search(client, "/fhir/Patient?_content=BROWN,chen")) == {"pb", "pc"}
    assert ids(search(client, "/fhir/Patient?_content=alvarez ana")) == {"pa"}
    assert issue_expressions(client.get("/fhir/Patient?_text:exact=ana")) == ["_text:exact"]
    assert issue_expressions(client.get("/fhir/Patient?_content=...")) == ["_content"]


def test_chains_and_has_through_several_links(client: TestClient) -> None:
    """search.html#chaining and #has, several links deep."""
    load_world(client)
    chained = search(
        client, "/fhir/Observation?subject:Patient.general-practitioner:Practitioner.name=doctor"
    )
    assert ids(chained) == {"o1", "o3"}
    nested = search(
        client,
        "/fhir/Patient?_has:Observation:subject:_has:Provenance:target:agent=Practitioner/dr",
    )
    assert ids(nested) == {"pa"}


def test_capability_statement_describes_search(client: TestClient) -> None:
    """capabilitystatement.html: search-type per type with each parameter's type and
    documentation, searchInclude/searchRevInclude, search-system and the compartments."""
    statement = search(client, "/fhir/metadata")
    rest = statement["rest"][0]
    assert {"code": "search-system"} in rest["interaction"]
    assert {p["name"] for p in rest["searchParam"]} >= {"_id", "_lastUpdated", "_type"}
    assert "http://hl7.org/fhir/CompartmentDefinition/patient" in rest["compartment"]
    patient = next(r for r in rest["resource"] if r["type"] == "Patient")
    assert {"code": "search-type"} in patient["interaction"]
    params = {p["name"]: p for p in patient["searchParam"]}
    assert params["family"]["type"] == "string"
    assert params["family"]["definition"] == "http://hl7.org/fhir/SearchParameter/individual-family"
    assert params["family"]["documentation"]
    assert "_query" not in params
    assert params["_filter"]["type"] == "special"
    assert params["_text"]["documentation"].startswith("Full text")
    assert "Patient:general-practitioner" in patient["searchInclude"]
    assert "Observation:subject" in patient["searchRevInclude"]
    assert "Provenance:target" in patient["searchRevInclude"]
    assert len(entries(search(client, "/fhir/Patient?_count=0"))) == 0

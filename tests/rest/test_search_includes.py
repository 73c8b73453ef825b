"""``_include``/``_revinclude`` (https://hl7.org/fhir/R4/search.html#include) and compartment
search (https://hl7.org/fhir/R4/compartmentdefinition.html, http.html#search) over HTTP.

Included resources come with ``search.mode`` ``include``, never repeat a match, and follow
``:iterate`` round after round."""

from __future__ import annotations

from starlette.testclient import TestClient

from tests.rest.search_support import (
    FORM,
    entries,
    ids,
    issue_expressions,
    links,
    load_world,
    put,
    search,
)


def test_include_adds_the_targets_once(client: TestClient) -> None:
    """search.html#include: ``_include=Observation:subject`` adds each referenced Patient once,
    with mode ``include``."""
    load_world(client)
    bundle = search(client, "/fhir/Observation?_include=Observation:subject")
    assert ids(bundle) == {"o1", "o2", "o3"}
    assert sorted(entries(bundle, "include")) == ["Patient/pa", "Patient/pb"]
    modes = [e["search"]["mode"] for e in bundle["entry"]]
    assert modes == sorted(modes, key=lambda m: m != "match")  # matches first
    assert bundle["total"] == 3  # included resources do not count


def test_include_target_type_wildcard_and_no_repeat_of_matches(client: TestClient) -> None:
    """search.html#include: ``:Type`` limits the targets; ``*`` follows every reference
    parameter; a match is never also an include."""
    load_world(client)
    typed = search(client, "/fhir/Observation?_id=o3&_include=Observation:performer:Practitioner")
    assert entries(typed, "include") == ["Practitioner/dr"]
    other = search(client, "/fhir/Observation?_id=o3&_include=Observation:performer:Organization")
    assert entries(other, "include") == []
    everything = search(client, "/fhir/Observation?_id=o1&_include=Observation:*")
    assert set(entries(everything, "include")) == {"Patient/pa", "Encounter/e1"}
    put(client, {**_obs_by_other("o5"), "hasMember": [{"reference": "Observation/o1"}]})
    both = search(client, "/fhir/Observation?_id=o1,o5&_include=Observation:has-member")
    assert ids(both) == {"o1", "o5"}
    assert entries(both, "include") == []


def test_revinclude(client: TestClient) -> None:
    """search.html#include: ``_revinclude=Provenance:target`` adds Provenance pointing at a
    match."""
    load_world(client)
    bundle = search(client, "/fhir/Observation?code=8867-4&_revinclude=Provenance:target")
    assert ids(bundle) == {"o1", "o2"}
    assert entries(bundle, "include") == ["Provenance/prov"]
    patients = search(client, "/fhir/Patient?_id=pa&_revinclude=Observation:subject")
    assert set(entries(patients, "include")) == {"Observation/o1", "Observation/o3"}


def test_iterate_follows_included_resources(client: TestClient) -> None:
    """search.html#revinclude: ``:iterate`` also applies to what was included; without it an
    include applies to the matches only."""
    load_world(client)
    plain = search(
        client,
        "/fhir/Observation?_id=o1&_include=Observation:subject"
        "&_include=Patient:general-practitioner",
    )
    assert entries(plain, "include") == ["Patient/pa"]
    iterated = search(
        client,
        "/fhir/Observation?_id=o1&_include=Observation:subject"
        "&_include:iterate=Patient:general-practitioner",
    )
    assert set(entries(iterated, "include")) == {"Patient/pa", "Practitioner/dr"}
    reverse = search(
        client,
        "/fhir/Provenance?_include=Provenance:target&_revinclude:iterate=Observation:encounter"
        "&_include:iterate=Observation:encounter",
    )
    assert set(entries(reverse, "include")) == {"Observation/o1", "Encounter/e1"}


def test_deleted_targets_are_not_included(client: TestClient) -> None:
    load_world(client)
    assert client.delete("/fhir/Patient/pb").status_code == 204
    bundle = search(client, "/fhir/Observation?_include=Observation:subject")
    assert entries(bundle, "include") == ["Patient/pa"]


def test_patient_compartment(client: TestClient) -> None:
    """compartmentdefinition-patient.html: ``GET [base]/Patient/pa/Observation`` finds the
    Observations whose subject or performer is Patient/pa; parameters narrow it further."""
    load_world(client)
    put(client, {**_obs_by_other("o4"), "performer": [{"reference": "Patient/pa"}]})
    bundle = search(client, "/fhir/Patient/pa/Observation")
    assert ids(bundle) == {"o1", "o3", "o4"}
    assert links(bundle)["self"].split("?")[0].endswith("/fhir/Patient/pa/Observation")
    assert ids(search(client, "/fhir/Patient/pa/Observation?code=1234-5")) == {"o3"}
    assert ids(search(client, "/fhir/Patient/pa/Encounter")) == {"e1"}
    assert ids(search(client, "/fhir/Patient/nobody/Observation")) == set()
    posted = client.post(
        "/fhir/Patient/pa/Observation/_search", content="code=8867-4", headers=FORM
    )
    assert ids(posted.json()) == {"o1"}
    included = search(client, "/fhir/Patient/pb/Observation?_include=Observation:subject")
    assert entries(included, "include") == ["Patient/pb"]


def _obs_by_other(id: str) -> dict[str, object]:
    return {
        "resourceType": "Observation",
        "id": id,
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": "Patient/pc"},
    }


def test_encounter_compartment_holds_the_encounter(client: TestClient) -> None:
    """compartmentdefinition-encounter.html (``{def}``): the Encounter is in its own
    compartment, and so are Observations of that encounter."""
    load_world(client)
    assert ids(search(client, "/fhir/Encounter/e1/Encounter")) == {"e1"}
    assert ids(search(client, "/fhir/Encounter/e1/Observation")) == {"o1"}


def test_compartment_errors(client: TestClient) -> None:
    """Not a compartment: 404; a type outside the compartment or a bad id: 400."""
    load_world(client)
    assert client.get("/fhir/Observation/o1/Patient").status_code == 404
    assert client.get("/fhir/Patient/pa/Nope").status_code == 404
    outside = client.get("/fhir/Patient/pa/Organization")
    assert outside.status_code == 400
    assert client.get("/fhir/Patient/pa/Observation?code=a|b|c&date=never").status_code == 400
    bad_id = client.get("/fhir/Patient/bad$id/Observation")
    assert bad_id.status_code in (400, 404)
    assert client.put("/fhir/Patient/pa/Observation").status_code == 405
    assert issue_expressions(client.get("/fhir/Patient/pa/Observation?date=x")) == ["date"]

"""search over HTTP: https://hl7.org/fhir/R4/http.html#search and
https://hl7.org/fhir/R4/search.html. GET and POST ``_search`` give the same results; type-,
system- and parameter-level behaviour; bad input is a 400 OperationOutcome naming the parameter,
never a 500."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.rest.conftest import make_client
from tests.rest.search_support import (
    FHIR_JSON,
    FORM,
    entries,
    ids,
    issue_expressions,
    links,
    load_world,
    search,
)
from tests.support.databases import PostgresDatabase

QUERIES = [
    "gender=female",
    "family=alv",
    "family:exact=Brown",
    "birthdate=ge1990",
    "identifier=urn:mrn|12",
    "_id=pa,pb",
    "gender=female&birthdate=lt2000",
    "general-practitioner=Practitioner/dr",
    "_sort=-birthdate&_count=2",
]


def _bundle_view(bundle: dict[str, object]) -> tuple[object, ...]:
    return (bundle["type"], bundle.get("total"), entries(bundle), links(bundle).get("self"))  # type: ignore[arg-type]


@pytest.mark.parametrize("querystring", QUERIES)
def test_get_and_post_search_are_identical(client: TestClient, querystring: str) -> None:
    """http.html#search: ``POST [type]/_search`` with a form body searches like GET."""
    load_world(client)
    got = search(client, f"/fhir/Patient?{querystring}")
    assert got["type"] == "searchset"
    posted = client.post("/fhir/Patient/_search", content=querystring, headers=FORM)
    assert posted.status_code == 200, posted.text
    assert _bundle_view(posted.json()) == _bundle_view(got)
    # Parameters may also be split between the query string and the body.
    first, _, rest = querystring.partition("&")
    mixed = client.post(f"/fhir/Patient/_search?{first}", content=rest, headers=FORM)
    assert entries(mixed.json()) == entries(got)


def test_parameter_types_and_references(client: TestClient) -> None:
    """search.html#ptypes; #reference: a bare id means any target type with that id."""
    load_world(client)
    cases = {
        "/fhir/Patient?gender=female": {"pa", "pc"},
        "/fhir/Patient?family=ALVAREZ": {"pa"},
        "/fhir/Patient?birthdate=1990": {"pb"},
        "/fhir/Patient?_id=pc": {"pc"},
        "/fhir/Observation?subject=pa": {"o1", "o3"},
        "/fhir/Observation?subject=Patient/pa": {"o1", "o3"},
        "/fhir/Observation?patient=pa": {"o1", "o3"},
        "/fhir/Observation?code=http://loinc.org|8867-4": {"o1", "o2"},
        "/fhir/Observation?value-quantity=gt80": {"o2"},
        "/fhir/Observation?code=8867-4&subject=pb": {"o2"},
        "/fhir/Observation?subject:Patient.family=alv": {"o1", "o3"},
        "/fhir/Patient?_has:Observation:subject:code=1234-5": {"pa"},
        "/fhir/Patient?gender=other": set(),
    }
    for url, wanted in cases.items():
        assert ids(search(client, url)) == wanted, url


def test_system_level_search(client: TestClient) -> None:
    """search.html#all: ``GET [base]?`` searches every type, ``_type`` limits it."""
    load_world(client)
    bundle = search(client, "/fhir?_id=pa,o1,dr")
    assert set(entries(bundle)) == {"Patient/pa", "Observation/o1", "Practitioner/dr"}
    bundle = search(client, "/fhir?_type=Patient,Observation&_id=pa,o1,dr")
    assert set(entries(bundle)) == {"Patient/pa", "Observation/o1"}
    assert links(bundle)["self"].split("?")[0].endswith("/fhir")
    posted = client.post("/fhir/_search", content="_type=Patient&_id=pa,o1", headers=FORM)
    assert entries(posted.json()) == ["Patient/pa"]
    assert search(client, "/fhir/?_type=Encounter")["total"] == 1
    every = search(client, "/fhir?_count=100")
    assert len(entries(every)) == 9


def test_entries_carry_full_urls_and_stored_content(client: TestClient) -> None:
    """search.html#return: entries have fullUrl, the resource and search.mode."""
    load_world(client)
    bundle = search(client, "/fhir/Patient?_id=pb")
    (entry,) = bundle["entry"]
    assert entry["fullUrl"] == "http://testserver/fhir/Patient/pb"
    assert entry["search"] == {"mode": "match"}
    assert entry["resource"] == client.get("/fhir/Patient/pb").json()
    assert bundle["total"] == 1


def test_unknown_type_is_404(client: TestClient) -> None:
    assert client.get("/fhir/Patientt?name=x").status_code == 404
    assert client.post("/fhir/Patientt/_search", content="", headers=FORM).status_code == 404


BAD = [
    ("/fhir/Patient?birthdate=yesterday", "birthdate"),
    ("/fhir/Patient?birthdate=ge", "birthdate"),
    ("/fhir/Patient?_count=abc", "_count"),
    ("/fhir/Patient?_count=-1", "_count"),
    ("/fhir/Patient?_sort=nonsense", "_sort"),
    ("/fhir/Patient?_cursor=abc", "_cursor"),
    ("/fhir/Patient?_cursor=", "_cursor"),
    ("/fhir/Patient?_total=maybe", "_total"),
    ("/fhir/Patient?_summary=everything", "_summary"),
    ("/fhir/Patient?_include=Foo:bar", "_include"),
    ("/fhir/Patient?gender:below=female", "gender:below"),
    ("/fhir/Patient?gender:in=http://example.org/ValueSet/unknown", "gender:in"),
    ("/fhir/Patient?family:sounds=x", "family:sounds"),
    ("/fhir/Patient?gender=", "gender"),
    ("/fhir/Observation?value-quantity=abc", "value-quantity"),
    ("/fhir/Observation?subject=Nope/1", "subject"),
    ("/fhir/Observation?subject.name=x", "subject.name"),
    ("/fhir/Patient?_has:Nope:x:y=1", "_has:Nope:x:y"),
    ("/fhir?_type=Nope", "_type"),
]


@pytest.mark.parametrize(("url", "expression"), BAD)
def test_bad_parameters_are_400_naming_the_parameter(
    client: TestClient, url: str, expression: str
) -> None:
    """search.html#errors: a malformed value is a 400 OperationOutcome naming the parameter."""
    load_world(client)
    response = client.get(url)
    assert response.status_code == 400, response.text
    assert expression in issue_expressions(response)


def test_search_methods_and_media_types(client: TestClient) -> None:
    """http.html#search: ``_search`` takes POST with a form body only."""
    get_search = client.get("/fhir/Patient/_search")
    assert get_search.status_code == 405
    assert get_search.headers["allow"] == "POST"
    assert (
        client.delete("/fhir/Patient").status_code == 400
    )  # a conditional delete without criteria
    json_body = client.post("/fhir/Patient/_search", content=b'{"gender":"x"}', headers=FHIR_JSON)
    assert json_body.status_code == 415
    empty = client.post("/fhir/Patient/_search")
    assert empty.status_code == 200
    assert empty.json()["type"] == "searchset"


@pytest.fixture
def small_client(
    backend: str, tmp_path: Path, postgres_database: PostgresDatabase
) -> Iterator[TestClient]:
    if backend == "postgresql":
        postgres_database.require()
    with make_client(
        backend, tmp_path, postgres_database, default_page_size=2, max_page_size=3
    ) as test_client:
        yield test_client


def test_count_over_the_cap_is_capped(small_client: TestClient) -> None:
    """search.html#count: the server may return fewer than ``_count``; the links say what
    page size was used."""
    load_world(small_client)
    default = search(small_client, "/fhir/Patient")
    assert len(entries(default)) == 2
    assert "_count=2" in links(default)["self"]
    capped = search(small_client, "/fhir/Patient?_count=500")
    assert len(entries(capped)) == 3
    assert "_count=3" in links(capped)["self"]
    assert "_count=500" not in links(capped)["self"]
    assert capped["total"] == 3

"""SECURITY.md "Resource limits" and "Operations", over the real app, one test per promise that
had no HTTP-level test yet (the others: tests/rest/test_bad_input.py for 1 MB names, nesting and
the body limit; tests/rest/test_search_basics.py for ``_count`` capping; test_transaction.py for
the transaction entry limit; tests/store/sql_search/test_search_sql.py for the statement timeout;
tests/security/test_rate_limits.py for 429s).

Specs: https://hl7.org/fhir/R4/search.html (#count, #include, #chaining, #has),
https://hl7.org/fhir/R4/http.html (#transaction, status codes), https://hl7.org/fhir/R4/json.html,
https://hl7.org/fhir/R4/datatypes.html#string (SHALL NOT exceed 1 MB) and
https://hl7.org/fhir/R4/security.html (no caching of PHI, no internal details in errors).
"""

from __future__ import annotations

import platform
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from starlette.testclient import TestClient

from healthbridge import __version__
from healthbridge.store.repository import MAX_INCLUDED
from tests.rest.conftest import make_client

FHIR_JSON = {"Content-Type": "application/fhir+json"}
JSON_PATCH = {"Content-Type": "application/json-patch+json"}
MB = 1024 * 1024


@pytest.fixture(params=["memory", "sqlite"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    with make_client(request.param, tmp_path, no_auth=True, max_page_size=2) as test_client:
        yield test_client


def create(client: TestClient, resource: dict[str, Any]) -> str:
    response = client.post(f"/fhir/{resource['resourceType']}", json=resource, headers=FHIR_JSON)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def outcome(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["resourceType"] == "OperationOutcome"
    return body


def links(bundle: dict[str, Any]) -> dict[str, str]:
    return {link["relation"]: link["url"] for link in bundle.get("link", [])}


# -- _count, includes, chains ----------------------------------------------------------------
def test_count_over_the_cap_pages_with_next_links(client: TestClient) -> None:
    """search.html#count: the server may return fewer; the rest is reachable through ``next``."""
    for _ in range(5):
        create(client, {"resourceType": "Patient", "gender": "female"})
    seen: list[str] = []
    url: str | None = "/fhir/Patient?gender=female&_count=500"
    while url:
        bundle = client.get(url).json()
        assert len(bundle.get("entry", [])) <= 2
        assert "_count=2" in links(bundle)["self"]
        seen += [e["resource"]["id"] for e in bundle.get("entry", [])]
        following = links(bundle).get("next")
        url = None if following is None else "/fhir/Patient?" + urlsplit(following).query
    assert len(seen) == len(set(seen)) == 5


@pytest.mark.parametrize("value", ["-1", "abc", "1.5", "", "0x10", "1e3", "99999999999999999999"])
def test_malformed_count_is_400(client: TestClient, value: str) -> None:
    body = outcome(client.get(f"/fhir/Patient?_count={value}"), 400)
    assert body["issue"][0]["expression"] == ["_count"]


def test_too_many_include_parameters_are_400(client: TestClient) -> None:
    query = "&".join(["_include=Observation:subject"] * 11)
    body = outcome(client.get(f"/fhir/Observation?{query}"), 400)
    assert body["issue"][0]["code"] == "too-costly"
    assert client.get("/fhir/Observation?_include=Observation:subject").status_code == 200


def test_included_resources_are_capped_per_page_with_a_warning(tmp_path: Path) -> None:
    """search.html#include: the server may limit what it includes; it says so in an
    OperationOutcome entry (search mode ``outcome``)."""
    with make_client("memory", tmp_path, no_auth=True) as client:
        patient = create(client, {"resourceType": "Patient"})
        observation = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "subject": {"reference": f"Patient/{patient}"},
        }
        entry = {"resource": observation, "request": {"method": "POST", "url": "Observation"}}
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [entry] * (MAX_INCLUDED + 5),
        }
        assert client.post("/fhir", json=bundle, headers=FHIR_JSON).status_code == 200
        found = client.get(f"/fhir/Patient?_id={patient}&_revinclude=Observation:subject").json()
        modes = [e["search"]["mode"] for e in found["entry"]]
        assert modes.count("match") == 1
        assert modes.count("include") == MAX_INCLUDED
        warning = next(e["resource"] for e in found["entry"] if e["search"]["mode"] == "outcome")
        assert warning["issue"][0]["code"] == "incomplete"
        assert "_revinclude" in warning["issue"][0]["diagnostics"]


def test_chains_deeper_than_the_limit_are_400(client: TestClient) -> None:
    three = "subject:Patient.organization.partof.name=x"
    assert client.get(f"/fhir/Observation?{three}").status_code == 200
    four = "subject:Patient.organization.partof.partof.name=x"
    body = outcome(client.get(f"/fhir/Observation?{four}"), 400)
    assert body["issue"][0]["code"] == "too-costly"
    has = "_has:Observation:subject:" * 4 + "code=x"
    assert outcome(client.get(f"/fhir/Patient?{has}"), 400)["issue"][0]["code"] == "too-costly"


# -- bodies -------------------------------------------------------------------------------------
def test_batch_over_the_entry_limit_is_413_before_any_entry_runs(tmp_path: Path) -> None:
    with make_client("memory", tmp_path, no_auth=True, max_bundle_entries=2) as client:
        entry = {"resource": {"resourceType": "Patient"}, "request": {"method": "POST"}}
        entry["request"]["url"] = "Patient"  # type: ignore[index]
        batch = {"resourceType": "Bundle", "type": "batch", "entry": [entry] * 3}
        body = outcome(client.post("/fhir", json=batch, headers=FHIR_JSON), 413)
        assert "at most 2" in body["issue"][0]["diagnostics"]
        assert client.get("/fhir/Patient?_summary=count").json()["total"] == 0


def test_a_streamed_body_over_the_limit_is_413(tmp_path: Path) -> None:
    """No Content-Length (chunked): the limit applies while reading, before parsing."""
    with make_client("memory", tmp_path, no_auth=True, max_body_bytes=4096) as client:

        def chunks() -> Iterator[bytes]:
            yield b'{"resourceType":"Patient","name":[{"text":"'
            for _ in range(100):
                yield b"x" * 1000

        response = client.post("/fhir/Patient", content=chunks(), headers=FHIR_JSON)
        assert outcome(response, 413)["issue"][0]["code"] == "too-costly"
        lying = {**FHIR_JSON, "Content-Length": "a lot"}
        assert client.post("/fhir/Patient", content=b"{}", headers=lying).status_code == 400


def test_deep_json_is_refused_quickly_in_every_body(client: TestClient) -> None:
    patient = create(client, {"resourceType": "Patient"})
    deep = b"[" * 100_000 + b"]" * 100_000
    bodies = [
        ("POST", "/fhir/Patient", b'{"resourceType":"Patient","x":' + deep + b"}", FHIR_JSON),
        ("POST", "/fhir", b'{"resourceType":"Bundle","type":"batch","x":' + deep + b"}", FHIR_JSON),
        (
            "PATCH",
            f"/fhir/Patient/{patient}",
            b'[{"op":"add","path":"/extension","value":' + deep + b"}]",
            JSON_PATCH,
        ),
    ]
    for method, url, body, headers in bodies:
        started = time.perf_counter()
        response = client.request(method, url, content=body, headers=headers)
        assert time.perf_counter() - started < 2.0
        assert outcome(response, 400)["issue"][0]["code"] == "structure", url


def test_strings_over_one_megabyte_are_rejected_everywhere(client: TestClient) -> None:
    big = "x" * (MB + 1)
    patient = create(client, {"resourceType": "Patient", "name": [{"text": "y" * MB}]})
    extension = {"resourceType": "Patient", "extension": [{"url": "http://x", "valueString": big}]}
    response = client.post("/fhir/Patient", json=extension, headers=FHIR_JSON)
    assert "Patient.extension[0]" in outcome(response, 400)["issue"][0]["expression"][0]
    entry = {
        "resource": {"resourceType": "Patient", "name": [{"text": big}]},
        "request": {"method": "POST", "url": "Patient"},
    }
    transaction = {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}
    response = client.post("/fhir", json=transaction, headers=FHIR_JSON)
    assert outcome(response, 400)["issue"][0]["expression"] == [
        "Bundle.entry[0].resource.name[0].text"
    ]
    patch = [{"op": "add", "path": "/name/0/family", "value": big}]
    response = client.patch(f"/fhir/Patient/{patient}", json=patch, headers=JSON_PATCH)
    assert response.status_code in (400, 422)
    assert client.get(f"/fhir/Patient/{patient}").json()["meta"]["versionId"] == "1"
    # Narrative is XHTML, not a string: its own larger limit (4 MB; validation/primitives.py).
    div = '<div xmlns="http://www.w3.org/1999/xhtml">' + "x" * (4 * MB) + "</div>"
    narrative = {"resourceType": "Patient", "text": {"status": "generated", "div": div}}
    assert client.post("/fhir/Patient", json=narrative, headers=FHIR_JSON).status_code == 400


# -- operations ---------------------------------------------------------------------------------
def test_phi_responses_are_never_cached(client: TestClient) -> None:
    patient = create(client, {"resourceType": "Patient", "gender": "female"})
    minimal = {**FHIR_JSON, "Prefer": "return=minimal"}
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": f"Patient/{patient}"}}],
    }
    responses = {
        "create": client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=FHIR_JSON),
        "create minimal": client.post(
            "/fhir/Patient", json={"resourceType": "Patient"}, headers=minimal
        ),
        "read": client.get(f"/fhir/Patient/{patient}"),
        "vread": client.get(f"/fhir/Patient/{patient}/_history/1"),
        "history": client.get(f"/fhir/Patient/{patient}/_history"),
        "type history": client.get("/fhir/Patient/_history"),
        "system history": client.get("/fhir/_history"),
        "search": client.get("/fhir/Patient?gender=female"),
        "posted search": client.post("/fhir/Patient/_search", data={"gender": "female"}),
        "batch": client.post("/fhir", json=batch, headers=FHIR_JSON),
        "patch": client.patch(
            f"/fhir/Patient/{patient}",
            json=[{"op": "replace", "path": "/gender", "value": "male"}],
            headers=JSON_PATCH,
        ),
        "not found": client.get("/fhir/Patient/nobody"),
        "invalid": client.get("/fhir/Patient?_count=abc"),
    }
    for name, response in responses.items():
        assert response.status_code < 500, name
        assert response.headers.get("cache-control") == "no-store", name


def test_errors_show_no_internals(client: TestClient) -> None:
    """No stack traces, SQL, file paths, library names or versions in any error."""
    create(client, {"resourceType": "Patient"})
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/fhir/Patient", {"content": b'{"resourceType":', "headers": FHIR_JSON}),
        ("POST", "/fhir/Patient", {"content": b"\xff\xfe", "headers": FHIR_JSON}),
        ("POST", "/fhir/Patient", {"content": b"[" * 50_000, "headers": FHIR_JSON}),
        ("GET", "/fhir/Nope/1", {}),
        ("GET", "/fhir/Patient?_sort=bogus", {}),
        ("GET", "/fhir/Patient?_cursor=garbage", {}),
        ("GET", "/fhir/Patient?birthdate=ge2020-13-45", {}),
        ("GET", "/fhir/Patient?name:bogus=x", {"headers": {"Prefer": "handling=strict"}}),
        ("GET", "/fhir/Patient/../../etc/passwd", {}),
        ("DELETE", "/fhir/metadata", {}),
        ("PUT", "/fhir/Patient/a", {"content": b"<x/>", "headers": {"Content-Type": "text/xml"}}),
        ("GET", "/no/such/route", {}),
    ]
    forbidden = [
        "Traceback",
        ".py",
        "SELECT",
        "sqlite",
        "apsw",
        "asyncpg",
        "starlette",
        "msgspec",
        f"healthbridge {__version__}",
        f"/{__version__}",
        platform.python_version(),
    ]
    for method, url, kwargs in requests:
        response = client.request(method, url, **kwargs)
        assert 400 <= response.status_code < 500, (url, response.status_code)
        text = response.text
        for word in forbidden:
            assert word.lower() not in text.lower(), (url, word, text)
        assert "server" not in response.headers or __version__ not in response.headers["server"]


def test_capped_page_links_keep_the_search(client: TestClient) -> None:
    for _ in range(3):
        create(client, {"resourceType": "Patient", "gender": "male"})
    bundle = client.get("/fhir/Patient?gender=male&_count=50").json()
    query = dict(parse_qsl(urlsplit(links(bundle)["next"]).query))
    assert query["gender"] == "male" and query["_count"] == "2" and "_cursor" in query

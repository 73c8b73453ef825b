"""Property test: whatever search parameters a client sends, the answer is a searchset Bundle
or a 4xx OperationOutcome, never a 500 (https://hl7.org/fhir/R4/search.html#errors;
../shared/SECURITY.md "Hostile input (zero 5xx)"), on every backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from tests.rest.conftest import make_client
from tests.rest.search_support import FORM, load_world
from tests.support.databases import BACKEND_PARAMS, PostgresDatabase

NAMES = st.sampled_from(
    [
        "name",
        "family:exact",
        "given:contains",
        "birthdate",
        "birthdate:missing",
        "gender",
        "gender:not",
        "gender:text",
        "identifier",
        "identifier:of-type",
        "general-practitioner",
        "general-practitioner:Practitioner",
        "general-practitioner:identifier",
        "general-practitioner:Practitioner.name",
        "organization.name",
        "_has:Observation:subject:code",
        "_has:Observation:subject:value-quantity",
        "_id",
        "_lastUpdated",
        "_tag",
        "_profile:below",
        "_count",
        "_sort",
        "_include",
        "_revinclude:iterate",
        "_summary",
        "_elements",
        "_total",
        "_cursor",
        "_type",
        "_text",
        "_filter",
        "x",
        "",
    ]
)
VALUES = st.text(max_size=12) | st.sampled_from(
    [
        "ge2020",
        "2020-13",
        "lt1980-02-29T10:00:00Z",
        "a,b",
        "a\\,b",
        "|",
        "||",
        "urn:mrn|12",
        "http://x|y|z",
        "-1",
        "99999999999999999999",
        "1e400",
        "Patient/pa",
        "Practitioner/dr",
        "http://example.org/fhir/Patient/pa",
        "true",
        "false",
        "*",
        "Patient:*",
        "Observation:subject",
        "-birthdate,family",
        "count",
        "accurate",
        "",
    ]
)
PARAMS = st.lists(st.tuples(NAMES, VALUES), max_size=5)


@pytest.fixture(scope="module", params=BACKEND_PARAMS)
def fuzz_client(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_database: PostgresDatabase,
) -> Iterator[TestClient]:
    kind = str(request.param)
    if kind == "postgresql":
        postgres_database.require()
    path = Path(tmp_path_factory.mktemp(f"search-fuzz-{kind}"))
    with make_client(kind, path, postgres_database) as client:
        load_world(client)
        yield client


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(params=PARAMS, system=st.booleans(), post=st.booleans())
def test_any_search_gets_a_fhir_answer(
    fuzz_client: TestClient, params: list[tuple[str, str]], system: bool, post: bool
) -> None:
    path = "/fhir" if system else "/fhir/Patient"
    if post:
        response = fuzz_client.post(f"{path}/_search", content=urlencode(params), headers=FORM)
    else:
        response = fuzz_client.get(path, params=params)
    assert response.status_code in (200, 400), (params, response.text)
    body = response.json()
    assert body["resourceType"] == ("Bundle" if response.status_code == 200 else "OperationOutcome")

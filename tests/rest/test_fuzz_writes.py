"""Property test: whatever JSON a client sends to create or update, the answer is a FHIR
response (201/200 or a 4xx OperationOutcome), never a 500, and a rejected write leaves what is
stored untouched. ../shared/SECURITY.md "Hostile input (zero 5xx)";
https://hl7.org/fhir/R4/http.html#2.21.0.4."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from tests.rest.conftest import make_client

FHIR_JSON = {"Content-Type": "application/fhir+json"}
KEYS = st.sampled_from(
    [
        "resourceType",
        "id",
        "meta",
        "name",
        "gender",
        "birthDate",
        "active",
        "extension",
        "text",
        "contained",
        "identifier",
        "telecom",
        "_birthDate",
        "multipleBirthInteger",
        "deceasedBoolean",
        "valueQuantity",
        "x",
    ]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["Patient", "female", "1980-02-29", "2023-02-30", "\u0000", ""])
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=25,
)
BODIES = st.dictionaries(KEYS, JSON, max_size=6).map(
    lambda d: {"resourceType": "Patient", **d} if "resourceType" not in d else d
)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with make_client("sqlite", Path(tmp_path_factory.mktemp("fuzz"))) as test_client:
        test_client.put(
            "/fhir/Patient/keep",
            json={"resourceType": "Patient", "id": "keep", "gender": "female"},
            headers=FHIR_JSON,
        )
        yield test_client


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=BODIES)
def test_any_body_gets_a_fhir_answer_and_rejections_store_nothing(
    client: TestClient, body: dict[str, object]
) -> None:
    before = client.get("/fhir/Patient/keep").content
    raw = json.dumps(body).encode()
    created = client.post("/fhir/Patient", content=raw, headers=FHIR_JSON)
    assert created.status_code in (201, 400, 422), created.text
    if created.status_code != 201:
        assert created.json()["resourceType"] == "OperationOutcome"
    updated = client.put(
        "/fhir/Patient/keep", content=json.dumps({**body, "id": "keep"}), headers=FHIR_JSON
    )
    assert updated.status_code in (200, 400, 422), updated.text
    if updated.status_code != 200:
        assert updated.json()["resourceType"] == "OperationOutcome"
        assert client.get("/fhir/Patient/keep").content == before

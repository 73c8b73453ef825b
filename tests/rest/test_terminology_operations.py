"""Terminology operations over HTTP (https://hl7.org/fhir/R4/terminology-service.html):
CodeSystem $lookup/$validate-code/$subsumes, ValueSet $expand/$validate-code, ConceptMap
$translate and ``metadata?mode=terminology``, on the R4 core content shipped with the server, on
uploaded CodeSystem/ValueSet/ConceptMap resources and on a code system loaded into the
terminology store."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from healthbridge.app import create_app
from healthbridge.fhir.terminology.concepts import (
    CodeSystemInfo,
    Concept,
    ConceptProperty,
    Designation,
)
from healthbridge.settings import Settings
from healthbridge.store.repository import Repository
from healthbridge.store.terminology import TerminologyStore
from tests.support.databases import PostgresDatabase, open_backend

GENDER = "http://hl7.org/fhir/administrative-gender"
GENDER_VS = "http://hl7.org/fhir/ValueSet/administrative-gender"
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
ENCOUNTER_VS = "http://terminology.hl7.org/ValueSet/v3-ActEncounterCode"
OBS_STATUS_VS = "http://hl7.org/fhir/ValueSet/observation-status"
LOADED = "http://example.org/loaded"
SYN = ("http://snomed.info/sct", "900000000000013009")

LOADED_CONCEPTS = [
    Concept("100", "Clinical finding"),
    Concept(
        "200",
        "Heart disease",
        parents=("100",),
        designations=(Designation("Cardiac disorder", "en", SYN),),
        properties=(ConceptProperty("site", "heart"),),
    ),
    Concept("210", "Heart failure", parents=("200",)),
    Concept("211", "Left heart failure", parents=("210",)),
    Concept("212", "Old heart failure", parents=("210",), inactive=True),
    Concept("300", "Lung disease", parents=("100",), properties=(ConceptProperty("site", "lung"),)),
]


class _Closing:
    def __init__(self, repo: Repository, stack: AsyncExitStack) -> None:
        self._repo = repo
        self._stack = stack

    def __getattr__(self, name: str) -> object:
        return getattr(self._repo, name)

    async def close(self) -> None:
        await self._stack.aclose()


async def _load(store: TerminologyStore) -> None:
    await store.start_load(CodeSystemInfo(url=LOADED, version="2024", name="Loaded"), "fp")
    await store.load_concepts(LOADED, "2024", LOADED_CONCEPTS, len(LOADED_CONCEPTS))
    await store.finish_load(LOADED, "2024")


def _client(kind: str, tmp_path: Path, postgres: PostgresDatabase | None) -> TestClient:
    """The app over a backend holding the synthetic loaded code system."""
    settings = Settings(data_dir=tmp_path, access_log=False, no_auth=True)
    stack = AsyncExitStack()

    async def factory() -> Repository:
        repo = await stack.enter_async_context(open_backend(kind, tmp_path, postgres))  # type: ignore[arg-type]
        await _load(repo.terminology)
        return _Closing(repo, stack)  # type: ignore[return-value]

    return TestClient(
        create_app(settings, repository_factory=factory), raise_server_exceptions=False
    )


@pytest.fixture
def api(backend: str, tmp_path: Path, postgres_database: PostgresDatabase) -> Iterator[TestClient]:
    if backend == "postgresql":
        postgres_database.require()
    with _client(backend, tmp_path, postgres_database) as client:
        yield client


@pytest.fixture
def core(tmp_path: Path) -> Iterator[TestClient]:
    with _client("memory", tmp_path, None) as client:
        yield client


def params(body: dict[str, Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for p in body["parameter"]:
        value = next((v for k, v in p.items() if k.startswith("value")), p.get("part"))
        out.setdefault(p["name"], []).append(value)
    return out


def props(body: dict[str, Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for part in params(body).get("property", []):
        named = {p["name"]: next(v for k, v in p.items() if k.startswith("value")) for p in part}
        out.setdefault(named["code"], []).append(named["value"])
    return out


def codes(value_set: dict[str, Any]) -> list[str]:
    return [c["code"] for c in value_set["expansion"].get("contains", [])]


def get(client: TestClient, path: str, **query: Any) -> Any:
    return client.get(f"/fhir/{path}", params=query)


def post(client: TestClient, path: str, *pairs: dict[str, Any]) -> Any:
    body = {"resourceType": "Parameters", "parameter": list(pairs)}
    return client.post(
        f"/fhir/{path}", json=body, headers={"content-type": "application/fhir+json"}
    )


# --- R4 core content -------------------------------------------------------------------------


def test_lookup_core_code(core: TestClient) -> None:
    response = get(core, "CodeSystem/$lookup", system=GENDER, code="female")
    assert response.status_code == 200, response.text
    found = params(response.json())
    assert found["display"] == ["Female"]
    assert found["name"] == ["AdministrativeGender"]
    assert found["version"] == ["4.0.1"]


def test_lookup_nested_concepts_have_parent_and_child(core: TestClient) -> None:
    amb = props(get(core, "CodeSystem/$lookup", system=ACT, code="AMB").json())
    assert amb["parent"] == ["_ActEncounterCode"]
    group = get(core, "CodeSystem/$lookup", system=ACT, code="_ActEncounterCode").json()
    assert "AMB" in props(group)["child"] and props(group)["notSelectable"] == [True]
    only = props(get(core, "CodeSystem/$lookup", system=ACT, code="AMB", property="parent").json())
    assert set(only) == {"parent"}


def test_lookup_errors(core: TestClient) -> None:
    unknown_code = get(core, "CodeSystem/$lookup", system=GENDER, code="nope")
    assert unknown_code.status_code == 404
    assert "nope" in unknown_code.json()["issue"][0]["diagnostics"]
    assert get(core, "CodeSystem/$lookup", system="urn:nowhere", code="x").status_code == 404
    missing = get(core, "CodeSystem/$lookup", system=GENDER)
    assert missing.status_code == 400 and missing.json()["issue"][0]["code"] == "required"
    wrong = core.post(
        "/fhir/CodeSystem/$lookup",
        json={"resourceType": "Patient"},
        headers={"content-type": "application/fhir+json"},
    )
    assert wrong.status_code == 400 and wrong.json()["resourceType"] == "OperationOutcome"


def test_validate_code_against_a_core_value_set(core: TestClient) -> None:
    ok = params(
        get(core, "ValueSet/$validate-code", url=GENDER_VS, system=GENDER, code="male").json()
    )
    assert ok["result"] == [True] and ok["display"] == ["Male"]
    bad = params(
        get(core, "ValueSet/$validate-code", url=GENDER_VS, system=GENDER, code="x").json()
    )
    assert bad["result"] == [False] and "x" in bad["message"][0]
    # A wrong display is a warning: the code is still valid.
    display = get(
        core, "ValueSet/$validate-code", url=GENDER_VS, system=GENDER, code="male", display="Man"
    ).json()
    assert params(display)["result"] == [True] and "Male" in params(display)["message"][0]
    bare = get(core, "ValueSet/$validate-code", url=GENDER_VS, code="female").json()
    assert params(bare)["result"] == [True]  # a bare code: the value set's one system
    other = get(core, "ValueSet/$validate-code", url=GENDER_VS, system=ACT, code="AMB").json()
    assert params(other)["result"] == [False]
    assert (
        get(
            core, "ValueSet/$validate-code", url="urn:vs:none", system=GENDER, code="male"
        ).status_code
        == 404
    )


def test_validate_code_on_a_code_system_and_codeable_concept(core: TestClient) -> None:
    status = "http://hl7.org/fhir/observation-status"
    ok = get(core, "CodeSystem/$validate-code", url=status, code="final").json()
    assert params(ok)["result"] == [True]
    as_system = get(core, "CodeSystem/$validate-code", system=status, code="finale").json()
    assert params(as_system)["result"] == [False]  # `system` as clients send it, like $lookup
    concept = {"coding": [{"system": GENDER, "code": "x"}, {"system": GENDER, "code": "other"}]}
    either = post(
        core,
        "ValueSet/$validate-code",
        {"name": "url", "valueUri": GENDER_VS},
        {"name": "codeableConcept", "valueCodeableConcept": concept},
    )
    assert either.status_code == 200 and params(either.json())["result"] == [True]
    abstract = get(core, "CodeSystem/$validate-code", url=ACT, code="_ActEncounterCode").json()
    assert params(abstract)["result"] == [False] and "abstract" in params(abstract)["message"][0]
    allowed = get(
        core, "CodeSystem/$validate-code", url=ACT, code="_ActEncounterCode", abstract="true"
    ).json()
    assert params(allowed)["result"] == [True]


def test_subsumes_on_a_core_hierarchy(core: TestClient) -> None:
    def outcome(a: str, b: str) -> str:
        body = get(core, "CodeSystem/$subsumes", system=ACT, codeA=a, codeB=b).json()
        return str(params(body)["outcome"][0])

    assert outcome("_ActEncounterCode", "AMB") == "subsumes"
    assert outcome("AMB", "_ActEncounterCode") == "subsumed-by"
    assert outcome("AMB", "AMB") == "equivalent"
    assert outcome("AMB", "EMER") == "not-subsumed"
    assert get(core, "CodeSystem/$subsumes", system=ACT, codeA="AMB").status_code == 400


def test_expand_core_value_sets(core: TestClient) -> None:
    status = get(core, "ValueSet/$expand", url=OBS_STATUS_VS).json()
    assert status["resourceType"] == "ValueSet" and status["url"] == OBS_STATUS_VS
    assert "final" in codes(status) and status["expansion"]["total"] == len(codes(status))
    prelim = get(core, "ValueSet/$expand", url=OBS_STATUS_VS, filter="prelim").json()
    assert codes(prelim) == ["preliminary"]
    # is-a filter with an exclude: the abstract grouping code itself is left out.
    encounters = get(core, "ValueSet/$expand", url=ENCOUNTER_VS).json()
    assert "AMB" in codes(encounters) and "_ActEncounterCode" not in codes(encounters)
    page = get(core, "ValueSet/$expand", url=ENCOUNTER_VS, count=2, offset=1).json()
    assert codes(page) == codes(encounters)[1:3]
    assert page["expansion"]["offset"] == 1
    assert page["expansion"]["total"] == encounters["expansion"]["total"]
    unknown = get(core, "ValueSet/$expand", url="urn:vs:none")
    assert unknown.status_code == 404 and "urn:vs:none" in unknown.text
    assert get(core, "ValueSet/$expand", url=OBS_STATUS_VS, count="many").status_code == 400


def test_translate_with_a_core_map(core: TestClient) -> None:
    use = "http://hl7.org/fhir/address-use"
    target = "http://terminology.hl7.org/CodeSystem/v3-AddressUse"
    found = params(
        get(core, "ConceptMap/$translate", system=use, code="home", targetsystem=target).json()
    )
    assert found["result"] == [True]
    match = {p["name"]: p for p in found["match"][0]}
    assert match["equivalence"]["valueCode"] == "equivalent"
    assert match["concept"]["valueCoding"]["code"] == "H"
    back = get(
        core,
        "ConceptMap/$translate",
        system=target,
        code="H",
        reverse="true",
        url="http://hl7.org/fhir/ConceptMap/101",
    ).json()
    assert params(back)["result"] == [True]
    # Codes the map does not list take the group's fixed "unmapped" code.
    fixed = params(get(core, "ConceptMap/$translate", system=use, code="nowhere").json())
    assert {p["name"]: p for p in fixed["match"][0]}["concept"]["valueCoding"]["code"] == "temp"
    none = params(get(core, "ConceptMap/$translate", system="urn:none", code="x").json())
    assert none["result"] == [False] and none["message"]


def test_terminology_capabilities_and_capability_statement(core: TestClient) -> None:
    terminology = core.get("/fhir/metadata", params={"mode": "terminology"}).json()
    assert terminology["resourceType"] == "TerminologyCapabilities"
    systems = {s["uri"]: s for s in terminology["codeSystem"]}
    assert systems[LOADED]["version"][0]["code"] == "2024" and GENDER in systems
    assert terminology["closure"] == {"translation": False}
    uploaded = {
        "resourceType": "CodeSystem",
        "url": "urn:example:triage",
        "version": "3",
        "status": "active",
        "content": "complete",
        "concept": [{"code": "red", "display": "Immediate"}],
    }
    assert core.post("/fhir/CodeSystem", json=uploaded).status_code == 201
    again = core.get("/fhir/metadata", params={"mode": "terminology"}).json()
    listed = {s["uri"]: s for s in again["codeSystem"]}
    assert listed["urn:example:triage"]["version"][0]["code"] == "3"  # a stored CodeSystem
    statement = core.get("/fhir/metadata").json()
    types = {r["type"]: r for r in statement["rest"][0]["resource"]}
    assert {o["name"] for o in types["ValueSet"]["operation"]} >= {"expand", "validate-code"}
    assert {o["name"] for o in types["CodeSystem"]["operation"]} >= {"lookup", "subsumes"}
    assert "translate" in {o["name"] for o in types["ConceptMap"]["operation"]}


def test_a_too_large_expansion_needs_count(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, access_log=False, no_auth=True)
    stack = AsyncExitStack()
    big = [Concept(f"c{i:05d}", f"Concept {i}") for i in range(10_001)]

    async def factory() -> Repository:
        repo = await stack.enter_async_context(open_backend("memory", tmp_path))
        store = repo.terminology
        await store.start_load(CodeSystemInfo(url="urn:big", version="1"), "fp")
        await store.load_concepts("urn:big", "1", big, len(big))
        await store.finish_load("urn:big", "1")
        return _Closing(repo, stack)  # type: ignore[return-value]

    value_set = {"resourceType": "ValueSet", "compose": {"include": [{"system": "urn:big"}]}}
    with TestClient(create_app(settings, repository_factory=factory)) as client:
        refused = post(client, "ValueSet/$expand", {"name": "valueSet", "resource": value_set})
        assert refused.status_code == 400
        assert refused.json()["issue"][0]["code"] == "too-costly"
        paged = post(
            client,
            "ValueSet/$expand",
            {"name": "valueSet", "resource": value_set},
            {"name": "count", "valueInteger": 3},
            {"name": "offset", "valueInteger": 9_999},
        )
        assert codes(paged.json()) == ["c09999", "c10000"]
        assert paged.json()["expansion"]["total"] == 10_001


# --- uploaded resources and a loaded code system (every backend) -----------------------------

UPLOADED_CS = {
    "resourceType": "CodeSystem",
    "url": "urn:test:colors",
    "version": "1",
    "name": "Colors",
    "status": "active",
    "content": "complete",
    "concept": [
        {
            "code": "warm",
            "display": "Warm colour",
            "concept": [{"code": "red", "display": "Red"}, {"code": "orange", "display": "Orange"}],
        },
        {
            "code": "cool",
            "display": "Cool colour",
            "concept": [{"code": "blue", "display": "Blue"}],
        },
    ],
}
UPLOADED_VS = {
    "resourceType": "ValueSet",
    "url": "urn:test:vs:warm-no-orange",
    "status": "active",
    "compose": {
        "include": [
            {
                "system": "urn:test:colors",
                "filter": [{"property": "concept", "op": "is-a", "value": "warm"}],
            }
        ],
        "exclude": [{"system": "urn:test:colors", "concept": [{"code": "orange"}]}],
    },
}
UPLOADED_MAP = {
    "resourceType": "ConceptMap",
    "url": "urn:test:map",
    "status": "active",
    "group": [
        {
            "source": "urn:test:colors",
            "target": "urn:test:french",
            "element": [
                {"code": "red", "target": [{"code": "rouge", "equivalence": "equivalent"}]},
                {"code": "warm", "target": [{"code": "chaud", "equivalence": "wider"}]},
            ],
        }
    ],
}


def _upload(client: TestClient, resource: dict[str, Any]) -> str:
    response = client.post(
        f"/fhir/{resource['resourceType']}",
        json=resource,
        headers={"content-type": "application/fhir+json"},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def test_uploaded_code_system_value_set_and_map(api: TestClient) -> None:
    cs_id = _upload(api, UPLOADED_CS)
    vs_id = _upload(api, UPLOADED_VS)
    map_id = _upload(api, UPLOADED_MAP)
    red = params(get(api, "CodeSystem/$lookup", system="urn:test:colors", code="red").json())
    assert red["display"] == ["Red"] and red["name"] == ["Colors"]
    instance = get(api, f"CodeSystem/{cs_id}/$subsumes", codeA="warm", codeB="red").json()
    assert params(instance)["outcome"] == ["subsumes"]
    expanded = get(api, f"ValueSet/{vs_id}/$expand").json()
    assert codes(expanded) == ["red", "warm"]
    by_url = post(
        api,
        "ValueSet/$expand",
        {"name": "url", "valueUri": UPLOADED_VS["url"]},
        {"name": "filter", "valueString": "re"},
    )
    assert codes(by_url.json()) == ["red"]
    inside = get(api, f"ValueSet/{vs_id}/$validate-code", system="urn:test:colors", code="red")
    assert params(inside.json())["result"] == [True]
    excluded = get(api, f"ValueSet/{vs_id}/$validate-code", system="urn:test:colors", code="orange")
    assert params(excluded.json())["result"] == [False]
    mapped = params(
        get(api, f"ConceptMap/{map_id}/$translate", system="urn:test:colors", code="red").json()
    )
    assert mapped["result"] == [True]
    anywhere = params(
        get(api, "ConceptMap/$translate", system="urn:test:colors", code="warm").json()
    )
    assert {p["name"]: p for p in anywhere["match"][0]}["equivalence"]["valueCode"] == "wider"
    assert get(api, "ValueSet/nope/$expand").status_code == 404


def test_loaded_code_system(api: TestClient) -> None:
    found = get(
        api,
        "CodeSystem/$lookup",
        system=LOADED,
        code="200",
        property=["site", "child", "parent", "designation"],
    ).json()
    found_params = params(found)
    assert found_params["display"] == ["Heart disease"] and found_params["version"] == ["2024"]
    assert props(found) == {"site": ["heart"], "parent": ["100"], "child": ["210"]}
    designation = {p["name"]: p for p in found_params["designation"][0]}
    assert designation["value"]["valueString"] == "Cardiac disorder"
    below = get(api, "CodeSystem/$subsumes", system=LOADED, codeA="100", codeB="211").json()
    assert params(below)["outcome"] == ["subsumes"]
    heart = {
        "resourceType": "ValueSet",
        "url": "urn:vs:heart",
        "compose": {
            "include": [
                {
                    "system": LOADED,
                    "filter": [{"property": "concept", "op": "is-a", "value": "200"}],
                }
            ]
        },
    }
    expanded = post(
        api,
        "ValueSet/$expand",
        {"name": "valueSet", "resource": heart},
        {"name": "filter", "valueString": "fail"},
    ).json()
    assert codes(expanded) == ["210", "211"]
    with_inactive = post(
        api,
        "ValueSet/$expand",
        {"name": "valueSet", "resource": heart},
        {"name": "activeOnly", "valueBoolean": False},
        {"name": "includeDesignations", "valueBoolean": True},
    ).json()
    assert codes(with_inactive) == ["200", "210", "211", "212"]
    assert with_inactive["expansion"]["contains"][0]["designation"][0]["value"] == (
        "Cardiac disorder"
    )
    assert with_inactive["expansion"]["contains"][3]["inactive"] is True
    valid = post(
        api,
        "ValueSet/$validate-code",
        {"name": "valueSet", "resource": heart},
        {"name": "coding", "valueCoding": {"system": LOADED, "code": "211"}},
    )
    assert params(valid.json())["result"] == [True]
    lung = post(
        api,
        "ValueSet/$validate-code",
        {"name": "valueSet", "resource": heart},
        {"name": "coding", "valueCoding": {"system": LOADED, "code": "300"}},
    )
    assert params(lung.json())["result"] == [False]
    old = get(api, "CodeSystem/$validate-code", url=LOADED, code="212").json()
    assert params(old)["result"] == [True] and "inactive" in params(old)["message"][0]
    bad_filter = {
        "resourceType": "ValueSet",
        "compose": {
            "include": [
                {"system": LOADED, "filter": [{"property": "concept", "op": "near", "value": "x"}]}
            ]
        },
    }
    refused = post(api, "ValueSet/$expand", {"name": "valueSet", "resource": bad_filter})
    assert refused.status_code == 400 and "near" in refused.text

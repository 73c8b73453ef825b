"""Token :above, :below, :in and :not-in (https://hl7.org/fhir/R4/search.html#modifiers) through
the terminology service (https://hl7.org/fhir/R4/terminology-service.html): over a code system
loaded into ``repository.terminology`` (as ``healthbridge terminology load`` does), ValueSets
with filters over it, and the R4 core content, on every backend; and the bound on how many codes
one clause may stand for (search_terminology.MAX_CODES)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from healthbridge.app import create_app
from healthbridge.fhir.terminology.concepts import CodeSystemInfo, Concept
from healthbridge.rest.search_terminology import MAX_CODES
from healthbridge.settings import Settings
from healthbridge.store.repository import Repository
from healthbridge.store.terminology import TerminologyStore
from tests.support.databases import PostgresDatabase, open_backend

LOADED = "http://example.org/loaded"
BIG = "http://example.org/big"
OTHER = "http://example.org/other"
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"

LOADED_CONCEPTS = [
    Concept("100", "Clinical finding"),
    Concept("200", "Heart disease", parents=("100",)),
    Concept("210", "Heart failure", parents=("200",)),
    Concept("211", "Left heart failure", parents=("210",)),
    Concept("212", "Old heart failure", parents=("210",), inactive=True),
    Concept("300", "Lung disease", parents=("100",)),
]
MIDDLE = 2_000
"""Children of BIG's ``M``: more codes than an SQL expression tree holds, fewer than the bound."""
BIG_CONCEPTS = [
    Concept("R", "Root"),
    Concept("M", "Middle", parents=("R",)),
    *(Concept(f"m{i:05}", f"Middle child {i}", parents=("M",)) for i in range(MIDDLE)),
    *(Concept(f"r{i:05}", f"Root child {i}", parents=("R",)) for i in range(MAX_CODES - MIDDLE)),
]
"""``R`` and its descendants are MAX_CODES + 2 codes: more than a search expands."""


class _Closing:
    def __init__(self, repo: Repository, stack: AsyncExitStack) -> None:
        self._repo = repo
        self._stack = stack

    def __getattr__(self, name: str) -> object:
        return getattr(self._repo, name)

    async def close(self) -> None:
        await self._stack.aclose()


async def _load(store: TerminologyStore, url: str, concepts: list[Concept]) -> None:
    await store.start_load(CodeSystemInfo(url=url, version="1", name="Synthetic"), "fp")
    await store.load_concepts(url, "1", concepts, len(concepts))
    await store.finish_load(url, "1")


@pytest.fixture
def api(backend: str, tmp_path: Path, postgres_database: PostgresDatabase) -> Iterator[TestClient]:
    """The app over a backend holding the two synthetic loaded code systems."""
    postgres = postgres_database if backend == "postgresql" else None
    if postgres is not None:
        postgres.require()
    stack = AsyncExitStack()

    async def factory() -> Repository:
        repo = await stack.enter_async_context(open_backend(backend, tmp_path, postgres))  # type: ignore[arg-type]
        await _load(repo.terminology, LOADED, LOADED_CONCEPTS)
        await _load(repo.terminology, BIG, BIG_CONCEPTS)
        return _Closing(repo, stack)  # type: ignore[return-value]

    settings = Settings(data_dir=tmp_path, access_log=False, no_auth=True)
    app = create_app(settings, repository_factory=factory)
    with TestClient(app, raise_server_exceptions=False) as client:
        _store_world(client)
        yield client


def observation(id: str, system: str, code: str, category: str = "exam") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": id,
        "status": "final",
        "category": [{"coding": [{"system": CATEGORY, "code": category}]}],
        "code": {"coding": [{"system": system, "code": code}]},
    }


def value_set(id: str, include: dict[str, Any], **compose: Any) -> dict[str, Any]:
    return {
        "resourceType": "ValueSet",
        "id": id,
        "url": f"http://example.org/vs/{id}",
        "status": "active",
        "compose": {"include": [include], **compose},
    }


def _is_a(system: str, code: str) -> dict[str, Any]:
    return {"system": system, "filter": [{"property": "concept", "op": "is-a", "value": code}]}


def _store_world(client: TestClient) -> None:
    resources = [
        *(observation(f"l{c.code}", LOADED, c.code) for c in LOADED_CONCEPTS),
        observation("other200", OTHER, "200", category="vital-signs"),
        observation("big-m", BIG, "m00007"),
        observation("big-r", BIG, "r00003"),
        value_set("heart", _is_a(LOADED, "200")),
        value_set("heart-active", _is_a(LOADED, "200"), inactive=False),
        value_set("middle", _is_a(BIG, "M")),
        value_set("everything", _is_a(BIG, "R")),
        {"resourceType": "Encounter", "id": "emer", "status": "finished",
         "class": {"system": ACT, "code": "EMER"}},
        {"resourceType": "Encounter", "id": "other", "status": "finished",
         "class": {"system": OTHER, "code": "EMER"}},
    ]  # fmt: skip
    for resource in resources:
        answer = client.put(f"/fhir/{resource['resourceType']}/{resource['id']}", json=resource)
        assert answer.status_code == 201, answer.text


def ids(client: TestClient, query: str, resource_type: str = "Observation") -> set[str]:
    answer = client.get(f"/fhir/{resource_type}?{query}&_count=100")
    assert answer.status_code == 200, answer.text
    return {e["resource"]["id"] for e in answer.json().get("entry", [])}


def refused(client: TestClient, query: str) -> dict[str, Any]:
    answer = client.get(f"/fhir/Observation?{query}")
    assert answer.status_code == 400, answer.text
    issue: dict[str, Any] = answer.json()["issue"][0]
    assert issue["expression"] == [query.split("=", maxsplit=1)[0]], issue
    return issue


ALL_LOADED = {f"l{c.code}" for c in LOADED_CONCEPTS}


def test_below_and_above_a_loaded_code_system(api: TestClient) -> None:
    """``:below`` the code and its descendants (inactive ones too), ``:above`` its ancestors;
    the same code in another system never matches."""
    assert ids(api, f"code:below={LOADED}|200") == {"l200", "l210", "l211", "l212"}
    assert ids(api, f"code:below={LOADED}|211") == {"l211"}
    assert ids(api, f"code:below={LOADED}|100,{LOADED}|300") == ALL_LOADED
    assert ids(api, f"code:above={LOADED}|211") == {"l100", "l200", "l210", "l211"}
    assert ids(api, f"code:below={LOADED}|200&code:above={LOADED}|210") == {"l200", "l210"}
    # A code the system does not have stands for itself: nothing is coded with it here.
    assert ids(api, f"code:below={LOADED}|999") == set()


def test_in_and_not_in_value_sets_over_a_loaded_code_system(api: TestClient) -> None:
    """``:in`` a ValueSet with an is-a filter over the loaded system; inactive codes are in
    unless ``compose.inactive`` is false; ``:not-in`` is every other resource."""
    heart = "http://example.org/vs/heart"
    assert ids(api, f"code:in={heart}") == {"l200", "l210", "l211", "l212"}
    assert ids(api, "code:in=http://example.org/vs/heart-active") == {"l200", "l210", "l211"}
    assert ids(api, f"code:not-in={heart}") == {"l100", "l300", "other200", "big-m", "big-r"}
    assert ids(api, f"code:in={heart}&code:not-in=http://example.org/vs/heart-active") == {"l212"}


def test_thousands_of_codes_are_searched_in_the_database(api: TestClient) -> None:
    """A clause standing for 2,001 codes (more than SQLite's expression depth as an OR tree)
    is bound as one list and answered exactly."""
    assert ids(api, f"code:below={BIG}|M") == {"big-m"}
    assert ids(api, "code:in=http://example.org/vs/middle") == {"big-m"}
    assert ids(api, "code:not-in=http://example.org/vs/middle&category=exam") == ALL_LOADED | {
        "big-r"
    }


def test_core_code_systems_and_value_sets(api: TestClient) -> None:
    """The R4 content shipped with the server: a value set over a whole code system, an
    element of type code (no system) and the v3 ActCode hierarchy."""
    categories = "http://hl7.org/fhir/ValueSet/observation-category"
    assert ids(api, f"category:in={categories}") == ALL_LOADED | {"other200", "big-m", "big-r"}
    assert ids(api, f"category:below={CATEGORY}|vital-signs") == {"other200"}
    statuses = "http://hl7.org/fhir/ValueSet/observation-status"
    assert ids(api, f"status:in={statuses}&code={OTHER}|200") == {"other200"}
    assert ids(api, f"status:not-in={statuses}") == set()
    assert ids(api, f"class:below={ACT}|_ActEncounterCode", "Encounter") == {"emer"}
    assert ids(api, f"class:above={ACT}|EMER", "Encounter") == {"emer"}
    assert ids(api, f"class:below={ACT}|IMP", "Encounter") == set()


def test_unknown_terminology_is_not_supported(api: TestClient) -> None:
    for query in (
        "code:below=http://unknown.org/cs|A",
        "code:above=http://unknown.org/cs|A",
        "code:in=http://unknown.org/vs",
        "code:not-in=http://unknown.org/vs",
    ):
        issue = refused(api, query)
        assert issue["code"] == "not-supported", query
        assert "not known" in issue["diagnostics"], issue
    assert refused(api, f"code:below={LOADED}|")["code"] == "value"


def test_too_many_codes_is_too_costly(api: TestClient) -> None:
    """More than MAX_CODES codes: 400 too-costly naming the parameter and what to do."""
    for query in (
        f"code:below={BIG}|R",
        "code:in=http://example.org/vs/everything",
        "code:not-in=http://example.org/vs/everything",
        f"code:below={BIG}|M,{BIG}|r00001,{BIG}|R",
    ):
        issue = refused(api, query)
        assert issue["code"] == "too-costly", query
        assert "narrower" in issue["diagnostics"], issue
    # Several value sets, each within the bound: their codes together.
    many = ",".join(f"http://example.org/vs/{v}" for v in ("middle", "heart"))
    assert ids(api, f"code:in={many}") == {"big-m", "l200", "l210", "l211", "l212"}

"""Terminology store contract (healthbridge.store.terminology) on memory, SQLite and PostgreSQL.

Loaded code systems answer the terminology operations
(https://hl7.org/fhir/R4/terminology-service.html): concepts by code, subsumption
(codesystem-operation-subsumes.html) and the ValueSet compose filters
(https://hl7.org/fhir/R4/valueset.html#filters). Loads are resumable and invisible until finished.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from healthbridge.fhir.terminology.concepts import (
    CodeSystemInfo,
    Concept,
    ConceptProperty,
    Designation,
)
from healthbridge.store.repository import Repository
from healthbridge.store.terminology import ConceptFilter, ConceptQuery, TerminologyStore

URL = "http://example.org/cs/diseases"
INFO = CodeSystemInfo(url=URL, version="1", name="Diseases", source="snomed")
SYN = ("http://snomed.info/sct", "900000000000013009")

CONCEPTS = [
    # children before their parents: parents may arrive in a later batch
    Concept(
        "a1",
        "Left heart failure",
        parents=("a",),
        properties=(ConceptProperty("severity", "high"), ConceptProperty("rank", 3)),
    ),
    Concept("a2", "Right heart failure", parents=("a",), inactive=True),
    Concept("ab", "Cardiopulmonary thing", parents=("a", "b")),
    Concept(
        "a",
        "Heart failure",
        definition="The heart does not pump enough",
        designations=(Designation("Cardiac failure", "en", SYN),),
        parents=("root",),
        properties=(
            ConceptProperty("weight", Decimal("1.50")),
            ConceptProperty("mapped", ("http://loinc.org", "1234-5")),
            ConceptProperty("flag", True),
        ),
    ),
    Concept(
        "b", "Lung disease", parents=("root",), properties=(ConceptProperty("severity", "low"),)
    ),
    Concept("root", "Disease"),
]


async def _load(store: TerminologyStore, info: CodeSystemInfo = INFO) -> None:
    await store.start_load(info, "fp1")
    await store.load_concepts(URL, str(info.version), CONCEPTS[:3], 3)
    await store.load_concepts(URL, str(info.version), CONCEPTS[3:], 6)
    await store.finish_load(URL, str(info.version))


def _q(*filters: tuple[str, str, str], **kw: object) -> ConceptQuery:
    return ConceptQuery(filters=tuple(ConceptFilter(*f) for f in filters), **kw)  # type: ignore[arg-type]


async def _codes(store: TerminologyStore, query: ConceptQuery) -> list[str]:
    return [c.code for c in await store.find(URL, "1", query)]


async def test_a_load_is_invisible_until_finished_and_resumable(repo: Repository) -> None:
    store = repo.terminology
    progress = await store.start_load(INFO, "fp1")
    assert progress.done == 0
    await store.load_concepts(URL, "1", CONCEPTS[:3], 3)
    assert await store.code_system(URL) is None
    assert await store.code_systems() == []
    assert await store.concepts(URL, "1", ["a1"]) == {}
    # The loader crashed: the same release resumes after the stored batch.
    resumed = await store.start_load(INFO, "fp1")
    assert (resumed.url, resumed.version, resumed.done) == (URL, "1", 3)
    await store.load_concepts(URL, "1", CONCEPTS[:3], 3)  # a replayed batch is harmless
    await store.load_concepts(URL, "1", CONCEPTS[3:], 6)
    info = await store.finish_load(URL, "1")
    assert info.count == 6 and info.name == "Diseases" and info.source == "snomed"
    assert await store.code_system(URL) == info
    assert await store.code_system(URL, "1") == info
    assert await store.code_system(URL, "2") is None
    assert await store.code_systems() == [info]


async def test_a_new_fingerprint_starts_over(repo: Repository) -> None:
    store = repo.terminology
    await store.start_load(INFO, "fp1")
    await store.load_concepts(URL, "1", CONCEPTS[:3], 3)
    restarted = await store.start_load(INFO, "fp2")
    assert restarted.done == 0
    await store.load_concepts(URL, "1", CONCEPTS[3:], 3)
    info = await store.finish_load(URL, "1")
    assert info.count == 3
    assert set(await store.concepts(URL, "1", ["a1", "a", "b"])) == {"a", "b"}


async def test_concepts_round_trip(repo: Repository) -> None:
    store = repo.terminology
    await _load(store)
    found = await store.concepts(URL, "1", ["a", "a2", "nope"])
    assert set(found) == {"a", "a2"}
    assert found["a"] == CONCEPTS[3]
    assert found["a2"].inactive
    assert isinstance(found["a"].properties[0].value, Decimal)
    assert found["a"].properties[0].value == Decimal("1.50")


async def test_subsumption_follows_every_parent(repo: Repository) -> None:
    store = repo.terminology
    await _load(store)
    assert await store.subsumes(URL, "1", "root", "ab")
    assert await store.subsumes(URL, "1", "b", "ab")
    assert await store.subsumes(URL, "1", "a", "a")
    assert not await store.subsumes(URL, "1", "a1", "a")
    assert not await store.subsumes(URL, "1", "b", "a1")
    assert not await store.subsumes(URL, "1", "root", "missing")
    assert await store.children(URL, "1", "a") == ["a1", "a2", "ab"]
    assert await store.children(URL, "1", "a1") == []


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (("concept", "is-a", "a"), ["a", "a1", "ab"]),
        (("concept", "descendent-of", "a"), ["a1", "ab"]),
        (("concept", "is-not-a", "a"), ["b", "root"]),
        (("concept", "generalizes", "ab"), ["a", "ab", "b", "root"]),
        (("code", "=", "b"), ["b"]),
        (("concept", "in", "a1,b, missing"), ["a1", "b"]),
        (("concept", "not-in", "a1,b"), ["a", "ab", "root"]),
        (("concept", "regex", "a[0-9]"), ["a1"]),
        (("display", "regex", ".*[Ff]ailure"), ["a", "a1"]),
        (("display", "=", "Lung disease"), ["b"]),
        (("severity", "=", "low"), ["b"]),
        (("severity", "in", "low,high"), ["a1", "b"]),
        (("severity", "not-in", "low"), ["a", "a1", "ab", "root"]),
        (("severity", "exists", "true"), ["a1", "b"]),
        (("severity", "exists", "false"), ["a", "ab", "root"]),
        (("severity", "regex", "h.*"), ["a1"]),
        (("mapped", "=", "1234-5"), ["a"]),
        (("flag", "=", "true"), ["a"]),
        (("rank", "=", "3"), ["a1"]),
        (("concept", "is-a", "missing"), []),
    ],
)
async def test_filters(repo: Repository, rule: tuple[str, str, str], expected: list[str]) -> None:
    store = repo.terminology
    await _load(store)
    query = _q(rule)
    assert await _codes(store, query) == expected
    assert await store.count(URL, "1", query) == len(expected)


async def test_inactive_concepts_only_on_request(repo: Repository) -> None:
    store = repo.terminology
    await _load(store)
    assert "a2" not in await _codes(store, _q(("concept", "is-a", "a")))
    assert await _codes(store, _q(("concept", "is-a", "a"), active_only=False)) == [
        "a",
        "a1",
        "a2",
        "ab",
    ]
    assert await _codes(store, _q(("inactive", "=", "true"), active_only=False)) == ["a2"]


async def test_text_matches_word_prefixes_of_display_and_designations(repo: Repository) -> None:
    store = repo.terminology
    await _load(store)
    assert await _codes(store, _q(text="heart FAIL")) == ["a", "a1"]
    assert await _codes(store, _q(text="cardiac")) == ["a"]  # a designation
    assert await _codes(store, _q(text="card")) == ["a", "ab"]
    assert await _codes(store, _q(text="eart")) == []  # words match from their start
    assert await _codes(store, _q(("concept", "is-a", "a"), text="left")) == ["a1"]
    assert await store.count(URL, "1", _q(text="heart")) == 2


async def test_paging_by_code_and_by_offset(repo: Repository) -> None:
    store = repo.terminology
    await _load(store)
    assert await _codes(store, _q(limit=2)) == ["a", "a1"]
    assert await _codes(store, _q(limit=2, after_code="a1")) == ["ab", "b"]
    assert await _codes(store, _q(limit=10, after_code="b")) == ["root"]
    page = await store.find_from(URL, "1", _q(limit=2), 3)
    assert [c.code for c in page] == ["b", "root"]
    assert await store.find_from(URL, "1", _q(("concept", "regex", "a.*"), limit=1), 1) == [
        CONCEPTS[0]
    ]


async def test_a_reload_replaces_the_version_only_when_finished(repo: Repository) -> None:
    store = repo.terminology
    await _load(store)
    await store.start_load(INFO, "fp-new")
    await store.load_concepts(URL, "1", [Concept("z", "Zebra")], 1)
    assert set(await store.concepts(URL, "1", ["a", "z"])) == {"a"}  # the old copy still serves
    info = await store.finish_load(URL, "1")
    assert info.count == 1
    assert set(await store.concepts(URL, "1", ["a", "z"])) == {"z"}


async def test_versions_and_deletion(repo: Repository) -> None:
    store = repo.terminology
    await _load(store)
    await _load(store, CodeSystemInfo(url=URL, version="2", name="Diseases"))
    latest = await store.code_system(URL)
    assert latest is not None and latest.version == "2"
    assert [i.version for i in await store.code_systems()] == ["1", "2"]
    assert await store.delete_code_system(URL, "2")
    assert not await store.delete_code_system(URL, "2")
    latest = await store.code_system(URL)
    assert latest is not None and latest.version == "1"
    await store.start_load(CodeSystemInfo(url=URL, version="3"), "x")
    assert await store.delete_code_system(URL, "3")  # an unfinished load
    assert await store.start_load(CodeSystemInfo(url=URL, version="3"), "x") is not None


async def test_loading_needs_a_version_and_a_started_load(repo: Repository) -> None:
    store = repo.terminology
    with pytest.raises(ValueError, match="version"):
        await store.start_load(CodeSystemInfo(url=URL), "x")
    with pytest.raises(LookupError):
        await store.load_concepts(URL, "9", CONCEPTS, 6)
    with pytest.raises(LookupError):
        await store.finish_load(URL, "9")

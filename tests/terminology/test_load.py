"""Release files loaded end to end through the real terminology store (memory, SQLite,
PostgreSQL): https://hl7.org/fhir/R4/terminology-service.html.

A load commits batch by batch and resumes after a crash (the store's ``start_load`` reports the
concepts already stored for the same release fingerprint); the resumed load ends with exactly
the content of an uninterrupted one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from healthbridge.fhir.terminology.concepts import Concept
from healthbridge.store.repository import Repository
from healthbridge.store.terminology import ConceptQuery
from healthbridge.terminology.loader import LoadResult, load, open_source
from tests.terminology.conftest import DATA
from tests.terminology.synthetic import ANALYTES, write_loinc

PARTS = len(ANALYTES) + 1  # one part per analyte and the root

FORMATS = [
    ("loinc", DATA / "loinc", "http://loinc.org", 8),
    ("snomed", DATA / "snomed", "http://snomed.info/sct", 6),
    ("rxnorm", DATA / "rxnorm", "http://www.nlm.nih.gov/research/umls/rxnorm", 6),
    ("icd10cm", DATA / "icd10cm", "http://hl7.org/fhir/sid/icd-10-cm", 14),
    ("cvx", DATA / "cvx" / "cvx.txt", "http://hl7.org/fhir/sid/cvx", 6),
]


class Crash(Exception):
    """Stands for the process dying between two batches."""


async def _load(repo: Repository, kind: str, path: Path, **options: object) -> LoadResult:
    with open_source(kind, path) as source:
        return await load(repo.terminology, source, **options)  # type: ignore[arg-type]


def _parsed(kind: str, path: Path) -> list[Concept]:
    with open_source(kind, path) as source:
        return list(source.concepts())


def _same(stored: Concept, parsed: Concept) -> None:
    assert stored.code == parsed.code
    assert stored.display == parsed.display
    assert stored.inactive == parsed.inactive
    assert sorted(stored.parents) == sorted(parsed.parents)
    assert {(d.value, d.use) for d in stored.designations} == {
        (d.value, d.use) for d in parsed.designations
    }
    assert {(p.code, p.value) for p in stored.properties} == {
        (p.code, p.value) for p in parsed.properties
    }


@pytest.mark.parametrize(("kind", "path", "url", "count"), FORMATS, ids=[f[0] for f in FORMATS])
async def test_each_format_loads_and_reads_back(
    repo: Repository, kind: str, path: Path, url: str, count: int
) -> None:
    result = await _load(repo, kind, path, batch_size=4)
    assert (result.resumed_from, result.loaded, result.info.count) == (0, count, count)
    listed = await repo.terminology.code_systems()
    assert [(i.url, i.version, i.count, i.source) for i in listed] == [
        (url, result.info.version, count, kind)
    ]
    version = result.info.version
    assert version is not None
    parsed = _parsed(kind, path)
    stored = await repo.terminology.concepts(url, version, [c.code for c in parsed])
    assert len(stored) == count
    for concept in parsed:
        _same(stored[concept.code], concept)


async def test_hierarchy_and_text_after_load(repo: Repository) -> None:
    info = (await _load(repo, "snomed", DATA / "snomed")).info
    store, url, version = repo.terminology, info.url, info.version or ""
    assert await store.subsumes(url, version, "1000001", "1000004")  # via either parent
    assert not await store.subsumes(url, version, "1000003", "1000002")
    found = await store.find(url, version, ConceptQuery(text="cardiopulmonary"))
    assert [c.code for c in found] == ["1000004"]
    assert await store.count(url, version, ConceptQuery()) == 5  # the inactive one left out


async def test_a_crashed_load_resumes_to_the_same_content(repo: Repository, tmp_path: Path) -> None:
    release = write_loinc(tmp_path / "release", 1_000)
    batches = 0

    def crash_after_three(done: int, total: int | None) -> None:
        nonlocal batches
        batches += 1
        if batches > 3:  # the first call reports the starting position
            raise Crash

    with pytest.raises(Crash):
        await _load(repo, "loinc", release, batch_size=100, progress=crash_after_three)
    assert await repo.terminology.code_systems() == []  # not visible until finished
    resumed = await _load(repo, "loinc", release, batch_size=100)
    assert resumed.resumed_from == 300
    assert resumed.loaded == resumed.info.count - 300 == 1_000 + PARTS - 300
    version = resumed.info.version or ""
    parsed = _parsed("loinc", release)
    stored = await repo.terminology.concepts("http://loinc.org", version, [c.code for c in parsed])
    assert len(stored) == len(parsed)
    for concept in parsed:
        _same(stored[concept.code], concept)


async def test_a_changed_release_starts_over(repo: Repository, tmp_path: Path) -> None:
    release = write_loinc(tmp_path / "release", 300)

    def crash(done: int, total: int | None) -> None:
        if done >= 200:
            raise Crash

    with pytest.raises(Crash):
        await _load(repo, "loinc", release, batch_size=100, progress=crash)
    write_loinc(release, 250, seed=8)  # the operator replaced the files
    result = await _load(repo, "loinc", release, batch_size=100)
    assert result.resumed_from == 0
    assert result.info.count == 250 + PARTS


async def test_reloading_a_version_replaces_it(repo: Repository) -> None:
    await _load(repo, "cvx", DATA / "cvx")
    again = await _load(repo, "cvx", DATA / "cvx")
    assert (again.resumed_from, again.loaded) == (0, 6)
    assert [i.count for i in await repo.terminology.code_systems()] == [6]

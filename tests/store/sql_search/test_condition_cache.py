"""Reused search conditions (store/sql/search/memo.py) answer exactly what freshly built ones do
(https://hl7.org/fhir/R4/search.html): the same clauses in other combinations, orders, pages,
chains, negations and compartments, and after writes, on SQLite and PostgreSQL."""

from __future__ import annotations

from healthbridge.store.sql.repository import SqlRepository
from healthbridge.store.sql.search.memo import ConditionCache
from tests.store.search_fixtures import ids, resource, store
from tests.store.sql_search.conftest import OpenRepo

QUERIES = [
    ("Observation", "patient=p1"),
    ("Observation", "patient=p1&code=c1"),
    ("Observation", "code=c1&patient=p1&_sort=-date"),
    ("Observation", "code=c1"),
    ("Observation", "code:not=c1&patient=p1"),
    ("Observation", "_security:not=http://terminology.hl7.org/CodeSystem/v3-Confidentiality|R"),
    ("Observation", "subject:Patient.name=smith1&code=c0"),
    ("Patient", "_has:Observation:patient:code=c1&name=smith"),
    ("Observation", "patient=p2&_count=2"),
    ("Patient", "_id=p1,p2"),
]


async def _fill(repo: SqlRepository, patients: range) -> None:
    for p in patients:
        await store(repo, resource("Patient", f"p{p}", name=[{"family": f"Smith{p}"}]))
        for o in range(4):
            code = {"coding": [{"system": "http://loinc.org", "code": f"c{o % 2}"}]}
            labels = [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"}]
            labels[0]["code"] = "R" if o == 3 else "N"
            await store(
                repo,
                resource(
                    "Observation",
                    f"p{p}-o{o}",
                    meta={"security": labels},
                    status="final",
                    code=code,
                    subject={"reference": f"Patient/p{p}"},
                    effectiveDateTime=f"202{o}-01-01",
                ),
            )


async def test_reused_conditions_find_what_fresh_ones_find(open_repo: OpenRepo) -> None:
    cached = await open_repo()  # one planner for every query: conditions are reused
    await _fill(cached, range(4))
    rounds = []
    for _ in range(2):
        rounds.append([await ids(cached, t, q) for t, q in QUERIES])
    fresh = []
    for resource_type, query in QUERIES:  # a new repository (new planner) per query
        repo = await open_repo()
        fresh.append(await ids(repo, resource_type, query))
    assert rounds[0] == rounds[1] == fresh
    assert all(fresh[:4]) and sorted(fresh[0]) == ["p1-o0", "p1-o1", "p1-o2", "p1-o3"]
    await _fill(cached, range(4, 6))  # later writes are found by the reused conditions too
    assert sorted(await ids(cached, "Observation", "code=c1")) == sorted(
        f"p{p}-o{o}" for p in range(6) for o in (1, 3)
    )


def test_the_cache_is_bounded_and_keeps_the_most_recent() -> None:
    from healthbridge.store.sql.search.conditions import Constant

    cache = ConditionCache(size=3)
    made = [cache.get(n, lambda: Constant(True)) for n in range(5)]
    assert cache.get(4, lambda: Constant(False)) is made[4]  # kept: not rebuilt
    assert cache.get(0, lambda: Constant(False)) is not made[0]  # evicted: rebuilt
    unhashable = cache.get(["a"], lambda: Constant(True))  # cannot be a key: built each time
    assert unhashable is not cache.get(["a"], lambda: Constant(True))

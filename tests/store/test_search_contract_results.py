"""Contract: paging, totals, ``_summary=count`` and cursors on every backend.

Spec: https://hl7.org/fhir/R4/search.html#count and #paging (a stable cursor: pages neither
repeat nor skip resources, even when writes happen between them), #total and #summary; a
malformed or foreign cursor is a 400 (repository.py ``Repository.search``).
"""

from __future__ import annotations

import pytest

from healthbridge.fhir.errors import InvalidRequest
from healthbridge.store.repository import Repository
from tests.store.search_fixtures import all_pages, ids, parse, person, resource, store

# -- paging --------------------------------------------------------------------------------


async def test_paging_walks_every_match_once(repo: Repository) -> None:
    """search.html#paging: following next links visits every match exactly once, in the same
    order as one big page; every page but the last is full."""
    names = [f"p{i:02}" for i in range(23)]
    await store(repo, *(person(id, ("Same",), f"19{i:02}") for i, id in enumerate(names)))
    for querystring in ("", "_sort=birthdate", "_sort=-family", "family=same"):
        whole = await ids(repo, "Patient", f"{querystring}&_count=100".lstrip("&"))
        assert sorted(whole) == names, querystring
        pages = await all_pages(repo, parse("Patient", f"{querystring}&_count=5".lstrip("&")))
        assert [len(p.matches) for p in pages] == [5, 5, 5, 5, 3], querystring
        assert [s.id for p in pages for s in p.matches] == whole, querystring


async def test_paging_through_ties_missing_and_repeated_sort_values(
    repo: Repository,
) -> None:
    """search.html#paging with #sort: the cursor resumes correctly when a page ends inside a run
    of equal sort values, among resources without a value, or on a resource with several
    values (ascending by its lowest, descending by its highest)."""
    await store(
        repo,
        *(person(f"same{i}", ("Same",), "2000") for i in range(5)),
        *(person(f"none{i}") for i in range(5)),
        *(person(f"two{i}", (f"A{i}", f"Z{i}"), f"199{i}") for i in range(5)),
    )
    for sort in (
        "family",
        "-family",
        "birthdate",
        "-birthdate",
        "_lastUpdated",
        "-_id",
        "family,-birthdate",
        "-birthdate,_id",
    ):
        whole = await ids(repo, "Patient", f"_sort={sort}&_count=100")
        assert len(whole) == 15, sort
        for count in (1, 2, 4):
            pages = await all_pages(repo, parse("Patient", f"_sort={sort}&_count={count}"))
            assert [s.id for p in pages for s in p.matches] == whole, (sort, count)


async def test_paging_a_system_level_search(repo: Repository) -> None:
    """search.html#paging: a search across types pages like any other."""
    sizes = {"Patient": 4, "Organization": 4, "Practitioner": 3}
    everything = {f"{t}/p{i}" for t, n in sizes.items() for i in range(n)}
    for resource_type, n in sizes.items():
        await store(repo, *(resource(resource_type, f"p{i}") for i in range(n)))
    people = {r for r in everything if not r.startswith("Organization/")}
    cases = {"": everything, "&_sort=_id": everything, "&_type=Patient,Practitioner": people}
    for querystring, wanted in cases.items():
        whole = await ids(repo, None, f"_count=100{querystring}")
        assert sorted(whole) == sorted(wanted), querystring
        pages = await all_pages(repo, parse(None, f"_count=3{querystring}"))
        assert [f"{s.resource_type}/{s.id}" for p in pages for s in p.matches] == whole


async def test_writes_between_pages_neither_repeat_nor_skip(repo: Repository) -> None:
    """search.html#paging: the cursor continues after the last resource of the previous page,
    so resources created, updated or deleted in between (even the last resource of the page)
    do not make the pages repeat or skip the resources that existed all along."""
    names = [f"p{i:02}" for i in range(20)]
    await store(repo, *(person(id, (f"F{i:02}",)) for i, id in enumerate(names)))
    sorts = ("_count=5", "_count=5&_sort=family", "_count=5&_sort=-family")
    for attempt, querystring in enumerate(sorts):
        query = parse("Patient", querystring)
        page = await repo.search(query)
        seen = [s.id for s in page.matches]
        unseen = [id for id in names if id not in seen]
        await store(repo, *(person(f"new-{attempt}-{i}", (f"F{i:02}x",)) for i in range(5)))
        for id in (seen[0], unseen[0], unseen[1]):
            await repo.update("Patient", id, person(id, (f"F{names.index(id):02}",), "2000"))
        deleted, anchor = unseen[-1], seen[-1]  # the cursor continues after the anchor
        await repo.delete("Patient", deleted)
        await repo.delete("Patient", anchor)
        rest = await all_pages(repo, query, page.next_cursor)
        seen += [s.id for p in rest for s in p.matches]
        assert len(seen) == len(set(seen)), (querystring, seen)
        assert deleted not in seen, querystring
        assert {id for id in names if id != deleted} <= set(seen), querystring
        for id in (deleted, anchor):
            await repo.update("Patient", id, person(id, (f"F{names.index(id):02}",)))


async def test_total_and_summary_count(repo: Repository) -> None:
    """search.html#total and #summary: ``_total=accurate``/``estimate`` ask for the count;
    without it the total is given when the whole result is on the first page; ``_total=none``
    never; ``_summary=count`` gives the count and no resources."""
    await store(repo, *(person(f"p{i}", ("Match",)) for i in range(7)), person("x", ("Other",)))
    cases: list[tuple[str, int | None]] = [
        ("family=match&_count=10", 7),
        ("family=match&_count=3", None),
        ("family=match&_count=3&_total=accurate", 7),
        ("family=match&_count=3&_total=estimate", 7),
        ("family=match&_count=10&_total=none", None),
        ("family=nothing", 0),
    ]
    for querystring, total in cases:
        page = await repo.search(parse("Patient", querystring))
        assert page.total == total, querystring
    page = await repo.search(parse("Patient", "family=match&_summary=count"))
    assert (page.matches, page.included, page.next_cursor, page.total) == ([], [], None, 7)


MALFORMED = ["not a cursor", "AAAA", "eyJrIjoxfQ", "x" * 5000, "\x00", "null", "[]", "%%%", "=="]


async def test_malformed_cursor_is_invalid_request(repo: Repository) -> None:
    """repository.py Repository.search: a malformed cursor raises InvalidRequest (400),
    never anything else."""
    await store(repo, *(person(f"p{i}") for i in range(3)))
    accepted: list[str] = []
    for cursor in MALFORMED:
        try:
            await repo.search(parse("Patient", "_count=1"), cursor)
        except InvalidRequest:
            continue
        accepted.append(cursor[:20])
    assert accepted == []


async def test_cursor_of_another_search_is_invalid_request(repo: Repository) -> None:
    """repository.py Repository.search: a foreign cursor (from a search of another type or
    another sort) raises InvalidRequest."""
    await store(repo, *(person(f"p{i}", ("F",), "2000") for i in range(3)))
    await store(repo, *(resource("Organization", f"o{i}") for i in range(3)))
    page = await repo.search(parse("Patient", "_count=1&_sort=family"))
    assert page.next_cursor is not None
    with pytest.raises(InvalidRequest):
        await repo.search(parse("Organization", "_count=1"), page.next_cursor)
    with pytest.raises(InvalidRequest):
        await repo.search(parse("Patient", "_count=1&_sort=-birthdate"), page.next_cursor)

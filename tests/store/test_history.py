"""Contract: history at instance, type and system level on every backend.

Spec: https://hl7.org/fhir/R4/http.html#history: newest first, deletes included, ``_since``
(versions at or after the instant), ``_at`` (per resource the version current at the instant),
``_count`` and paging; the server may page with its own links (here an opaque keyset cursor).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from healthbridge.fhir.errors import InvalidRequest, NotFound
from healthbridge.store.repository import HistoryPage, HistoryQuery, Repository, StoredResource
from tests.support.clock import FakeClock

PATIENT = {"resourceType": "Patient"}
OBSERVATION = {"resourceType": "Observation", "status": "final"}


def keys(page: HistoryPage | list[StoredResource]) -> list[tuple[str, str, int]]:
    entries = page.entries if isinstance(page, HistoryPage) else page
    return [(e.resource_type, e.id, e.version_id) for e in entries]


async def _seed(repo: Repository, clock: FakeClock) -> None:
    """t+0 Patient/a v1, t+1 Observation/o v1, t+2 Patient/a v2, t+3 Patient/b v1, t+4 a deleted."""
    await repo.update("Patient", "a", PATIENT)
    clock.advance(seconds=1)
    await repo.update("Observation", "o", OBSERVATION)
    clock.advance(seconds=1)
    await repo.update("Patient", "a", {**PATIENT, "active": True})
    clock.advance(seconds=1)
    await repo.update("Patient", "b", PATIENT)
    clock.advance(seconds=1)
    await repo.delete("Patient", "a")


async def all_pages(repo: Repository, query: HistoryQuery) -> list[StoredResource]:
    entries: list[StoredResource] = []
    cursor = None
    while True:
        page = await repo.history(
            HistoryQuery(query.resource_type, query.id, query.since, query.at, query.count, cursor)
        )
        entries += page.entries
        if page.next_cursor is None:
            return entries
        cursor = page.next_cursor


async def test_instance_history_is_newest_first_with_deletes(
    repo: Repository, clock: FakeClock
) -> None:
    await _seed(repo, clock)
    page = await repo.history(HistoryQuery("Patient", "a"))
    assert keys(page) == [("Patient", "a", 3), ("Patient", "a", 2), ("Patient", "a", 1)]
    assert [e.method for e in page.entries] == ["delete", "update", "update"]
    assert page.entries[0].deleted and page.entries[0].content == b""
    assert (page.total, page.next_cursor) == (3, None)
    assert page.entries[1] == await repo.vread("Patient", "a", 2)


async def test_type_and_system_history(repo: Repository, clock: FakeClock) -> None:
    await _seed(repo, clock)
    patients = await repo.history(HistoryQuery("Patient"))
    assert keys(patients) == [
        ("Patient", "a", 3),
        ("Patient", "b", 1),
        ("Patient", "a", 2),
        ("Patient", "a", 1),
    ]
    assert patients.total == 4
    everything = await repo.history(HistoryQuery())
    assert keys(everything)[3] == ("Observation", "o", 1)
    assert everything.total == 5


async def test_unknown_instance_history_is_not_found(repo: Repository) -> None:
    with pytest.raises(NotFound):
        await repo.history(HistoryQuery("Patient", "nope"))
    assert (await repo.history(HistoryQuery("Patient"))).entries == []


async def test_since_keeps_versions_at_or_after_the_instant(
    repo: Repository, clock: FakeClock
) -> None:
    start = clock.now
    await _seed(repo, clock)
    page = await repo.history(HistoryQuery(since=start + timedelta(seconds=2)))
    assert keys(page) == [("Patient", "a", 3), ("Patient", "b", 1), ("Patient", "a", 2)]
    assert page.total == 3
    exact = await repo.history(HistoryQuery(since=start + timedelta(seconds=2, microseconds=1)))
    assert keys(exact) == [("Patient", "a", 3), ("Patient", "b", 1)]
    instance = await repo.history(HistoryQuery("Patient", "a", since=start + timedelta(seconds=3)))
    assert keys(instance) == [("Patient", "a", 3)]


async def test_at_keeps_the_version_current_at_the_instant(
    repo: Repository, clock: FakeClock
) -> None:
    start = clock.now
    await _seed(repo, clock)
    at_2_5 = await repo.history(HistoryQuery(at=start + timedelta(seconds=2, milliseconds=500)))
    assert keys(at_2_5) == [("Patient", "a", 2), ("Observation", "o", 1)]
    assert at_2_5.total == 2
    exactly_3 = await repo.history(HistoryQuery("Patient", at=start + timedelta(seconds=3)))
    assert keys(exactly_3) == [("Patient", "b", 1), ("Patient", "a", 2)]
    after_all = await repo.history(HistoryQuery("Patient", "a", at=start + timedelta(days=1)))
    assert keys(after_all) == [("Patient", "a", 3)]  # the delete is what was current
    before = await repo.history(HistoryQuery(at=start - timedelta(microseconds=1)))
    assert (before.entries, before.total) == ([], 0)
    both = await repo.history(
        HistoryQuery(since=start + timedelta(seconds=1), at=start + timedelta(seconds=2))
    )
    assert keys(both) == [("Patient", "a", 2), ("Observation", "o", 1)]


async def test_count_and_cursor_page_through_everything_once(
    repo: Repository, clock: FakeClock
) -> None:
    await _seed(repo, clock)
    expected = keys(await repo.history(HistoryQuery(count=100)))
    for count in (1, 2, 4, 5):
        assert keys(await all_pages(repo, HistoryQuery(count=count))) == expected
    first = await repo.history(HistoryQuery(count=2))
    assert (len(first.entries), first.total) == (2, 5)
    assert isinstance(first.next_cursor, str)


async def test_paging_through_equal_timestamps(repo: Repository) -> None:
    """The clock stands still: order falls back to version, type and id, still a total order."""
    for n in range(7):
        await repo.update("Patient", f"p{n}", PATIENT)
        await repo.update("Observation", f"p{n}", OBSERVATION)
    entries = await all_pages(repo, HistoryQuery(count=3))
    assert len(set(keys(entries))) == 14
    assert keys(entries) == keys(await repo.history(HistoryQuery(count=100)))


async def test_pages_are_stable_under_concurrent_inserts(
    repo: Repository, clock: FakeClock
) -> None:
    for n in range(10):
        clock.advance(seconds=1)
        await repo.update("Patient", f"p{n}", PATIENT)
    before = keys(await repo.history(HistoryQuery(count=100)))
    page = await repo.history(HistoryQuery(count=4))
    seen = keys(page)
    while page.next_cursor is not None:
        clock.advance(seconds=1)  # newer versions arrive between page requests
        await asyncio.gather(
            repo.update("Patient", "p0", PATIENT),
            repo.update("Patient", f"new{len(seen)}", PATIENT),
        )
        page = await repo.history(HistoryQuery(count=4, cursor=page.next_cursor))
        seen += keys(page)
    assert seen == before


async def test_count_zero_gives_only_the_total(repo: Repository, clock: FakeClock) -> None:
    await _seed(repo, clock)
    page = await repo.history(HistoryQuery(count=0))
    assert (page.entries, page.next_cursor, page.total) == ([], None, 5)


async def test_a_bad_cursor_is_an_invalid_request(repo: Repository) -> None:
    for cursor in ("not-a-cursor", "W10", "eyJ4IjoxfQ"):
        with pytest.raises(InvalidRequest):
            await repo.history(HistoryQuery(cursor=cursor))

"""Contract: concurrent writers get race-free versions on every backend.

Spec: https://hl7.org/fhir/R4/http.html#concurrency (If-Match: of several updates based on the
same version exactly one succeeds, the rest get 412) and #versioning (versions 1, 2, 3... with
none lost or repeated). Writers are asyncio tasks on one repository, and on the SQL backends
also threads and processes each with its own repository on the same database, as several
server workers would be. Creates with the same client id: exactly one makes version 1; other
creates get Conflict, other updates-as-create become the next versions.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

import pytest

from healthbridge.fhir.errors import Conflict, InvalidRequest, PreconditionFailed
from healthbridge.store.repository import HistoryQuery, Repository, StoredResource
from tests.support.writers import Outcome, create_with_id, update_if_match, update_many

PATIENT = {"resourceType": "Patient"}
N = 20


async def test_parallel_updates_get_distinct_consecutive_versions(repo: Repository) -> None:
    await repo.create("Patient", PATIENT, id="p")
    results = await asyncio.gather(*(repo.update("Patient", "p", PATIENT) for _ in range(N)))
    assert sorted(stored.version_id for stored, _ in results) == list(range(2, N + 2))
    history = await repo.history(HistoryQuery("Patient", "p", count=1000))
    assert history.total == N + 1
    assert [e.version_id for e in history.entries] == list(range(N + 1, 0, -1))
    stamps = [e.last_updated for e in reversed(history.entries)]
    assert stamps == sorted(stamps) and len(set(stamps)) == N + 1
    assert len(await repo.outbox_since(0, limit=1000)) == N + 1


async def test_parallel_updates_with_the_same_if_match_one_wins(repo: Repository) -> None:
    await repo.create("Patient", PATIENT, id="p")
    results = await asyncio.gather(
        *(repo.update("Patient", "p", PATIENT, if_match=1) for _ in range(N)),
        return_exceptions=True,
    )
    winners = [r for r in results if isinstance(r, tuple)]
    assert len(winners) == 1 and winners[0][0].version_id == 2
    assert all(isinstance(r, PreconditionFailed) for r in results if not isinstance(r, tuple))
    assert (await repo.read("Patient", "p")).version_id == 2


async def test_parallel_creates_with_the_same_id_one_wins(repo: Repository) -> None:
    results = await asyncio.gather(
        *(repo.create("Patient", PATIENT, id="same") for _ in range(N)), return_exceptions=True
    )
    created = [r for r in results if isinstance(r, StoredResource)]
    assert len(created) == 1 and created[0].version_id == 1
    assert all(isinstance(r, Conflict) for r in results if not isinstance(r, StoredResource))
    assert len(await repo.outbox_since(0, limit=1000)) == 1


async def test_parallel_updates_as_create_of_a_new_id(repo: Repository) -> None:
    results = await asyncio.gather(*(repo.update("Patient", "new", PATIENT) for _ in range(N)))
    assert sorted(stored.version_id for stored, _ in results) == list(range(1, N + 1))
    assert [created for stored, created in results if stored.version_id == 1] == [True]
    assert sum(created for _, created in results) == 1


async def test_concurrent_changes_that_fail_leave_the_others_and_no_trace(
    repo: Repository,
) -> None:
    """Each caller gets its own outcome (http.html#create, #update, #concurrency): a Conflict, a
    failed If-Match or a bad id fails only that change, which leaves no version and no event."""
    await repo.create("Patient", PATIENT, id="taken")
    await repo.create("Patient", PATIENT, id="guarded")
    results = await asyncio.gather(
        *(repo.create("Patient", PATIENT, id=f"ok{n}") for n in range(5)),
        repo.create("Patient", PATIENT, id="taken"),
        repo.update("Patient", "guarded", PATIENT, if_match=7),
        repo.create("Patient", PATIENT, id="bad id!"),
        repo.delete("Patient", "guarded", if_match=9),
        repo.update("Patient", "guarded", PATIENT),
        return_exceptions=True,
    )
    created, failed, updated = results[:5], results[5:9], results[9]
    assert [stored.id for stored in created if isinstance(stored, StoredResource)] == [
        f"ok{n}" for n in range(5)
    ]
    assert [type(error) for error in failed] == [
        Conflict,
        PreconditionFailed,
        InvalidRequest,
        PreconditionFailed,
    ]
    assert isinstance(updated, tuple) and updated[0].version_id == 2
    assert (await repo.history(HistoryQuery("Patient", "taken"))).total == 1
    assert (await repo.history(HistoryQuery("Patient", "guarded"))).total == 2
    events = [(e.id, e.version_id) for e in await repo.outbox_since(0, limit=100)]
    assert sorted(events[2:]) == [("guarded", 2)] + [(f"ok{n}", 1) for n in range(5)]


async def test_many_concurrent_creates_are_each_stored_with_one_event(repo: Repository) -> None:
    """Every acknowledged create is readable and has exactly one outbox event (http.html#create)."""
    created = await asyncio.gather(
        *(repo.create("Patient", {**PATIENT, "id": "ignored"}) for _ in range(300))
    )
    assert len({stored.id for stored in created}) == 300
    for stored in created:
        assert await repo.read("Patient", stored.id) == stored
    events = await repo.outbox_since(0, limit=1000)
    assert sorted((e.id, e.version_id, e.method) for e in events) == sorted(
        (stored.id, 1, "create") for stored in created
    )
    assert len({e.seq for e in events}) == 300


async def test_concurrent_updates_and_deletes_of_one_resource_interleave_consistently(
    repo: Repository,
) -> None:
    """Updates and deletes racing on one resource make one unbroken version chain
    (http.html#versioning), each change building on the one before it."""
    await repo.create("Patient", PATIENT, id="p")
    changes: list[Coroutine[Any, Any, object]] = [
        repo.update("Patient", "p", PATIENT) for _ in range(6)
    ]
    changes += [repo.delete("Patient", "p") for _ in range(3)]
    await asyncio.gather(*changes)
    history = await repo.history(HistoryQuery("Patient", "p", count=100))
    versions = [e.version_id for e in reversed(history.entries)]
    assert versions == list(range(1, len(versions) + 1))
    stamps = [e.last_updated for e in reversed(history.entries)]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    for before, after in zip(history.entries[1:], history.entries, strict=False):
        assert not (before.deleted and after.deleted)  # nothing live to delete: no version
    assert len(await repo.outbox_since(0, limit=100)) == len(versions)


async def test_history_pages_while_writers_run(repo: Repository) -> None:
    for n in range(30):
        await repo.update("Patient", f"p{n}", PATIENT)
    expected = [(e.id, e.version_id) for e in (await repo.history(HistoryQuery(count=100))).entries]
    page = await repo.history(HistoryQuery(count=7))
    seen = [(e.id, e.version_id) for e in page.entries]
    while page.next_cursor is not None:
        cursor = page.next_cursor
        writes = [repo.update("Patient", f"p{n}", PATIENT) for n in range(3)]
        page, _ = await asyncio.gather(
            repo.history(HistoryQuery(count=7, cursor=cursor)), asyncio.gather(*writes)
        )
        seen += [(e.id, e.version_id) for e in page.entries]
    assert seen == expected


# --- several repositories (threads, processes) on one SQL database ---------------------------


@pytest.fixture(scope="module")
def processes() -> Iterator[Executor]:
    """Fresh interpreters (spawn), started once: each opens its own repository per task."""
    with ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("spawn")) as started:
        yield started


@pytest.fixture(params=["threads", "processes"])
def pool(request: pytest.FixtureRequest) -> Iterator[Executor]:
    if request.param == "processes":
        yield request.getfixturevalue("processes")
        return
    with ThreadPoolExecutor(4) as threads:
        yield threads


def _run_all(pool: Executor, work: Callable[..., Outcome | list[Outcome]], *args: Any) -> list[Any]:
    return [future.result(timeout=120) for future in [pool.submit(work, *a) for a in args]]


def test_writers_in_several_workers_get_consecutive_versions(sql_url: str, pool: Executor) -> None:
    per_worker = 10
    results = _run_all(pool, update_many, *[(sql_url, "Patient", "p", per_worker)] * 4)
    versions = sorted(v for worker in results for v in worker)
    assert versions == list(range(1, 4 * per_worker + 1))
    for worker in results:
        assert worker == sorted(worker)


def test_if_match_across_workers_one_wins(sql_url: str, pool: Executor) -> None:
    update_many(sql_url, "Patient", "p", 1)
    results = _run_all(pool, update_if_match, *[(sql_url, "Patient", "p", 1)] * 8)
    assert sorted(results, key=str) == [2] + ["PreconditionFailed"] * 7


def test_creates_with_the_same_id_across_workers(sql_url: str, pool: Executor) -> None:
    results = _run_all(pool, create_with_id, *[(sql_url, "Patient", "same")] * 8)
    assert sorted(results, key=str) == [1] + ["Conflict"] * 7

"""Job state contract (https://hl7.org/fhir/R4/async.html): the same on memory, SQLite and
PostgreSQL. One process owns a running job at a time; a silent owner is taken over; a stale
owner cannot overwrite its successor's progress."""

from __future__ import annotations

from datetime import timedelta

import pytest

from healthbridge.fhir.errors import NotFound
from healthbridge.store.repository import Repository
from tests.support.clock import FakeClock


async def test_a_job_records_progress_and_ends(repo: Repository) -> None:
    jobs = repo.jobs
    job = await jobs.create_job("reindex", {"types": ["Patient"]}, "a", total=10)
    assert (job.state, job.owner, job.processed, job.total) == ("running", "a", 0, 10)
    assert job.params == {"types": ["Patient"]}
    assert await jobs.record_progress(job.id, "a", "42", 5)
    found = await jobs.get_job(job.id)
    assert (found.cursor, found.processed) == ("42", 5)
    assert await jobs.finish_job(job.id, "a", "done")
    assert (await jobs.get_job(job.id)).state == "done"
    assert not await jobs.finish_job(job.id, "a", "failed")  # it already ended
    assert [j.id for j in await jobs.jobs("reindex", "done")] == [job.id]
    assert await jobs.jobs("reindex", "running") == []


async def test_only_the_owner_records_progress(repo: Repository) -> None:
    job = await repo.jobs.create_job("reindex", {}, "a")
    assert not await repo.jobs.record_progress(job.id, "b", "1", 1)
    assert not await repo.jobs.finish_job(job.id, "b", "done")
    assert (await repo.jobs.get_job(job.id)).processed == 0


async def test_a_silent_owner_is_taken_over_and_cannot_come_back(
    repo: Repository, clock: FakeClock
) -> None:
    job = await repo.jobs.create_job("reindex", {}, "a")
    assert await repo.jobs.claim_job("reindex", "b", timedelta(seconds=30)) is None  # still alive
    clock.advance(seconds=31)
    taken = await repo.jobs.claim_job("reindex", "b", timedelta(seconds=30))
    assert taken is not None and (taken.id, taken.owner) == (job.id, "b")
    assert not await repo.jobs.record_progress(job.id, "a", "9", 9)  # "a" lost it
    assert await repo.jobs.record_progress(job.id, "b", "9", 9)
    # The owner itself may claim again (a restart with the same name resumes at once).
    again = await repo.jobs.claim_job("reindex", "b", timedelta(seconds=30))
    assert again is not None and again.cursor == "9"


async def test_cancel_stops_a_running_job(repo: Repository) -> None:
    job = await repo.jobs.create_job("reindex", {}, "a")
    assert (await repo.jobs.cancel_job(job.id)).state == "cancelled"
    assert not await repo.jobs.record_progress(job.id, "a", "1", 1)
    with pytest.raises(NotFound):
        await repo.jobs.get_job("no-such-job")

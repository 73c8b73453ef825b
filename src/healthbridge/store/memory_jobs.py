"""The in-memory :class:`~healthbridge.store.jobs.JobStore` (same contract as :mod:`.sql.jobs`).

Pattern: https://hl7.org/fhir/R4/async.html. Nothing survives the process.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import timedelta
from typing import Any

from healthbridge.fhir.errors import NotFound
from healthbridge.store.instants import Clock, utc
from healthbridge.store.jobs import STALE_AFTER, Job, JobState


class MemoryJobs:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._jobs: dict[str, Job] = {}

    async def create_job(
        self, kind: str, params: dict[str, Any], owner: str, total: int | None = None
    ) -> Job:
        now = utc(self._clock())
        job = Job(
            str(uuid.uuid4()), kind, "running", dict(params), None, 0, total, owner, None, now, now
        )
        self._jobs[job.id] = job
        return job

    async def get_job(self, id: str) -> Job:
        job = self._jobs.get(id)
        if job is None:
            raise NotFound(f"Job {id} is not known")
        return job

    async def jobs(self, kind: str, state: JobState | None = None) -> list[Job]:
        found = [j for j in self._jobs.values() if j.kind == kind]
        found = [j for j in found if state is None or j.state == state]
        return sorted(found, key=lambda j: j.created, reverse=True)

    async def claim_job(
        self, kind: str, owner: str, stale_after: timedelta = STALE_AFTER
    ) -> Job | None:
        now = utc(self._clock())
        for job in sorted(self._jobs.values(), key=lambda j: j.created):
            takeable = job.owner == owner or job.updated < now - stale_after
            if job.kind == kind and job.state == "running" and takeable:
                self._jobs[job.id] = replace(job, owner=owner, updated=now)
                return self._jobs[job.id]
        return None

    def _owned(self, id: str, owner: str) -> Job | None:
        job = self._jobs.get(id)
        return job if job is not None and job.owner == owner and job.state == "running" else None

    async def record_progress(
        self, id: str, owner: str, cursor: str | None, processed: int
    ) -> bool:
        job = self._owned(id, owner)
        if job is None:
            return False
        now = utc(self._clock())
        self._jobs[id] = replace(job, cursor=cursor, processed=processed, updated=now)
        return True

    async def finish_job(
        self, id: str, owner: str, state: JobState, error: str | None = None
    ) -> bool:
        job = self._owned(id, owner)
        if job is None:
            return False
        self._jobs[id] = replace(job, state=state, error=error, updated=utc(self._clock()))
        return True

    async def cancel_job(self, id: str) -> Job:
        job = await self.get_job(id)
        if job.state == "running":
            self._jobs[id] = replace(job, state="cancelled", updated=utc(self._clock()))
        return self._jobs[id]

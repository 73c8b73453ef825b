"""The ``$reindex`` job: make custom SearchParameters searchable over resources already stored.

https://hl7.org/fhir/R4/searchparameter.html (custom parameters) and the asynchronous request
pattern https://hl7.org/fhir/R4/async.html (accepted, then polled). :meth:`ReindexRunner.start`
records a job holding every active custom SearchParameter, then runs it in the background:

1. wait :data:`BARRIER_SECONDS` (2.5 registry refresh intervals), so that every
   server process indexes new writes with the new parameters before the scan passes them;
2. rebuild the index of all live resources in resource-key order, ``batch`` at a time
   (:class:`Reindexer`), saving the last key as the job's cursor after each batch: progress is
   visible (``processed`` of ``total``) and a restarted server resumes from there
   (:meth:`ReindexRunner.resume`);
3. mark the job done, which makes the parameters searchable (:mod:`.search_registry`).

A cancelled job stops at its next batch. A failure marks the job failed with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import Sequence

from healthbridge.fhir.errors import InvalidRequest
from healthbridge.fhir.search.custom import custom_parameter, is_active
from healthbridge.fhir.types import Resource
from healthbridge.jobs.search_registry import KIND, REFRESH_SECONDS, SearchRegistry
from healthbridge.store.jobs import Job, JobStore
from healthbridge.store.reindexing import Reindexer

BATCH = 500
BARRIER_SECONDS = REFRESH_SECONDS * 2.5


def process_name() -> str:
    """A name for this server process, unique enough to own jobs."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class ReindexRunner:
    def __init__(
        self,
        jobs: JobStore,
        reindexer: Reindexer,
        registry: SearchRegistry,
        *,
        owner: str | None = None,
        batch: int = BATCH,
        barrier_seconds: float = BARRIER_SECONDS,
    ) -> None:
        self._jobs = jobs
        self._reindexer = reindexer
        self._registry = registry
        self.owner = owner or process_name()
        self._batch = batch
        self._barrier = barrier_seconds
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def jobs(self) -> JobStore:
        return self._jobs

    def parameters(self, resources: Sequence[Resource]) -> list[Resource]:
        """The active SearchParameter resources that define usable custom parameters."""
        active = [r for r in resources if is_active(r)]
        for resource in active:
            custom_parameter(resource, self._registry.core)  # raises Unprocessable if not
        return active

    async def start(self, resources: Sequence[Resource], types: Sequence[str] | None) -> Job:
        """Record a reindex job for ``resources`` (all stored SearchParameters) and run it."""
        if await self._jobs.jobs(KIND, "running"):
            raise InvalidRequest("A $reindex is already running; wait for it or cancel it")
        params = {"parameters": self.parameters(resources), "types": list(types or [])}
        total = await self._reindexer.count(types)
        job = await self._jobs.create_job(KIND, params, self.owner, total)
        await self._registry.refresh(self._jobs)  # this process indexes with them at once
        self._spawn(job, wait=True)
        return job

    async def resume(self) -> None:
        """Take over reindex jobs whose owner stopped (a restart, a crash) and finish them."""
        while (job := await self._jobs.claim_job(KIND, self.owner)) is not None:
            await self._run(job, wait=False)

    def _spawn(self, job: Job, *, wait: bool) -> None:
        task = asyncio.create_task(self._run(job, wait=wait), name=f"reindex-{job.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, job: Job, *, wait: bool) -> None:
        try:
            if wait:
                await asyncio.sleep(self._barrier)
            await self._registry.refresh(self._jobs)  # index with the job's parameters
            await self._scan(job)
        except asyncio.CancelledError:
            raise  # the server is stopping: the job stays running and is resumed later
        except Exception as exc:
            await self._jobs.finish_job(
                job.id, self.owner, "failed", f"{type(exc).__name__}: {exc}"
            )
        await self._registry.refresh(self._jobs)

    async def _scan(self, job: Job) -> None:
        types = job.params.get("types") or None
        after = int(job.cursor) if job.cursor else None
        processed = job.processed
        while True:
            current = await self._jobs.get_job(job.id)
            if current.state != "running" or current.owner != self.owner:
                return  # cancelled, or taken over by another process
            done = await self._reindexer.batch(types, after, self._batch)
            processed += done.processed
            after = done.next_after if done.next_after is not None else after
            cursor = None if after is None else str(after)
            if not await self._jobs.record_progress(job.id, self.owner, cursor, processed):
                return
            if done.next_after is None:
                await self._jobs.finish_job(job.id, self.owner, "done")
                return

    async def close(self) -> None:
        """Stop running jobs (they resume on the next start)."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

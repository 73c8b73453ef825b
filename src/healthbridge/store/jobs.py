"""Background jobs: durable state, progress and a resume cursor for long operations.

Long operations (``$reindex`` now; bulk export and imports later) follow FHIR's asynchronous
request pattern (https://hl7.org/fhir/R4/async.html): the request is accepted with a job id,
the client polls the job's status, and the work runs in the background. A job's state lives in
the database so that it survives restarts and is visible to every server process:

* exactly one process runs a job at a time: it *owns* the job and proves it is alive by
  updating ``updated`` (a heartbeat) with each batch of progress;
* a job whose owner stopped beating for ``stale_after`` is claimed by another process (or by
  the same one after a restart) and goes on from its saved ``cursor``;
* progress writes are conditional on still owning the job, so a process that was presumed
  dead and comes back cannot overwrite its successor's progress.

:class:`JobStore` is implemented by the SQL repository (:mod:`.sql.jobs`) and the memory fake
(:mod:`.memory_jobs`) and checked by the same contract tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

JobState = Literal["running", "done", "failed", "cancelled"]
STALE_AFTER = timedelta(seconds=30)
"""A running job whose heartbeat is older than this is taken over by another process."""


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    kind: str
    state: JobState
    params: dict[str, Any]
    cursor: str | None
    processed: int
    total: int | None
    owner: str | None
    error: str | None
    created: datetime
    updated: datetime


class JobStore(Protocol):
    async def create_job(
        self, kind: str, params: dict[str, Any], owner: str, total: int | None = None
    ) -> Job:
        """A new running job owned by ``owner``."""
        ...

    async def get_job(self, id: str) -> Job:
        """The job; NotFound when there is none with that id."""
        ...

    async def jobs(self, kind: str, state: JobState | None = None) -> list[Job]:
        """Jobs of ``kind`` (in ``state``), newest first."""
        ...

    async def claim_job(
        self, kind: str, owner: str, stale_after: timedelta = STALE_AFTER
    ) -> Job | None:
        """Take over the oldest running job of ``kind`` whose heartbeat is older than
        ``stale_after`` (or that ``owner`` already holds); None when there is none."""
        ...

    async def record_progress(
        self, id: str, owner: str, cursor: str | None, processed: int
    ) -> bool:
        """Save progress and beat; False (nothing saved) when ``owner`` no longer owns it."""
        ...

    async def finish_job(
        self, id: str, owner: str, state: JobState, error: str | None = None
    ) -> bool:
        """End the job; False when ``owner`` no longer owns it or it already ended."""
        ...

    async def cancel_job(self, id: str) -> Job:
        """Cancel a running job (its owner stops at its next batch); NotFound if unknown."""
        ...

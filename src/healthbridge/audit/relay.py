"""The outbox relay of the audit trail: one AuditEvent per committed change, at least once.

Every committed write leaves an outbox row in its own database transaction, carrying who made it
(:mod:`healthbridge.store.actor`); SECURITY.md asks for side effects "at-least-once after a
crash, deduplicated by event number, never describing a write that did not commit". The relay
tails the outbox from a durable cursor and appends a BALP AuditEvent per row
(:func:`~healthbridge.audit.events.change_entry`) whose ``source_seq`` is the row's number; the
log stores each ``source_seq`` once, so a batch relayed again after a crash (appended, but the
cursor not yet saved) is not stored twice.

* One relay at a time across server processes: the relay owns a job of kind
  :data:`RELAY_JOB` (:mod:`healthbridge.store.jobs`): its heartbeat and cursor live in the job
  row, a process whose heartbeat stops is replaced by another after ``STALE_AFTER``, and a
  presumed-dead owner that comes back finds it lost the job and stands by. Two processes that
  start at once both create a job; the older one wins and the other cancels its own.
* Commit order is not seq order on PostgreSQL: seq 10 may commit after 11. The relay handles
  rows beyond such a gap at once but saves its cursor only up to the gap, and keeps looking for
  the missing seq until :attr:`OutboxRelay.gap_timeout` has passed (a rolled-back transaction
  leaves a permanent gap). SQLite and the memory fake commit in seq order.
* The Patient of a change (BALP's patient entity) comes from the version written (for a delete,
  the version before), read back from the repository and matched against the Patient
  compartment (:mod:`.patients`), off the request path.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from healthbridge.audit.events import AuditSource, change_entry
from healthbridge.audit.patients import PatientFinder
from healthbridge.fhir.errors import FhirError
from healthbridge.infra.logging import get_logger
from healthbridge.infra.tasks import stopping
from healthbridge.store.jobs import STALE_AFTER, Job
from healthbridge.store.repository import OutboxEvent, Repository

RELAY_JOB = "audit-relay"
_log = get_logger("healthbridge.audit.relay")


@dataclass(slots=True)
class RelayState:
    """Where the relay stands: every seq up to ``cursor`` is handled; ``done`` holds handled
    seqs beyond it, ``gaps`` the missing ones with when they were first missed."""

    cursor: int = 0
    high: int = 0
    done: set[int] = field(default_factory=set)
    gaps: dict[int, float] = field(default_factory=dict)

    def advance(self, now: float, timeout: float) -> list[int]:
        """Move the cursor over handled seqs and gaps older than ``timeout``; the gaps given
        up on."""
        abandoned = []
        while self.cursor < self.high:
            following = self.cursor + 1
            if following in self.done:
                self.done.discard(following)
            elif now - self.gaps.get(following, now) > timeout:
                del self.gaps[following]
                abandoned.append(following)
            else:
                break
            self.cursor = following
        return abandoned


def _described(event: OutboxEvent) -> int:
    """The version whose patients an event's audit entry names: a delete's, the one before."""
    return event.version_id - 1 if event.method == "delete" else event.version_id


class OutboxRelay:
    def __init__(
        self,
        repository: Repository,
        key: bytes,
        source: AuditSource,
        finder: PatientFinder | None,
        *,
        owner: str,
        batch_size: int = 500,
        poll_seconds: float = 0.2,
        gap_timeout: float = 60.0,
        max_gap_checks: int = 50,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._repository = repository
        self._key = key
        self._source = source
        self._finder = finder
        self.owner = owner
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self.gap_timeout = gap_timeout
        self.max_gap_checks = max_gap_checks
        self._clock = clock
        self.state = RelayState()
        self.job: Job | None = None
        self.relayed = 0
        self.lag_seconds = 0.0
        self._saved_at = 0.0
        self._saved_cursor = -1

    # --- ownership -----------------------------------------------------------------------

    async def claim(self) -> bool:
        """Own the relay job: take it over when its owner went quiet, or start a new one from
        the cursor of the last one when none runs; True when this relay owns it now."""
        jobs = self._repository.jobs
        job = await jobs.claim_job(RELAY_JOB, self.owner)
        if job is None:
            if await jobs.jobs(RELAY_JOB, "running"):
                return False  # another process relays
            job = await self._start(next((j for j in await jobs.jobs(RELAY_JOB) if j.cursor), None))
            if job is None:
                return False
        self.job = job
        cursor = int(job.cursor or 0)
        self.state = RelayState(cursor, cursor)
        self.relayed = job.processed
        self._saved_cursor = cursor
        self._saved_at = self._clock()
        return True

    async def _start(self, previous: Job | None) -> Job | None:
        """A new relay job going on from ``previous``; None when another process started one
        at the same moment (the older job wins)."""
        jobs = self._repository.jobs
        job = await jobs.create_job(RELAY_JOB, {}, self.owner)
        running = await jobs.jobs(RELAY_JOB, "running")
        if min(running, key=lambda j: (j.created, j.id)).id != job.id:
            await jobs.finish_job(job.id, self.owner, "cancelled")
            return None
        if previous is not None:
            await jobs.record_progress(job.id, self.owner, previous.cursor, previous.processed)
            job = await jobs.get_job(job.id)
        return job

    async def save(self, *, force: bool = False) -> bool:
        """Save the cursor and beat (at most once a second unless ``force``); False when
        another process took the job over."""
        if self.job is None:
            return False
        now = self._clock()
        moved = self.state.cursor != self._saved_cursor
        due = now - self._saved_at >= STALE_AFTER.total_seconds() / 3
        if not (force or due or (moved and now - self._saved_at >= 1.0)):
            return True
        kept = await self._repository.jobs.record_progress(
            self.job.id, self.owner, str(self.state.cursor), self.relayed
        )
        if not kept:
            _log.warning("audit relay taken over by another process", owner=self.owner)
            self.job = None
            return False
        self._saved_cursor = self.state.cursor
        self._saved_at = now
        return True

    # --- relaying ------------------------------------------------------------------------

    async def step(self) -> int:
        """Relay what is new (and what filled a gap) once; the number of events appended."""
        state = self.state
        events = await self._repository.outbox_since(state.high, self.batch_size)
        events += await self._filled_gaps()
        fresh = [e for e in events if e.seq > state.cursor and e.seq not in state.done]
        if fresh:
            patients = await self._patients(fresh)
            entries = [
                change_entry(event, found, self._source)
                for event, found in zip(fresh, patients, strict=True)
            ]
            await self._repository.audit.append(entries, self._key)
            self.relayed += len(fresh)
            newest = max(fresh, key=lambda e: e.seq)
            self.lag_seconds = (datetime.now(UTC) - newest.recorded).total_seconds()
        now = self._clock()
        for event in fresh:
            state.done.add(event.seq)
            state.gaps.pop(event.seq, None)
        top = max((e.seq for e in fresh), default=state.high)
        for missing in range(state.high + 1, top):
            if missing not in state.done:
                state.gaps[missing] = now
        state.high = max(state.high, top)
        for seq in state.advance(now, self.gap_timeout):
            _log.warning("audit relay gave up waiting for outbox event", seq=seq)
        return len(fresh)

    async def _filled_gaps(self) -> list[OutboxEvent]:
        """Events that appeared in gaps (a transaction that committed after a later one)."""
        found: list[OutboxEvent] = []
        for seq in sorted(self.state.gaps, reverse=True)[: self.max_gap_checks]:
            events = await self._repository.outbox_since(seq - 1, 1)
            if events and events[0].seq == seq:
                found.append(events[0])
        return found

    async def _patients(self, events: list[OutboxEvent]) -> list[list[str]]:
        """The patients each event's version names (a delete: the version before it), all
        read in one go (``Repository.versions``: one statement on SQL, not a read per
        change); none for a version no longer stored or itself a delete."""
        finder = self._finder
        if finder is None:
            return [[] for _ in events]
        keys = [(e.resource_type, e.id, _described(e)) for e in events]
        wanted = [key for key in keys if key[2] >= 1]
        found = dict(zip(wanted, await self._repository.versions(wanted), strict=True))
        return [
            finder.patients_in(stored.content)
            if (stored := found.get(key)) is not None and not stored.deleted
            else []
            for key in keys
        ]

    async def run(self) -> None:
        """Relay forever (the owner's loop, or a standby that claims the job when its owner
        goes quiet); database trouble is logged and retried."""
        standby = STALE_AFTER.total_seconds() / 3
        last_report = self._clock()
        while True:
            try:
                if self.job is None and not await self.claim():
                    await asyncio.sleep(standby)
                    continue
                count = await self.step()
                if not await self.save():
                    continue
                if self._clock() - last_report >= 60:
                    last_report = self._clock()
                    _log.info(
                        "audit relay",
                        cursor=self.state.cursor,
                        relayed=self.relayed,
                        lag_seconds=round(self.lag_seconds, 3),
                        open_gaps=len(self.state.gaps),
                    )
                if count < self.batch_size:
                    await asyncio.sleep(self.poll_seconds)
            except FhirError as exc:  # the database is unavailable: try again shortly
                if stopping():
                    raise
                _log.warning("audit relay failed; retrying", error=str(exc))
                await asyncio.sleep(1.0)
            except Exception:  # anything else: say so loudly, and go on after a pause
                if stopping():
                    raise
                _log.exception("audit relay failed unexpectedly; retrying")
                await asyncio.sleep(5.0)

    async def release(self) -> None:
        """Save the cursor and end the job (shutdown), so that the next process to start goes
        on from here at once rather than after ``STALE_AFTER``."""
        if self.job is None:
            return
        try:
            if await self.save(force=True) and self.job is not None:
                await self._repository.jobs.finish_job(self.job.id, self.owner, "done")
        except FhirError as exc:
            _log.warning("audit relay could not save its cursor", error=str(exc))
        self.job = None

"""The audit recorder: the request path appends to a buffer, a background task writes batches.

Every interaction is audited (HIPAA 164.312(b), IHE BALP), and reads run at thousands per second
per core, so the request path does the least possible: :meth:`AuditRecorder.record` appends a
frozen :class:`~healthbridge.audit.records.AuditRecord` to a deque (well under a microsecond).
A background task wakes every ``flush_seconds`` (or as soon as ``batch_size`` records wait),
builds the BALP AuditEvents (:mod:`.events`; Patients found in the returned resources by
:mod:`.patients`) and appends them to the log in one transaction per batch.

Nothing is dropped silently. When the database is down the records stay buffered and the
writer retries with backoff; once ``max_buffer`` records wait, :meth:`~AuditRecorder.record`
raises :class:`AuditBacklog` (503 Service Unavailable with ``Retry-After``): the server stops
serving rather than serve unaudited. Call ``record()`` before the response is sent so that the
503 can still reach the client, or check :attr:`~AuditRecorder.accepting` up front and await
:meth:`~AuditRecorder.room` (under ``asyncio.timeout``). A buffered record is lost only if the
process dies before its batch commits (at most ``flush_seconds`` of records); committed writes
are covered anyway by the outbox relay (:mod:`.relay`), which the recorder runs too.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from healthbridge.audit.events import AuditSource, record_entries
from healthbridge.audit.patients import PatientFinder
from healthbridge.audit.records import AuditRecord
from healthbridge.audit.relay import OutboxRelay
from healthbridge.fhir.errors import FhirError, Unavailable
from healthbridge.infra.logging import get_logger
from healthbridge.infra.tasks import wait_for_event
from healthbridge.store.audit import AuditEntry, AuditLog

_log = get_logger("healthbridge.audit.recorder")
RETRY_AFTER_S = 2
HEAD_LOG_SECONDS = 60.0
MAX_BACKOFF_S = 5.0


class AuditBacklog(Unavailable):
    """The audit trail cannot keep up (its database is unavailable): 503, retry later."""


class AuditRecorder:
    def __init__(
        self,
        log: AuditLog,
        key: bytes,
        source: AuditSource,
        finder: PatientFinder | None = None,
        *,
        relay: OutboxRelay | None = None,
        flush_seconds: float = 0.15,
        batch_size: int = 1000,
        max_buffer: int = 100_000,
    ) -> None:
        self._log = log
        self._key = key
        self._source = source
        self._finder = finder
        self.relay = relay
        self.flush_seconds = flush_seconds
        self.batch_size = batch_size
        self.max_buffer = max_buffer
        self._buffer: deque[AuditRecord] = deque()
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._writing = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self.appended = 0
        self.failures = 0

    # --- the request path ------------------------------------------------------------------

    def record(self, record: AuditRecord) -> None:
        """Buffer ``record`` for the background writer (O(1), never blocks). Raises
        :class:`AuditBacklog` when ``max_buffer`` records are waiting already."""
        buffer = self._buffer
        if len(buffer) >= self.max_buffer:
            self._room.clear()
            raise AuditBacklog(
                "The audit trail cannot be written at the moment; nothing was served",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        buffer.append(record)
        if len(buffer) == self.batch_size:
            self._wake.set()

    @property
    def accepting(self) -> bool:
        """False while the buffer is full (:meth:`record` would raise)."""
        return len(self._buffer) < self.max_buffer

    async def room(self) -> None:
        """Wait until the buffer has room (bound the wait with ``asyncio.timeout``)."""
        while not self.accepting:
            self._room.clear()
            await self._room.wait()

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    # --- the background writer -------------------------------------------------------------

    def start(self) -> None:
        """Start the writer (and the outbox relay) on the running loop."""
        self._tasks.append(asyncio.create_task(self._write_forever(), name="audit-writer"))
        if self.relay is not None:
            self._tasks.append(asyncio.create_task(self.relay.run(), name="audit-relay"))

    async def _write_forever(self) -> None:
        backoff = self.flush_seconds
        reported = time.monotonic()
        while True:
            await wait_for_event(self._wake, backoff)
            self._wake.clear()
            try:
                await self.flush()
                backoff = self.flush_seconds
                if time.monotonic() - reported >= HEAD_LOG_SECONDS:
                    reported = time.monotonic()
                    await self._report_head()
            except Exception as exc:  # the database is unavailable: keep the records, retry
                self.failures += 1
                backoff = min(max(backoff * 2, 0.5), MAX_BACKOFF_S)
                _log.warning(
                    "audit write failed; records kept",
                    error=str(exc),
                    buffered=len(self._buffer),
                    retry_in_seconds=backoff,
                )

    async def _report_head(self) -> None:
        """Log the head, so that a copy of it lives outside the database (``healthbridge audit
        verify --expect-seq`` compares with it: a tail removed together with a rewound head)."""
        head = await self._log.head()
        if head is not None:
            _log.info("audit head", seq=head.seq, chain=head.chain.hex())

    async def flush(self) -> int:
        """Write every buffered record now; the number of AuditEvents appended. On failure the
        records not written stay buffered, in order, and the error propagates."""
        appended = 0
        async with self._writing:
            while self._buffer:
                size = min(self.batch_size, len(self._buffer))
                batch = [self._buffer.popleft() for _ in range(size)]
                try:
                    written = len(await self._log.append(self._entries(batch), self._key))
                except BaseException:
                    self._buffer.extendleft(reversed(batch))
                    raise
                appended += written
                self.appended += written
                if len(self._buffer) < self.max_buffer:
                    self._room.set()
                await asyncio.sleep(0)  # let requests run between batches
        return appended

    def _entries(self, batch: list[AuditRecord]) -> list[AuditEntry]:
        entries: list[AuditEntry] = []
        for record in batch:
            try:
                entries += self._record_entries(record)
            except Exception:  # a record no event can be built from must not block the rest
                self.failures += 1
                _log.exception(
                    "audit record could not be turned into an AuditEvent; skipped",
                    kind=record.kind,
                    interaction=record.interaction,
                    status=record.status,
                    resource_type=record.resource_type,
                )
        return entries

    def _record_entries(self, record: AuditRecord) -> list[AuditEntry]:
        patients = set(record.patients)
        if self._finder is not None:
            for content in record.resources:
                patients.update(self._finder.patients_in(content))
        return record_entries(record, self._source, sorted(patients))

    async def close(self) -> None:
        """Stop the background tasks, write what is buffered, save the relay's cursor. The
        writer is stopped between batches, never during one: an append cancelled in flight may
        still commit (SQLite's writer thread goes on), and its batch, put back in the buffer,
        would be appended a second time."""
        async with self._writing:
            for task in self._tasks:
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        try:
            await self.flush()
        except FhirError as exc:
            _log.error("audit records lost at shutdown", error=str(exc), lost=len(self._buffer))
        if self.relay is not None:
            await self.relay.release()

    def stats(self) -> dict[str, float]:
        """For metrics: records waiting, events appended, failed writes, relay cursor and lag."""
        relay = self.relay
        return {
            "buffered": len(self._buffer),
            "appended": self.appended,
            "failures": self.failures,
            "relay_cursor": relay.state.cursor if relay else 0,
            "relay_lag_seconds": relay.lag_seconds if relay else 0.0,
        }

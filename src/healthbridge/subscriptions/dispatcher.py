"""The dispatcher: committed changes (the outbox) matched to subscriptions, as queued events.

Backport IG: https://hl7.org/fhir/uv/subscriptions-backport/workflow.html (handshake, then
event notifications) and https://hl7.org/fhir/uv/subscriptions-backport/safety_security.html.
One per server process follows the outbox from the delivery queue's cursor ``subscriptions``:

* each change's current version (and the version before, for updates and deletes) is read back
  from the repository and matched against the live subscriptions (:mod:`.live`);
* an event is recorded only when the subscription's owner may read the focus: the read goes
  through :meth:`AccessPolicy.wrap` with the owner's access context (a patient app hears only
  about its own patient; the checks of any API read apply);
* the events of a batch and the cursor move in one queue transaction. Several processes may run
  it at once: the queue skips an event already recorded for the same (subscription, outbox
  row), so none is numbered twice.
* Commit order is not seq order on PostgreSQL: rows beyond a missing seq are matched at once, but
  the cursor stops before the gap until the seq appears or ``gap_timeout`` passes (a rolled-back
  transaction leaves a permanent gap), as the audit relay does (audit/relay.py).

New subscriptions (queue status ``requested``) get the handshake; a delivered handshake makes
them ``active``, a failed one ``error`` with the reason.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from healthbridge.fhir import jsonformat
from healthbridge.fhir.errors import FhirError
from healthbridge.fhir.types import Resource
from healthbridge.infra.logging import get_logger
from healthbridge.security.access import AccessPolicy
from healthbridge.store.repository import OutboxEvent, Repository
from healthbridge.store.subscriptions import Batch, DeliveryQueue, NewEvent
from healthbridge.subscriptions.live import Live, LiveSubscriptions
from healthbridge.subscriptions.matching import Change, Matcher
from healthbridge.subscriptions.owners import LIVE
from healthbridge.subscriptions.sender import Sender
from healthbridge.subscriptions.timekeeping import ended
from healthbridge.subscriptions.topics import Interaction

NAME = "subscriptions"
HANDSHAKE = "subscription-handshake"
WATCHED = frozenset({"Subscription", "Basic"})
"""Changes that reload the live subscriptions (Basic: a stored topic)."""
_log = get_logger("healthbridge.subscriptions.dispatcher")


class Dispatcher:
    def __init__(
        self,
        repository: Repository,
        live: LiveSubscriptions,
        matcher: Matcher,
        policy: AccessPolicy,
        sender: Sender,
        *,
        batch_size: int = 200,
        poll_seconds: float = 0.05,
        gap_timeout: float = 60.0,
        on_queued: Callable[[], None] = lambda: None,
        handshake_lease_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.repository = repository  # unrestricted; the owners' access is applied per event
        self.queue: DeliveryQueue = repository.subscriptions
        self.live = live
        self.matcher = matcher
        self.policy = policy
        self.sender = sender
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self.gap_timeout = gap_timeout
        self._clock = clock
        self._on_queued = on_queued
        self.handshake_lease_s = handshake_lease_s
        self._gaps: dict[int, float] = {}
        self._handled: set[int] = set()  # rows beyond a gap, matched already
        self._handshakes_at = -1e9
        self._waiting: dict[int, float] = {}  # Subscription rows waiting for their owner
        self.owner_wait = 10.0

    async def step(self) -> int:
        """Match what is new once; the number of outbox rows looked at."""
        cursor = await self.queue.dispatcher_cursor(NAME)
        rows = await self.repository.outbox_since(cursor, self.batch_size)
        changed = any(r.resource_type in WATCHED and r.seq not in self._handled for r in rows)
        subscriptions = await self.live.get(stale=changed)
        rows, subscriptions = await self._ready(rows, subscriptions)
        fresh = [r for r in rows if r.seq not in self._handled]
        if changed or self._clock() - self._handshakes_at >= self.live.max_age:
            self._handshakes_at = self._clock()
            await self.handshakes(subscriptions)
        events: list[NewEvent] = []
        for row in fresh:
            events += await self._match(row, subscriptions)
        after = self._advance(cursor, rows)
        if (events or after > cursor) and await self.queue.enqueue(Batch(NAME, after, events)):
            self._on_queued()
        self._handled = {seq for seq in self._handled | {r.seq for r in fresh} if seq > after}
        self._waiting = {seq: t for seq, t in self._waiting.items() if seq > after}
        return len(fresh)

    async def _ready(
        self, rows: list[OutboxEvent], subscriptions: dict[str, Live]
    ) -> tuple[list[OutboxEvent], dict[str, Live]]:
        """``rows`` up to a new live Subscription whose owner is not recorded yet (the API
        records it just after the commit): changes after it wait for it, up to
        ``owner_wait`` seconds, so that none is missed."""
        for index, row in enumerate(rows):
            if row.resource_type != "Subscription" or row.method == "delete":
                continue
            if row.id in subscriptions or row.seq in self._handled:
                continue
            resource = await self._version(row.resource_type, row.id, row.version_id)
            if resource is None or resource.get("status") not in LIVE:
                continue
            if await self.live.owners.get(row.id) is not None:
                subscriptions = await self.live.get(stale=True)
                continue
            now = self._clock()
            if now - self._waiting.setdefault(row.seq, now) <= self.owner_wait:
                return rows[:index], subscriptions
            _log.warning("subscription without an owner left out", id=row.id)
        return rows, subscriptions

    def _advance(self, cursor: int, rows: Sequence[OutboxEvent]) -> int:
        """The new cursor: past every row, but not past a missing seq younger than the gap
        timeout."""
        now = self._clock()
        for row in rows:
            while cursor + 1 < row.seq:
                missing = cursor + 1
                if now - self._gaps.setdefault(missing, now) <= self.gap_timeout:
                    return cursor
                _log.warning("subscription dispatcher gave up waiting for seq", seq=missing)
                del self._gaps[missing]
                cursor = missing
            self._gaps.pop(row.seq, None)
            cursor = row.seq
        return cursor

    async def _versions(self, row: OutboxEvent) -> tuple[Resource | None, Resource | None]:
        """The previous and current versions of the changed resource (None where none)."""
        current = None
        if row.method != "delete":
            current = await self._version(row.resource_type, row.id, row.version_id)
        previous = None
        if row.version_id > 1:
            previous = await self._version(row.resource_type, row.id, row.version_id - 1)
        return previous, current

    async def _version(self, resource_type: str, id: str, version: int) -> Resource | None:
        try:
            stored = await self.repository.vread(resource_type, id, version)
        except FhirError:
            return None
        return None if stored.deleted else jsonformat.loads(stored.content)

    async def _match(self, row: OutboxEvent, subscriptions: dict[str, Live]) -> list[NewEvent]:
        if row.resource_type == "Subscription" or not subscriptions:
            return []
        previous, current = await self._versions(row)
        if previous is None and current is None:
            return []
        # an update that created the resource (or brought a deleted one back) is a create
        interaction: Interaction = "create" if previous is None else row.method
        change = self.matcher.change(interaction, previous, current)
        focus_version = row.version_id if current is not None else row.version_id - 1
        found = []
        now = datetime.now(UTC)
        for live in subscriptions.values():
            if ended(live, now):
                continue  # past its Subscription.end (timekeeping.py turns it off)
            if await self._triggers(live, change, row) and await self._readable(
                live, row, focus_version
            ):
                extra = {"interaction": interaction}
                found.append(
                    NewEvent(live.id, row.seq, row.resource_type, row.id, focus_version, extra)
                )
        return found

    async def _triggers(self, live: Live, change: Change, row: OutboxEvent) -> bool:
        """Does ``change`` trigger ``live``? A matching failure (a FHIRPath error on odd
        content) is logged and counts as no: one resource must not stop the dispatcher."""
        try:
            return live.compiled.triggers(change)
        except Exception:
            _log.exception("subscription matching failed", subscription=live.id, seq=row.seq)
            return False

    async def _readable(self, live: Live, row: OutboxEvent, version: int) -> bool:
        """May the owner read the focus version? (Not: no event, and nothing said.)"""
        scoped = self.policy.wrap(self.repository, live.owner.access())
        try:
            await scoped.vread(row.resource_type, row.id, version)
        except FhirError:
            return False
        return True

    async def handshakes(self, subscriptions: dict[str, Live]) -> None:
        """Send the handshake of every live subscription the queue has as ``requested``; of
        several processes one sends it (a record claims it; it expires if that one dies)."""
        for live in subscriptions.values():
            state = await self.queue.status(live.id)
            if state is not None and state.status != "requested":
                continue
            expires = datetime.now(UTC) + timedelta(seconds=self.handshake_lease_s)
            key = f"{live.id}/{live.version}"
            if not await self.repository.records.add_record(HANDSHAKE, key, {}, expires):
                continue
            result = await self.sender.send(live, "handshake", status="requested")
            if result.ok:
                await self.queue.set_status(live.id, "active")
            else:
                await self.queue.set_status(live.id, "error", f"handshake: {result.error}")
            _log.info("subscription handshake", id=live.id, ok=result.ok, error=result.error)

    async def run(self) -> None:
        """Dispatch forever; database trouble is logged and retried."""
        while True:
            try:
                if await self.step() < self.batch_size:
                    await asyncio.sleep(self.poll_seconds)
            except FhirError as exc:
                _log.warning("subscription dispatcher failed; retrying", error=str(exc))
                await asyncio.sleep(1.0)
            except Exception:
                _log.exception("subscription dispatcher failed unexpectedly; retrying")
                await asyncio.sleep(5.0)

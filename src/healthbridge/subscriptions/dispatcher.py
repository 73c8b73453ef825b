"""The dispatcher: committed changes (the outbox) matched to subscriptions, as queued events.

Backport IG: https://hl7.org/fhir/uv/subscriptions-backport/workflow.html (handshake, then
event notifications) and https://hl7.org/fhir/uv/subscriptions-backport/safety_security.html.
One server process at a time (the holder of the ``subscription-dispatcher`` lease,
:mod:`.lease`; another takes over within the lease's length when it dies) follows the outbox
from the delivery queue's cursor ``subscriptions``:

* each change's current version (and the version before, for updates and deletes) is read back
  from the repository and matched against the live subscriptions (:mod:`.live`);
* an event is recorded only when the subscription's owner may read the focus: the version read
  for matching is checked with :meth:`AccessPolicy.may_read` under the owner's access context
  (the checks of any API vread: a patient app hears only about its own patient), and only while
  that authorization stands (:mod:`.standing`);
* the events of a batch and the cursor move in one queue transaction. Should two processes run
  it at once (a lease taken over while its old holder still runs, or no lease), the queue skips
  an event already recorded for the same (subscription, outbox row), so none is numbered twice,
  and a dispatcher whose cursor was moved past rows it never saw reloads the live
  subscriptions first if a Subscription changed among them.
* Commit order is not seq order on PostgreSQL: rows beyond a missing seq are matched at once, but
  the cursor stops before the gap until the seq appears or ``gap_timeout`` passes (a rolled-back
  transaction leaves a permanent gap), as the audit relay does (audit/relay.py).

New subscriptions (queue status ``requested``) get the handshake; a delivered handshake makes
them ``active``, a failed one ``error`` with the reason. Websocket subscriptions become
``active`` at once: their handshake is sent on the socket when a client binds
(:mod:`.websocket`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from healthbridge.fhir import jsonformat
from healthbridge.fhir.errors import FhirError
from healthbridge.fhir.types import Resource
from healthbridge.infra.logging import get_logger
from healthbridge.infra.tasks import forever
from healthbridge.security.access import AccessPolicy
from healthbridge.security.context import NeverRevoked, Revocations
from healthbridge.store.repository import OutboxEvent, Repository, StoredResource, VersionKey
from healthbridge.store.subscriptions import Batch, DeliveryQueue, NewEvent
from healthbridge.subscriptions.candidates import Candidates
from healthbridge.subscriptions.channels.websocket import is_websocket
from healthbridge.subscriptions.lease import Lease
from healthbridge.subscriptions.live import Live, LiveSubscriptions
from healthbridge.subscriptions.matching import Change, Matcher
from healthbridge.subscriptions.owners import LIVE
from healthbridge.subscriptions.sender import Sender
from healthbridge.subscriptions.standing import withdrawn
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
        lease: Lease | None = None,
        clock: Callable[[], float] = time.monotonic,
        revocations: Revocations | None = None,
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
        self._seen = -1  # the cursor as this process last left or checked it (-1: not yet)
        self.lease = lease
        self.revocations = revocations or NeverRevoked()
        self._candidates: tuple[dict[str, Live], Candidates] | None = None
        self._renewed = -1e9

    async def step(self) -> int:
        """Match what is new once; the number of outbox rows looked at."""
        cursor = await self.queue.dispatcher_cursor(NAME)
        rows = await self.repository.outbox_since(cursor, self.batch_size)
        changed = any(r.resource_type in WATCHED and r.seq not in self._handled for r in rows)
        changed = await self._changed_elsewhere(cursor) or changed
        subscriptions = await self.live.get(stale=changed)
        rows, subscriptions = await self._ready(rows, subscriptions)
        fresh = [r for r in rows if r.seq not in self._handled]
        if changed or self._clock() - self._handshakes_at >= self.live.max_age:
            self._handshakes_at = self._clock()
            await self.handshakes(subscriptions)
        # the rows' versions in one read; events keep the rows' order
        versions = await self._read_versions(fresh, subscriptions)
        matched = await asyncio.gather(
            *(self._match(row, subscriptions, versions) for row in fresh)
        )
        events = [event for found in matched for event in found]
        after = self._advance(cursor, rows)
        if (events or after > cursor) and await self.queue.enqueue(Batch(NAME, after, events)):
            self._on_queued()
        self._handled = {seq for seq in self._handled | {r.seq for r in fresh} if seq > after}
        self._waiting = {seq: t for seq, t in self._waiting.items() if seq > after}
        self._seen = max(self._seen, after)
        return len(fresh)

    async def _changed_elsewhere(self, cursor: int) -> bool:
        """Did another process move the cursor over a Subscription or topic change that this
        one never looked at? Then the live subscriptions must be reloaded before matching,
        or the changes after it would be matched against the old set (and lost for a new
        subscription) until the set's ``max_age`` passes."""
        seen = self._seen  # moved on at the end of a step that went through
        if seen < 0 or cursor - seen > 10 * self.batch_size:
            return True  # the first step, or far behind: reload rather than read it all
        if cursor <= seen:
            return False
        skipped = await self.repository.outbox_since(seen, cursor - seen)
        return any(r.resource_type in WATCHED for r in skipped if r.seq <= cursor)

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

    async def _read_versions(
        self, rows: list[OutboxEvent], subscriptions: dict[str, Live]
    ) -> dict[VersionKey, StoredResource]:
        """The previous and current versions of the changes some subscription looks at, in
        one read (PostgreSQL: one round trip, not one per change); deletes and unknown
        versions left out."""
        if not subscriptions:
            return {}
        types = self._filed(subscriptions).types
        keys: list[VersionKey] = []
        for row in rows:
            if row.resource_type == "Subscription" or row.resource_type not in types:
                continue
            if row.method != "delete":
                keys.append((row.resource_type, row.id, row.version_id))
            if row.version_id > 1:
                keys.append((row.resource_type, row.id, row.version_id - 1))
        if not keys:
            return {}
        found = await self.repository.versions(keys)
        return {key: v for key, v in zip(keys, found, strict=True) if v and not v.deleted}

    async def _stored(self, resource_type: str, id: str, version: int) -> StoredResource | None:
        try:
            stored = await self.repository.vread(resource_type, id, version)
        except FhirError:
            return None
        return None if stored.deleted else stored

    async def _version(self, resource_type: str, id: str, version: int) -> Resource | None:
        stored = await self._stored(resource_type, id, version)
        return None if stored is None else jsonformat.loads(stored.content)

    def _filed(self, subscriptions: dict[str, Live]) -> Candidates:
        """The live subscriptions filed by what can trigger them (once per loaded set)."""
        if self._candidates is None or self._candidates[0] is not subscriptions:
            self._candidates = (subscriptions, Candidates(subscriptions))
        return self._candidates[1]

    async def _match(
        self,
        row: OutboxEvent,
        subscriptions: dict[str, Live],
        versions: dict[VersionKey, StoredResource],
    ) -> list[NewEvent]:
        if row.resource_type == "Subscription" or not subscriptions:
            return []
        filed = self._filed(subscriptions)
        if row.resource_type not in filed.types:
            return []  # no subscription looks at this type: not even read
        after = None
        if row.method != "delete":
            after = versions.get((row.resource_type, row.id, row.version_id))
        before = versions.get((row.resource_type, row.id, row.version_id - 1))
        focus = after or before
        if focus is None:
            return []
        previous = jsonformat.loads(before.content) if before is not None else None
        current = jsonformat.loads(after.content) if after is not None else None
        # an update that created the resource (or brought a deleted one back) is a create
        interaction: Interaction = "create" if previous is None else row.method
        change = self.matcher.change(interaction, previous, current)
        found = []
        now = datetime.now(UTC)
        for live in filed.of(change):  # (not those a filter's reference rules out)
            if ended(live, now):
                continue  # past its Subscription.end (timekeeping.py turns it off)
            if (
                await self._triggers(live, change, row)
                and not await withdrawn(self.revocations, self.queue, live)
                and await self.policy.may_read(live.owner.access(), focus)
            ):  # the owner may read the focus version (else: no event, and nothing said)
                extra = {"interaction": interaction}
                found.append(
                    NewEvent(live.id, row.seq, row.resource_type, row.id, focus.version_id, extra)
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

    async def handshakes(self, subscriptions: dict[str, Live]) -> None:
        """Send the handshake of every live subscription the queue has as ``requested``; of
        several processes one sends it (a record claims it; it expires if that one dies)."""
        for live in subscriptions.values():
            state = await self.queue.status(live.id)
            if state is not None and state.status != "requested":
                continue
            if await withdrawn(self.revocations, self.queue, live):
                continue
            if is_websocket(live.subscription):  # its handshake goes over the socket on bind
                await self.queue.set_status(live.id, "active")
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

    async def _leading(self) -> bool:
        """Hold (or take, or renew) the dispatcher lease; True while this process holds it.
        Renewed every third of its length, not every step."""
        if self.lease is None:
            return True
        now = self._clock()
        if now - self._renewed < self.lease.seconds / 3:
            return True
        if await self.lease.hold():
            self._renewed = now
            return True
        self._renewed = -1e9
        self._seen = -1  # whoever leads moves the cursor: reload before matching again
        return False

    async def resign(self) -> None:
        """At shutdown: give the lease up, so that another process leads at once."""
        if self.lease is not None:
            with contextlib.suppress(Exception):
                await self.lease.release()

    async def run(self) -> None:
        """Dispatch forever (while holding the lease); database trouble is logged and
        retried."""

        async def once() -> float:
            if not await self._leading():
                return 1.0
            return self.poll_seconds if await self.step() < self.batch_size else 0.0

        await forever(once, what="subscription dispatcher", log=_log, transient=(FhirError,))

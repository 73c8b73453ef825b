"""What happens to subscriptions as time passes: heartbeats, ``end``, and retention.

* Heartbeats, Backport IG
  https://hl7.org/fhir/uv/subscriptions-backport/notifications.html#heartbeat
  (``backport-heartbeat-period`` on ``Subscription.channel``): an ``active`` subscription with a
  heartbeat period gets a ``heartbeat`` notification (its ``eventsSinceSubscriptionStart``, so a
  receiver can tell it missed an event) in every period (counted from the epoch) unless this
  process sent it something else less than a period before. Of several server processes one
  sends it: the first to add the record ``subscription-heartbeat``/``<id>/<period number>`` (it
  expires two periods on). A heartbeat that fails is logged only: it carries no event, the next
  one will come. Websocket subscriptions get theirs on the socket (:mod:`.websocket`).
* ``Subscription.end`` (https://hl7.org/fhir/R4/subscription-definitions.html#Subscription.end):
  once it has passed, the subscription is turned ``off`` in the delivery queue (reported by
  ``$status``; the dispatcher matches nothing more for it, :meth:`ended`); events recorded
  before stay kept for ``$events``.
* Retention: delivered events older than ``retention`` are purged (``$events`` and replays
  reach back that far); dead letters stay until replayed; expired records go too.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final

from healthbridge.fhir.datetimes import parse_instant
from healthbridge.fhir.errors import FhirError
from healthbridge.infra.logging import get_logger
from healthbridge.infra.tasks import forever
from healthbridge.store.repository import Repository
from healthbridge.subscriptions.live import Live, LiveSubscriptions
from healthbridge.subscriptions.sender import Sender

HEARTBEAT: Final = "subscription-heartbeat"
PUSHED: Final = frozenset({"rest-hook", "email", "message"})
"""Channels this module sends heartbeats on (websockets have their own)."""
_log = get_logger("healthbridge.subscriptions.timekeeping")


def ended(live: Live, now: datetime) -> bool:
    """Has the subscription's ``end`` passed? (Asked per subscription per change.)"""
    end = live.subscription.end
    return end is not None and _instant(end) <= now


@functools.lru_cache(maxsize=1024)
def _instant(value: str) -> datetime:
    return parse_instant(value)


class Timekeeper:
    def __init__(
        self,
        repository: Repository,
        live: LiveSubscriptions,
        sender: Sender,
        *,
        retention: timedelta,
        tick_seconds: float = 1.0,
        purge_every: float = 3600.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.repository = repository
        self.queue = repository.subscriptions
        self.live = live
        self.sender = sender
        self.retention = retention
        self.tick_seconds = tick_seconds
        self.purge_every = purge_every
        self._clock = clock
        self._monotonic = monotonic
        self._period: dict[str, int] = {}  # subscription id -> the last period number handled
        self._purged_at = -1e18

    async def step(self) -> int:
        """One look at every live subscription; how many heartbeats were sent."""
        now = self._clock()
        sent = 0
        for live in (await self.live.get()).values():
            if ended(live, now):
                await self._end(live)
            elif await self._heartbeat(live, now):
                sent += 1
        if self._monotonic() - self._purged_at >= self.purge_every:
            self._purged_at = self._monotonic()
            await self.purge(now)
        return sent

    async def _end(self, live: Live) -> None:
        state = await self.queue.status(live.id)
        if state is not None and state.status != "off":
            await self.queue.set_status(live.id, "off", f"ended at {live.subscription.end}")
            _log.info("subscription ended", id=live.id, end=live.subscription.end)

    async def _heartbeat(self, live: Live, now: datetime) -> bool:
        period = live.subscription.heartbeat_period
        if not period or live.subscription.channel_type not in PUSHED:
            return False
        stamp = now.timestamp()
        number = int(stamp // period)
        if self._period.get(live.id) == number:
            return False  # handled this period
        last = self.sender.last_sent.get(live.id)
        if last is not None and stamp - last < period:
            return False  # a notification went out less than a period ago
        state = await self.queue.status(live.id)
        if state is None or state.status != "active":
            return False
        self._period[live.id] = number
        expires = datetime.fromtimestamp((number + 2) * period, UTC)
        if not await self.repository.records.add_record(
            HEARTBEAT, f"{live.id}/{number}", {}, expires
        ):
            return False  # another process sends this period's
        result = await self.sender.send(
            live, "heartbeat", status="active", events_since_start=state.events_since_start
        )
        if not result.ok:
            _log.info("subscription heartbeat not delivered", id=live.id, error=result.error)
        return True

    async def purge(self, now: datetime) -> None:
        delivered = await self.queue.purge_delivered(now - self.retention)
        expired = await self.repository.records.purge_expired_records()
        if delivered or expired:
            _log.info("subscription upkeep", delivered_purged=delivered, records_purged=expired)

    async def run(self) -> None:
        """Keep time forever; database trouble is logged and retried."""

        async def once() -> float:
            await self.step()
            return self.tick_seconds

        await forever(
            once,
            what="subscription timekeeping",
            log=_log,
            transient=(FhirError,),
            transient_pause=5.0,
        )

"""Sending one notification Bundle of one subscription through its channel.

Backport IG notifications (https://hl7.org/fhir/uv/subscriptions-backport/notifications.html):
a ``history`` Bundle of type handshake, heartbeat or event-notification
(:func:`~.notifications.notification_bundle`), posted as ``application/fhir+json`` (or the
subscription's payload type) and signed with the subscription's secret
(:mod:`.channels.signature`). Classic R4 subscriptions get the resource itself, or nothing
(https://hl7.org/fhir/R4/subscription.html#2.46.7.1).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from healthbridge.fhir.errors import FhirError
from healthbridge.subscriptions.channels.base import DeliveryResult
from healthbridge.subscriptions.channels.registry import Channels
from healthbridge.subscriptions.live import Live
from healthbridge.subscriptions.notifications import (
    Event,
    NotificationType,
    StatusInfo,
    classic_body,
    encode,
    notification_bundle,
)

FHIR_JSON = "application/fhir+json"


def instant(moment: datetime | None = None) -> str:
    """An R4 ``instant`` (UTC, milliseconds)."""
    value = (moment or datetime.now(UTC)).astimezone(UTC)
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Sender:
    def __init__(self, channels: Channels, base_url: str) -> None:
        self.channels = channels
        self.base = base_url.rstrip("/")
        self.last_sent: dict[str, float] = {}
        """Subscription id -> when (epoch seconds) this process last delivered something to it."""

    def body(
        self,
        live: Live,
        kind: NotificationType,
        events: Sequence[Event],
        *,
        status: str,
        events_since_start: int | None,
    ) -> bytes | None:
        subscription = live.subscription
        if not subscription.topic_based:
            return None if not events else classic_body(subscription, events[0])
        bundle = notification_bundle(
            subscription,
            StatusInfo(kind, status, events_since_start),
            events,
            base=self.base,
            bundle_id=str(uuid.uuid4()),
            status_id=str(uuid.uuid4()),
            timestamp=instant(),
        )
        return encode(bundle)

    async def send(
        self,
        live: Live,
        kind: NotificationType,
        events: Sequence[Event] = (),
        *,
        status: str,
        events_since_start: int | None = None,
    ) -> DeliveryResult:
        """Build and send one notification; a channel that cannot be built is permanent."""
        subscription = live.subscription
        body = self.body(live, kind, events, status=status, events_since_start=events_since_start)
        try:
            channel = self.channels.build(
                subscription.channel_type,
                subscription.endpoint or "",
                content=subscription.content,
                secret=live.owner.secret,
            )
        except FhirError as exc:
            return DeliveryResult.give_up(str(exc))
        result = await channel.send(
            body or b"",
            subscription.payload or FHIR_JSON,
            subscription_id=live.id,
            event_numbers=[e.number for e in events],
            headers=subscription.headers,
        )
        if result.ok:
            self.last_sent[live.id] = time.time()
        return result

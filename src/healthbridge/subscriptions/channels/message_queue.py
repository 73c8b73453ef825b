"""The message channel on a broker the operator runs: NATS (https://docs.nats.io/nats-concepts/subjects,
headers https://docs.nats.io/using-nats/developer/sending/structure) or a Redis stream
(XADD, https://redis.io/docs/latest/commands/xadd/). R4 names the ``message`` channel type
(https://hl7.org/fhir/R4/subscription.html#2.46.7.4); the endpoint picks the broker, ``nats:`` or
``redis:``, and nothing else.

The subject and stream key belong to the server, one per subscription
(``healthbridge.subscriptions.<id>``, ``healthbridge:subscriptions:<id>``; the dots of an id
become ``_``, which FHIR ids never contain, so two subscriptions never share one). A subscriber
cannot publish to any other subject or key of the broker, and the broker's address comes from
the operator's settings, never from the subscription. NATS needs the optional ``nats`` extra
(``pip install healthbridge[nats]``); :func:`nats_available` tells, so a subscription asking
for it is refused when it is created rather than failing at every delivery.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Sequence
from typing import Any

import redis.asyncio as redis_asyncio
from redis.exceptions import RedisError
from redis.typing import EncodableT, FieldT

from healthbridge.subscriptions.channels.base import DeliveryResult

SUBJECT_PREFIX = "healthbridge.subscriptions."
STREAM_PREFIX = "healthbridge:subscriptions:"
STREAM_MAXLEN = 10_000  # entries kept per stream (trimmed approximately)


def nats_available() -> bool:
    return importlib.util.find_spec("nats") is not None


def subject(subscription_id: str) -> str:
    return SUBJECT_PREFIX + subscription_id.replace(".", "_")


def stream_key(subscription_id: str) -> str:
    return STREAM_PREFIX + subscription_id


def _event_headers(
    content_type: str, subscription_id: str, event_numbers: Sequence[int]
) -> dict[str, str]:
    return {
        "Content-Type": content_type,
        "HealthBridge-Subscription": subscription_id,
        "HealthBridge-Event-Numbers": ",".join(map(str, event_numbers)),
    }


class NatsPublisher:
    """One NATS connection shared by every subscription's channel, opened on first use."""

    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        self.url, self.timeout_s = url, timeout_s
        self._client: Any = None
        self._lock = asyncio.Lock()

    async def _connection(self) -> Any:
        async with self._lock:
            if self._client is None or self._client.is_closed:
                import nats

                # no background reconnects: a lost connection closes the client and the
                # next notification opens a new one (the delivery queue retries meanwhile)
                self._client = await nats.connect(
                    self.url, connect_timeout=self.timeout_s, allow_reconnect=False
                )
            return self._client

    async def publish(self, topic: str, payload: bytes, headers: dict[str, str]) -> None:
        async with asyncio.timeout(self.timeout_s * 2):
            client = await self._connection()
            await client.publish(topic, payload, headers=headers)
            await client.flush(timeout=self.timeout_s)  # the server has it

    async def aclose(self) -> None:
        if self._client is not None and not self._client.is_closed:
            await self._client.drain()


class NatsChannel:
    def __init__(self, publisher: NatsPublisher) -> None:
        self._publisher = publisher

    async def send(
        self,
        notification: bytes,
        content_type: str,
        *,
        subscription_id: str,
        event_numbers: Sequence[int],
        headers: Sequence[tuple[str, str]] = (),
    ) -> DeliveryResult:
        sent = _event_headers(content_type, subscription_id, event_numbers)
        try:
            await self._publisher.publish(subject(subscription_id), notification, sent)
        except Exception as exc:  # nats-py raises its own tree, OSError and timeouts
            return DeliveryResult.retry(f"the NATS server did not take it ({type(exc).__name__})")
        return DeliveryResult.delivered()


class RedisStreamChannel:
    """XADD of one entry per notification: fields ``payload``, ``content_type``,
    ``subscription`` and ``events`` (comma-separated event numbers)."""

    def __init__(self, client: redis_asyncio.Redis) -> None:
        self._client = client

    async def send(
        self,
        notification: bytes,
        content_type: str,
        *,
        subscription_id: str,
        event_numbers: Sequence[int],
        headers: Sequence[tuple[str, str]] = (),
    ) -> DeliveryResult:
        fields: dict[FieldT, EncodableT] = {
            "payload": notification,
            "content_type": content_type,
            "subscription": subscription_id,
            "events": ",".join(map(str, event_numbers)),
        }
        try:
            await self._client.xadd(
                stream_key(subscription_id), fields, maxlen=STREAM_MAXLEN, approximate=True
            )
        except (RedisError, OSError) as exc:
            return DeliveryResult.retry(f"the Redis server did not take it ({type(exc).__name__})")
        return DeliveryResult.delivered()

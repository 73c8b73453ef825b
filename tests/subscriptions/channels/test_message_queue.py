"""The message channel on the brokers running on this machine: NATS at 127.0.0.1:4222 (core
publish, one subject per subscription, event numbers in headers) and a Redis stream per
subscription (XADD). Each test skips, saying why, when its broker is not running.
https://hl7.org/fhir/R4/subscription.html#2.46.7.4, https://redis.io/docs/latest/commands/xadd/
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid

import pytest
import redis.asyncio as redis_asyncio

from healthbridge.subscriptions.channels.message_queue import (
    NatsChannel,
    NatsPublisher,
    RedisStreamChannel,
    stream_key,
    subject,
)

NATS_URL = os.environ.get("HEALTHBRIDGE_TEST_NATS_URL", "nats://127.0.0.1:4222")
REDIS_URL = os.environ.get("HEALTHBRIDGE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
BUNDLE = b'{"resourceType":"Bundle","type":"history"}'


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


needs_nats = pytest.mark.skipif(not _listening(4222), reason="no NATS server on 127.0.0.1:4222")
needs_redis = pytest.mark.skipif(not _listening(6379), reason="no Redis on 127.0.0.1:6379")


def test_subjects_and_keys_are_the_servers_own() -> None:
    assert subject("a.b-1") == "healthbridge.subscriptions.a_b-1"
    assert subject("a.b-1") != subject("a-b-1")
    assert stream_key("x1") == "healthbridge:subscriptions:x1"


@needs_nats
async def test_nats_publish_and_consume() -> None:
    nats = pytest.importorskip("nats", reason="the nats extra is not installed")
    subscription_id = f"s{uuid.uuid4().hex[:12]}"
    consumer = await nats.connect(NATS_URL)
    publisher = NatsPublisher(NATS_URL, timeout_s=5)
    try:
        inbox = await consumer.subscribe(subject(subscription_id))
        await consumer.flush()
        channel = NatsChannel(publisher)
        result = await channel.send(
            BUNDLE, "application/fhir+json", subscription_id=subscription_id, event_numbers=[4, 5]
        )
        assert result.ok
        message = await inbox.next_msg(timeout=5)
    finally:
        await publisher.aclose()
        await consumer.close()
    assert message.data == BUNDLE
    assert message.headers is not None
    assert message.headers["HealthBridge-Event-Numbers"] == "4,5"
    assert message.headers["HealthBridge-Subscription"] == subscription_id
    assert message.headers["Content-Type"] == "application/fhir+json"


async def test_nats_unreachable_is_retried() -> None:
    pytest.importorskip("nats", reason="the nats extra is not installed")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    publisher = NatsPublisher(f"nats://127.0.0.1:{port}", timeout_s=0.5)
    result = await asyncio.wait_for(
        NatsChannel(publisher).send(
            b"{}", "application/fhir+json", subscription_id="x", event_numbers=[1]
        ),
        timeout=10,
    )
    await publisher.aclose()
    assert not result.ok and not result.permanent


@needs_redis
async def test_redis_stream_publish_and_consume() -> None:
    client = redis_asyncio.Redis.from_url(REDIS_URL)
    subscription_id = f"s{uuid.uuid4().hex[:12]}"
    try:
        channel = RedisStreamChannel(client)
        for events in ([1], [2, 3]):
            result = await channel.send(
                BUNDLE,
                "application/fhir+json",
                subscription_id=subscription_id,
                event_numbers=events,
            )
            assert result.ok
        entries = await client.xrange(stream_key(subscription_id))
    finally:
        await client.delete(stream_key(subscription_id))
        await client.aclose()
    assert [fields[b"events"] for _, fields in entries] == [b"1", b"2,3"]
    assert all(fields[b"payload"] == BUNDLE for _, fields in entries)
    assert entries[0][1][b"subscription"] == subscription_id.encode()


async def test_redis_unreachable_is_retried() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = redis_asyncio.Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_connect_timeout=1)
    try:
        result = await RedisStreamChannel(client).send(
            b"{}", "application/fhir+json", subscription_id="x", event_numbers=[1]
        )
    finally:
        await client.aclose()
    assert not result.ok and not result.permanent

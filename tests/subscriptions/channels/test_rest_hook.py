"""The rest-hook channel against a real receiver on loopback: the POST carries the Bundle, the
subscription's headers and a signature the receiver verifies; answers are classified as
delivered, retry (with Retry-After) or give up. Backport IG channels:
https://hl7.org/fhir/uv/subscriptions-backport/channels.html#rest-hook
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import pytest

from healthbridge.infra.ssrf import AsyncOutboundClient, OutboundPolicy
from healthbridge.subscriptions.channels.base import DeliveryResult
from healthbridge.subscriptions.channels.rest_hook import RestHookChannel
from healthbridge.subscriptions.channels.signature import HEADER, sign, verify_signature
from tests.support.http_receiver import Answer, Receiver

BUNDLE = b'{"resourceType":"Bundle","type":"history","entry":[]}'
SECRET = "s3cret-for-this-subscription"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver(Answer(200, body=b"thanks"))
    yield running
    running.close()


@pytest.fixture
async def client(receiver: Receiver) -> AsyncIterator[AsyncOutboundClient]:
    outbound = AsyncOutboundClient(OutboundPolicy(frozenset({receiver.host}), timeout_s=1.0))
    yield outbound
    await outbound.aclose()


async def _send(
    channel: RestHookChannel, headers: tuple[tuple[str, str], ...] = ()
) -> DeliveryResult:
    return await channel.send(
        BUNDLE,
        "application/fhir+json",
        subscription_id="sub-1",
        event_numbers=[7, 8],
        headers=headers,
    )


async def test_delivery_body_headers_and_signature(
    receiver: Receiver, client: AsyncOutboundClient
) -> None:
    channel = RestHookChannel(client, receiver.url(), SECRET)
    result = await _send(channel, (("Authorization", "Bearer abc"), ("X-Tenant", "t1")))
    assert result.ok and result.status_code == 200
    [got] = receiver.received
    assert (got.method, got.path, got.body) == ("POST", "/hook", BUNDLE)
    assert got.headers["content-type"] == "application/fhir+json"
    assert got.headers["authorization"] == "Bearer abc"
    assert got.headers["x-tenant"] == "t1"
    assert got.headers["x-healthbridge-subscription"] == "sub-1"
    assert got.headers["x-healthbridge-event-numbers"] == "7,8"
    signature = got.headers[HEADER.lower()]
    assert verify_signature(SECRET, signature, got.body)
    assert not verify_signature("another secret", signature, got.body)
    assert not verify_signature(SECRET, signature, got.body + b" ")


def test_signature_tolerance_and_rotation() -> None:
    now = time.time()
    old = sign(SECRET, BUNDLE, int(now) - 600)
    assert not verify_signature(SECRET, old, BUNDLE, now=now)  # replayed 10 minutes later
    assert verify_signature(SECRET, old, BUNDLE, 900, now=now)
    both = sign(SECRET, BUNDLE, int(now)) + ",v1=" + "0" * 64
    assert verify_signature(SECRET, both, BUNDLE, now=now)
    for broken in ("", "t=abc,v1=00", "v1=00", f"t={int(now)}"):
        assert not verify_signature(SECRET, broken, BUNDLE, now=now)


@pytest.mark.parametrize(
    "header",
    [
        ("Host", "evil.example"),
        ("Content-Length", "0"),
        ("Transfer-Encoding", "chunked"),
        ("Connection", "close"),
        ("X-HealthBridge-Signature", "t=1,v1=00"),
        ("X-Ok", "a\r\nInjected: 1"),
    ],
)
async def test_refused_headers_are_never_sent(
    receiver: Receiver, client: AsyncOutboundClient, header: tuple[str, str]
) -> None:
    result = await _send(RestHookChannel(client, receiver.url(), SECRET), (header,))
    assert not result.ok and result.permanent
    assert receiver.connections == 0


@pytest.mark.parametrize(
    ("answer", "permanent", "retry_after"),
    [
        (Answer(410, body=b"secret gone page"), True, None),
        (Answer(404), True, None),
        (Answer(301, {"Location": "https://example.com/"}), True, None),
        (Answer(429, {"Retry-After": "120"}), False, 120.0),
        (Answer(503, {"Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT"}), False, 86400.0),
        (Answer(500, body=b"secret stack trace"), False, None),
        (Answer(408), False, None),
    ],
)
async def test_answers_are_classified(
    answer: Answer, permanent: bool, retry_after: float | None
) -> None:
    running = Receiver(answer)
    client = AsyncOutboundClient(OutboundPolicy(frozenset({running.host})))
    try:
        result = await _send(RestHookChannel(client, running.url(), SECRET))
    finally:
        await client.aclose()
        running.close()
    assert not result.ok
    assert result.status_code == answer.status
    assert (result.permanent, result.retry_after) == (permanent, retry_after)
    assert "secret" not in (result.error or "")


async def test_a_timeout_is_retried() -> None:
    running = Receiver(Answer(200, delay_s=2))
    client = AsyncOutboundClient(OutboundPolicy(frozenset({running.host}), timeout_s=0.3))
    started = time.monotonic()
    try:
        result = await _send(RestHookChannel(client, running.url(), SECRET))
    finally:
        await client.aclose()
        running.close()
    assert not result.ok and not result.permanent
    assert "timed out" in (result.error or "")
    assert time.monotonic() - started < 1.5


async def test_a_refused_endpoint_is_permanent_and_makes_no_connection(
    receiver: Receiver,
) -> None:
    client = AsyncOutboundClient(OutboundPolicy())  # loopback not allow-listed
    try:
        for url in (receiver.url(), f"https://2130706433:{receiver.port}/hook"):
            result = await _send(RestHookChannel(client, url, SECRET))
            assert not result.ok and result.permanent
    finally:
        await client.aclose()
    assert receiver.connections == 0


async def test_a_closed_port_is_retried() -> None:
    client = AsyncOutboundClient(OutboundPolicy(frozenset({"127.0.0.1"})))
    try:
        result = await _send(RestHookChannel(client, "http://127.0.0.1:9/hook", SECRET))
    finally:
        await client.aclose()
    assert not result.ok and not result.permanent

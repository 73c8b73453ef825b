"""Channels built from the settings, and the checks made when a Subscription is created: an
endpoint the outbound guard refuses, a header that may not be sent, an email channel without
an SMTP server, a message channel on a broker the server does not have are refused up front
(SECURITY.md, "Server-side request forgery"; https://hl7.org/fhir/uv/subscriptions-backport/channels.html).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from healthbridge.fhir.errors import InvalidRequest
from healthbridge.settings import Settings
from healthbridge.subscriptions.channels import Channels, channels_config, verify_signature
from healthbridge.subscriptions.channels.email import EmailChannel
from healthbridge.subscriptions.channels.message_queue import NatsChannel, RedisStreamChannel
from healthbridge.subscriptions.channels.rest_hook import RestHookChannel
from tests.support.http_receiver import Answer, Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver(Answer(202))
    yield running
    running.close()


def _settings(**values: object) -> Settings:
    return Settings(**values)  # type: ignore[arg-type]


async def test_a_rest_hook_built_from_the_settings_delivers(receiver: Receiver) -> None:
    channels = Channels(channels_config(_settings(outbound_allowed_hosts=receiver.host)))
    try:
        channels.check("rest-hook", receiver.url(), [("Authorization", "Bearer x")])
        channel = channels.build("rest-hook", receiver.url(), content="id-only", secret="k")
        assert isinstance(channel, RestHookChannel)
        result = await channel.send(
            b"{}", "application/fhir+json", subscription_id="s", event_numbers=[1]
        )
    finally:
        await channels.aclose()
    assert result.ok and result.status_code == 202
    [got] = receiver.received
    assert verify_signature("k", got.headers["x-healthbridge-signature"], got.body)


@pytest.mark.parametrize(
    ("channel_type", "endpoint", "headers"),
    [
        ("rest-hook", "http://127.0.0.1/hook", []),
        ("rest-hook", "https://169.254.169.254/latest", []),
        ("rest-hook", "https://0x7f000001/", []),
        ("rest-hook", "https://localhost/hook", []),
        ("rest-hook", "ftp://example.org/x", []),
        ("rest-hook", None, []),
        ("rest-hook", "https://93.184.215.14/hook", [("Host", "internal")]),
        ("email", "mailto:a@example.org", []),  # no SMTP server configured
        ("message", "nats:", []),  # no NATS server configured
        ("message", "redis:", []),
        ("message", "nats://10.0.0.1:4222/anything", []),
    ],
)
def test_undeliverable_channels_are_refused_when_created(
    channel_type: str, endpoint: str | None, headers: list[tuple[str, str]]
) -> None:
    channels = Channels(channels_config(_settings()))
    with pytest.raises(InvalidRequest) as raised:
        channels.check(channel_type, endpoint, headers)
    assert raised.value.issues[0].expression == ("Subscription.channel.endpoint",)


async def test_configured_email_and_brokers() -> None:
    settings = _settings(
        smtp_host="127.0.0.1",
        subscription_nats_url="nats://127.0.0.1:4222",
        subscription_redis_url="redis://127.0.0.1:6379/15",
    )
    channels = Channels(channels_config(settings))
    try:
        for channel_type, endpoint, kind in [
            ("email", "mailto:a@example.org", EmailChannel),
            ("message", "nats:", NatsChannel),
            ("message", "redis:", RedisStreamChannel),
        ]:
            channels.check(channel_type, endpoint)
            built = channels.build(channel_type, endpoint, content="empty", secret="k")
            assert isinstance(built, kind)
        with pytest.raises(InvalidRequest):
            channels.check("email", "mailto:a@example.org,b@example.org")
        channels.check("websocket", None)  # not built here: left to the websocket endpoint
    finally:
        await channels.aclose()


def test_the_smtp_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEALTHBRIDGE_SMTP_HOST", "mail.internal")
    monkeypatch.setenv("HEALTHBRIDGE_SMTP_SECURITY", "ssl")
    monkeypatch.setenv("HEALTHBRIDGE_SMTP_PORT", "465")
    monkeypatch.setenv("HEALTHBRIDGE_SUBSCRIPTION_TIMEOUT_SECONDS", "3")
    smtp = channels_config(Settings()).smtp
    assert smtp is not None
    assert (smtp.host, smtp.port, smtp.security, smtp.timeout_s) == ("mail.internal", 465, "ssl", 3)
    monkeypatch.setenv("HEALTHBRIDGE_SMTP_SECURITY", "plain")
    with pytest.raises(ValueError, match="smtp_security"):
        Settings()

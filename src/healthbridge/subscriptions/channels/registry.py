"""Which channel carries a subscription's notifications, built from the operator's settings
(https://hl7.org/fhir/uv/subscriptions-backport/channels.html). :meth:`Channels.check` runs
when a Subscription is created or updated and refuses, with an OperationOutcome, what could
never be delivered: a rest-hook endpoint the outbound guard refuses, an email channel with no
SMTP server configured or a ``mailto:`` with more than one address, a NATS channel without
the ``nats`` extra. :meth:`Channels.build` gives the delivery worker the :class:`Channel` of
one subscription. The ``websocket`` channel is served by the server's websocket endpoint and
is not built here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as redis_asyncio

from healthbridge.fhir.errors import InvalidRequest
from healthbridge.infra.ssrf import (
    AsyncOutboundClient,
    OutboundPolicy,
    OutboundRefused,
    Resolver,
    check_url,
    parse_allowed_hosts,
    system_resolver,
)
from healthbridge.settings import Settings
from healthbridge.subscriptions.channels.base import Channel
from healthbridge.subscriptions.channels.email import BadMailto, EmailChannel, SmtpConfig
from healthbridge.subscriptions.channels.message_queue import (
    NatsChannel,
    NatsPublisher,
    RedisStreamChannel,
    nats_available,
)
from healthbridge.subscriptions.channels.rest_hook import (
    HeaderRefused,
    RestHookChannel,
    check_header,
)

BUILT_HERE = frozenset({"rest-hook", "email", "message"})
_ENDPOINT = "Subscription.channel.endpoint"


@dataclass(frozen=True, slots=True)
class ChannelsConfig:
    outbound: OutboundPolicy
    smtp: SmtpConfig | None = None
    nats_url: str | None = None
    redis_url: str | None = None


def channels_config(settings: Settings) -> ChannelsConfig:
    timeout = settings.subscription_timeout_seconds
    smtp = None
    if settings.smtp_host:
        smtp = SmtpConfig(
            host=settings.smtp_host,
            port=settings.smtp_port,
            security=settings.smtp_security,
            user=settings.smtp_user,
            password=settings.smtp_password,
            sender=settings.smtp_from,
            attach_full_resource=settings.smtp_attach_full_resource,
            timeout_s=timeout,
        )
    return ChannelsConfig(
        outbound=OutboundPolicy(
            parse_allowed_hosts(settings.outbound_allowed_hosts), timeout, 64 * 1024
        ),
        smtp=smtp,
        nats_url=settings.subscription_nats_url,
        redis_url=settings.subscription_redis_url,
    )


def _invalid(message: str, code: str = "invalid") -> InvalidRequest:
    return InvalidRequest(f"{_ENDPOINT}: {message}", code=code, expression=_ENDPOINT)


class Channels:
    """The channels of one server process; :meth:`aclose` at shutdown."""

    def __init__(self, config: ChannelsConfig, *, resolver: Resolver = system_resolver) -> None:
        self.config = config
        self._resolver = resolver
        self._http = AsyncOutboundClient(config.outbound, resolver=resolver)
        timeout = config.outbound.timeout_s
        self._nats = NatsPublisher(config.nats_url, timeout) if config.nats_url else None
        self._redis = redis_asyncio.Redis.from_url(config.redis_url) if config.redis_url else None

    def check(
        self, channel_type: str, endpoint: str | None, headers: Sequence[tuple[str, str]] = ()
    ) -> None:
        """Refuse a channel that could not be delivered (raises :class:`InvalidRequest`).
        Blocking (it resolves the endpoint's host): call it from a worker thread."""
        if channel_type not in BUILT_HERE:
            return  # websocket and custom types are someone else's
        if not endpoint:
            raise _invalid(f"a {channel_type} channel needs an endpoint", "required")
        if channel_type == "rest-hook":
            try:
                check_url(endpoint, self.config.outbound, self._resolver)
                for name, value in headers:
                    check_header(name, value)
            except (OutboundRefused, HeaderRefused) as exc:
                raise _invalid(str(exc), "security") from None
        elif channel_type == "email":
            if self.config.smtp is None:
                raise _invalid("this server has no SMTP server configured", "not-supported")
            try:
                EmailChannel(self.config.smtp, endpoint, "empty")
            except BadMailto as exc:
                raise _invalid(str(exc)) from None
        else:
            self._check_message(endpoint)

    def _check_message(self, endpoint: str) -> None:
        if endpoint not in ("nats:", "redis:"):
            raise _invalid("a message channel's endpoint is nats: or redis:")
        if endpoint == "nats:" and not nats_available():
            raise _invalid(
                "the NATS channel needs the nats extra (pip install 'healthbridge[nats]')",
                "not-supported",
            )
        if (self._nats if endpoint == "nats:" else self._redis) is None:
            raise _invalid(f"this server has no {endpoint[:-1]} server configured", "not-supported")

    def build(
        self, channel_type: str, endpoint: str, *, content: str, secret: str | bytes
    ) -> Channel:
        """The channel of one subscription (after :meth:`check` accepted it)."""
        if channel_type == "rest-hook":
            return RestHookChannel(self._http, endpoint, secret)
        if channel_type == "email" and self.config.smtp is not None:
            return EmailChannel(self.config.smtp, endpoint, content)
        if channel_type == "message" and endpoint == "nats:" and self._nats is not None:
            return NatsChannel(self._nats)
        if channel_type == "message" and endpoint == "redis:" and self._redis is not None:
            return RedisStreamChannel(self._redis)
        raise _invalid(
            f"no {channel_type} channel for {endpoint!r} on this server", "not-supported"
        )

    async def aclose(self) -> None:
        await self._http.aclose()
        if self._nats is not None:
            await self._nats.aclose()
        if self._redis is not None:
            await self._redis.aclose()

"""The rest-hook channel: an HTTPS POST of the notification Bundle to the subscriber's endpoint
(https://hl7.org/fhir/uv/subscriptions-backport/channels.html#rest-hook, R4
https://hl7.org/fhir/R4/subscription.html#2.46.7.1), made through the outbound guard of
:mod:`healthbridge.infra.ssrf` (public addresses only unless allow-listed, checked when the
connection is made, no redirects, timeouts) and signed with the subscription's secret
(:mod:`.signature`).

The subscription's ``channel.header`` values are sent too, except those that would change how
the request is framed or routed (hop-by-hop headers, ``Host``, ``Content-Length``, ...) or forge
our own headers. How the answer is classified:

* 2xx: delivered;
* 408, 429, 5xx: try again later (``Retry-After`` of a 429 or 503 is honoured);
* 410 Gone, other 4xx and 3xx (redirects are not followed): give up on this event;
* a refused address: give up; a timeout or connection failure: try again.

The receiver's response body is never read into an error text.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Sequence
from datetime import UTC

from healthbridge.infra.ssrf import AsyncOutboundClient, OutboundError, OutboundRefused
from healthbridge.subscriptions.channels.base import DeliveryResult
from healthbridge.subscriptions.channels.signature import HEADER, sign

FORBIDDEN_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "content-type",
        "expect",
    }
)
OUR_PREFIX = "x-healthbridge-"
RETRYABLE = frozenset({408, 425, 429})
MAX_RETRY_AFTER_S = 24 * 3600.0


class HeaderRefused(ValueError):
    """A ``channel.header`` value that may not be sent."""


def check_header(name: str, value: str) -> None:
    """Refuse a custom header that could change framing or routing, or forge ours."""
    lowered = name.strip().lower()
    if not lowered or any(c in name + value for c in "\r\n\0"):
        raise HeaderRefused("a channel header must be one line of the form 'Name: value'")
    if lowered in FORBIDDEN_HEADERS or lowered.startswith(OUR_PREFIX):
        raise HeaderRefused(f"the channel header {name!r} may not be set by a subscription")


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds from ``Retry-After`` (delta seconds or an HTTP date), capped at a day."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max(0.0, when.timestamp() - now), MAX_RETRY_AFTER_S)


def classify(status: int, retry_after_s: float | None) -> DeliveryResult:
    if 200 <= status < 300:
        return DeliveryResult.delivered(status)
    error = f"the endpoint answered {status}"
    if status in RETRYABLE or status >= 500:
        pause = retry_after_s if status in (429, 503) else None
        return DeliveryResult.retry(error, status_code=status, retry_after=pause)
    if 300 <= status < 400:
        error += " (redirects are not followed)"
    return DeliveryResult.give_up(error, status_code=status)


class RestHookChannel:
    def __init__(
        self,
        client: AsyncOutboundClient,
        endpoint: str,
        secret: str | bytes,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client, self.endpoint, self._secret, self._clock = client, endpoint, secret, clock

    def _headers(
        self,
        body: bytes,
        content_type: str,
        subscription_id: str,
        event_numbers: Sequence[int],
        custom: Sequence[tuple[str, str]],
    ) -> dict[str, str]:
        headers: dict[str, str] = {}
        for name, value in custom:
            check_header(name, value)
            headers[name.strip()] = value.strip()
        headers.update(
            {
                "Content-Type": content_type,
                "User-Agent": "HealthBridge-Subscriptions",
                "X-HealthBridge-Subscription": subscription_id,
                "X-HealthBridge-Event-Numbers": ",".join(map(str, event_numbers)),
                HEADER: sign(self._secret, body, int(self._clock())),
            }
        )
        return headers

    async def send(
        self,
        notification: bytes,
        content_type: str,
        *,
        subscription_id: str,
        event_numbers: Sequence[int],
        headers: Sequence[tuple[str, str]] = (),
    ) -> DeliveryResult:
        try:
            sent = self._headers(
                notification, content_type, subscription_id, event_numbers, headers
            )
        except HeaderRefused as exc:
            return DeliveryResult.give_up(str(exc))
        try:
            response = await self._client.request(
                "POST", self.endpoint, headers=sent, content=notification, read_body=False
            )
        except OutboundRefused as exc:
            return DeliveryResult.give_up(f"the endpoint is refused: {exc}")
        except OutboundError as exc:
            return DeliveryResult.retry(f"the endpoint could not be reached: {exc}")
        pause = retry_after(response.headers.get("retry-after"), self._clock())
        return classify(response.status, pause)

"""The channel protocol: how one notification Bundle reaches a subscriber, whatever the channel
type (https://hl7.org/fhir/uv/subscriptions-backport/channels.html, R4
https://hl7.org/fhir/R4/subscription.html#channels). The delivery queue calls
:meth:`Channel.send` and reads the :class:`DeliveryResult`: delivered, retry later (after
``retry_after`` seconds if the receiver said so), or give up on this event (``permanent``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """``error`` is safe to show to the subscription's owner: it never holds the receiver's
    response body or connection details beyond a category."""

    ok: bool
    status_code: int | None = None
    error: str | None = None
    retry_after: float | None = None  # seconds, when the receiver asked for a pause
    permanent: bool = False  # retrying cannot fix it (410 Gone, a refused address, ...)

    @classmethod
    def delivered(cls, status_code: int | None = None) -> DeliveryResult:
        return cls(ok=True, status_code=status_code)

    @classmethod
    def retry(
        cls, error: str, *, status_code: int | None = None, retry_after: float | None = None
    ) -> DeliveryResult:
        return cls(False, status_code, error, retry_after, permanent=False)

    @classmethod
    def give_up(cls, error: str, *, status_code: int | None = None) -> DeliveryResult:
        return cls(False, status_code, error, None, permanent=True)


class Channel(Protocol):
    """One subscription's channel (endpoint, secret and payload content are fixed when it is
    built). ``headers`` are the subscription's ``channel.header`` values as (name, value)."""

    async def send(
        self,
        notification: bytes,
        content_type: str,
        *,
        subscription_id: str,
        event_numbers: Sequence[int],
        headers: Sequence[tuple[str, str]] = (),
    ) -> DeliveryResult: ...

"""A subscription stands only while the authorization it was made under does.

Subscriptions Backport IG, https://hl7.org/fhir/uv/subscriptions-backport/safety_security.html
(notifications carry only what the subscriber may still access) and RFC 7009 section 2.1
(revocation takes effect at once): when the owner's grant is revoked (by the app, by refresh
token reuse) or its client or user is disabled, nothing more is queued or sent in its name.
The dispatcher leaves such a subscription out of matching and the delivery worker dead-letters
what was already queued; either turns it ``off`` with the reason in ``$status``. Writing the
Subscription again under a standing authorization brings it back (a new handshake).
"""

from __future__ import annotations

from healthbridge.infra.logging import get_logger
from healthbridge.security.context import Revocations
from healthbridge.store.subscriptions import DeliveryQueue
from healthbridge.subscriptions.live import Live

REASON = (
    "the authorization it was made under was revoked (its grant revoked, or its client or user "
    "disabled); write the Subscription again to resume it"
)
_log = get_logger("healthbridge.subscriptions.standing")


async def withdrawn(revocations: Revocations, queue: DeliveryQueue, live: Live) -> bool:
    """True (after turning it ``off``, once) when ``live``'s owner no longer stands."""
    if not await revocations.revoked(live.owner.access()):
        return False
    state = await queue.status(live.id)
    if state is None or state.status != "off":
        await queue.set_status(live.id, "off", REASON)
        _log.warning("subscription turned off: authorization revoked", subscription=live.id)
    return True

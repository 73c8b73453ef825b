"""The origin signature of rest-hook notifications, in the style of Stripe's and Standard
Webhooks' schemes (https://docs.stripe.com/webhooks#verify-manually,
https://www.standardwebhooks.com/): each POST carries

    X-HealthBridge-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>

with the subscription's own secret. A receiver recomputes the HMAC over the raw body it got,
compares in constant time, and refuses a timestamp outside its tolerance (5 minutes by default),
so a captured request cannot be replayed later. Several ``v1=`` values may appear while a secret
is being rotated; any one matching is enough.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from healthbridge.infra import tokens

HEADER = "X-HealthBridge-Signature"
DEFAULT_TOLERANCE_S = 300


def new_secret() -> str:
    """A fresh per-subscription signing secret (256 random bits, URL-safe text)."""
    return tokens.new_secret()


def _mac(secret: str | bytes, timestamp: int, body: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str | bytes, body: bytes, timestamp: int | None = None) -> str:
    """The header value for ``body`` signed now (or at ``timestamp``)."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={_mac(secret, t, body)}"


def verify_signature(
    secret: str | bytes,
    header: str,
    body: bytes,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    *,
    now: float | None = None,
) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` within ``tolerance_s`` of now."""
    timestamp: int | None = None
    candidates: list[str] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        return False
    expected = _mac(secret, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in candidates)

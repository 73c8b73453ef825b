"""Signing key rotation (RFC 7517 key sets; OpenID Connect Core 10.1.1 "Rotation of Asymmetric
Signing Keys": publish new keys before using them, keep old ones while their tokens live)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from healthbridge.auth import keys
from healthbridge.auth.config import AuthConfig
from healthbridge.auth.issuance import Authorization, TokenIssuer
from healthbridge.auth.keys import KeyRing
from healthbridge.auth.tokens import InvalidToken, TokenVerifier
from healthbridge.store.memory_records import MemoryRecords
from tests.support.clock import FakeClock
from tests.support.sealing import SEALER

BASE = "http://localhost"
FHIR = f"{BASE}/fhir"
DAY = timedelta(days=1)
KEEP = timedelta(minutes=10)


def _kids(ring: KeyRing) -> list[str]:
    return [k["kid"] for k in ring.jwks()["keys"]]


async def test_rotation_publishes_ahead_and_keeps_old_keys_while_tokens_live() -> None:
    clock = FakeClock()
    records = MemoryRecords(clock)
    ring = KeyRing(records, clock, DAY, KEEP, sealer=SEALER)
    await ring.refresh()
    current = ring.signing_key()
    published = _kids(ring)
    assert len(published) == 2 and current.kid == published[0]  # this period's and the next
    upcoming = published[1]
    # Tokens signed now verify through the day.
    issuer = TokenIssuer(AuthConfig(BASE, FHIR, frozenset({FHIR}), access_lifetime=KEEP), ring)
    verifier = TokenVerifier(ring, records, BASE, frozenset({FHIR}))
    old_token, _ = issuer.access_token(Authorization("g", "u", "c", "patient/*.rs"), "patient/*.rs")
    # Next period: the key published ahead signs; the old one is still published.
    clock.set(datetime(2026, 1, 2, 0, 1, tzinfo=UTC))  # a minute into the next day
    await ring.refresh()
    assert ring.signing_key().kid == upcoming
    assert current.kid in _kids(ring) and upcoming in _kids(ring)
    await verifier.verify(old_token)
    # Once the old key's tokens can no longer be alive, it is gone.
    clock.advance(minutes=11)
    await ring.refresh()
    assert current.kid not in _kids(ring)
    assert ring.public_key(current.kid) is None
    fresh = TokenVerifier(ring, records, BASE, frozenset({FHIR}))
    with pytest.raises(InvalidToken):
        await fresh.verify(old_token)


async def test_processes_agree_on_the_keys() -> None:
    """Two server processes making the period's key at once end up with the same one."""
    clock = FakeClock()
    records = MemoryRecords(clock)
    one, two = (KeyRing(records, clock, DAY, KEEP, sealer=SEALER) for _ in range(2))
    await asyncio.gather(one.refresh(), two.refresh())
    await one.refresh()
    await two.refresh()
    assert one.signing_key().kid == two.signing_key().kid
    assert _kids(one) == _kids(two)
    assert len(await records.records("signing-key")) == 2


async def test_a_key_made_by_another_process_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    records = MemoryRecords(clock)
    one = KeyRing(records, clock, DAY, KEEP, sealer=SEALER)
    two = KeyRing(records, clock, DAY, KEEP, sealer=SEALER)
    await one.refresh()
    await two.refresh()
    clock.advance(days=2)  # "one" makes the new period's keys; "two" has not looked yet
    await one.refresh()
    kid = one.signing_key().kid
    assert two.public_key(kid) is None
    assert await two.find(kid) is None  # "two" loaded just now: no reload yet (rate limit)
    monkeypatch.setattr(keys, "RELOAD_SECONDS", 0.0)
    assert await two.find(kid) is not None  # reloads on an unknown kid
    monkeypatch.setattr(keys, "RELOAD_SECONDS", 60.0)
    loaded = two._loaded_at
    assert await two.find("made-up") is None
    assert two._loaded_at == loaded  # made-up kids do not make it query again

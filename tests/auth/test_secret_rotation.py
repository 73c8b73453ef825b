"""Changing the key that seals secrets at rest (healthbridge.store.sealed_records): values sealed
with key A, or stored in plaintext before sealing, are re-sealed with key B while A is a
previous key; afterwards B alone opens everything. Compare-and-set writes keep it safe while
servers write the same records (RFC 7517 keys and RFC 6238 secrets must never be lost)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from healthbridge.auth import keys, state, totp
from healthbridge.auth.config import AuthConfig
from healthbridge.auth.issuance import Authorization, TokenIssuer
from healthbridge.auth.keys import SIGNING_KEYS, KeyRing
from healthbridge.auth.tokens import TokenVerifier
from healthbridge.auth.users import TOTP_SECRETS, UserStore
from healthbridge.infra.sealing import Sealer, UnknownKeyError
from healthbridge.store.records import RecordStore
from healthbridge.store.sealed_records import census, reseal
from tests.auth.conftest import BASE, FHIR, PASSWORD
from tests.support.clock import FakeClock
from tests.support.databases import BACKEND_PARAMS, PostgresDatabase, open_backend

KEY_A = "key A: at least thirty-two characters long"
KEY_B = "key B: at least thirty-two characters long"
DAY = timedelta(days=1)
KEEP = timedelta(minutes=10)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=BACKEND_PARAMS)
async def records(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    postgres_database: PostgresDatabase,
    clock: FakeClock,
) -> AsyncIterator[RecordStore]:
    """An empty record store of each backend, whose expiry follows ``clock``."""
    kind = str(request.param)
    if kind == "postgresql":
        postgres_database.require()
    async with open_backend(kind, tmp_path, postgres_database, clock=clock) as repo:  # type: ignore[arg-type]
        yield repo.records


async def _legacy_signing_key(records: RecordStore, ring: KeyRing, clock: FakeClock) -> str:
    """This period's key as stored before sealing: the private JWK in the clear."""
    jwk = keys._generate()
    period = ring._period(clock())
    expires = ring._period_start(period + 1) + KEEP
    assert await records.add_record(
        state.SIGNING_KEY, ring._record_key(period), {"jwk": jwk, "period": period}, expires
    )
    return str(jwk["kid"])


async def test_rotation_reseals_everything_and_then_the_new_key_alone_opens_it(
    records: RecordStore, clock: FakeClock
) -> None:
    a = Sealer.from_secrets(KEY_A)
    ring = KeyRing(records, clock, DAY, KEEP, sealer=a)
    legacy_kid = await _legacy_signing_key(records, ring, clock)
    await ring.refresh()  # loads the plain key, seals the next period's with A
    assert ring.signing_key().kid == legacy_kid
    config = AuthConfig(BASE, FHIR, frozenset({FHIR}), access_lifetime=KEEP)
    token, _ = TokenIssuer(config, ring).access_token(
        Authorization("g", "u", "c", "patient/*.rs"), "patient/*.rs"
    )
    users = UserStore(records, clock, sealer=a)
    sealed_secret, plain_secret = totp.new_secret(), totp.new_secret()
    for name in ("alice", "bob", "carol"):
        await users.create(name, PASSWORD)
    await users.update("alice", totp_secret=sealed_secret)  # sealed with A
    bob = await records.get_record(state.USER, "bob")
    assert bob is not None
    await records.put_record(state.USER, "bob", {**bob.value, "totp": plain_secret})  # legacy
    before = {r.key: r.expires for r in await records.records(state.SIGNING_KEY)}

    for sealed in (SIGNING_KEYS, TOTP_SECRETS):
        counts = await census(records, sealed)
        assert (counts.by_key, counts.plain) == ({a.key_id: 1}, 1)  # carol has no TOTP

    # The operator configures B, with A as the previous key, and rotates.
    b = Sealer.from_secrets(KEY_B, previous=[KEY_A])
    for sealed in (SIGNING_KEYS, TOTP_SECRETS):
        done = await reseal(records, sealed, b)
        assert (done.resealed, done.current, done.failed) == (2, 0, [])
        again = await reseal(records, sealed, b)  # idempotent
        assert (again.resealed, again.current, again.failed) == (0, 2, [])
        counts = await census(records, sealed)
        assert (counts.by_key, counts.plain) == ({b.key_id: 2}, 0)
    after = await records.records(state.SIGNING_KEY)
    assert {r.key: r.expires for r in after} == before  # expiry kept
    assert all(r.value["kid"] and r.value["jwk"].startswith("sealed:v1:") for r in after)

    # B alone opens everything now: the same keys sign and verify, the same codes work.
    only_b = Sealer.from_secrets(KEY_B)
    ring_b = KeyRing(records, clock, DAY, KEEP, sealer=only_b)
    await ring_b.refresh()
    assert ring_b.signing_key().kid == legacy_kid
    await TokenVerifier(ring_b, records, BASE, frozenset({FHIR})).verify(token)
    users_b = UserStore(records, clock, sealer=only_b)
    for name, secret in (("alice", sealed_secret), ("bob", plain_secret)):
        user = await users_b.get(name)
        assert user is not None
        assert await users_b.check_totp(user, totp.current_code(secret, clock()))
    # ...and A alone no longer does; the error says what to configure.
    with pytest.raises(UnknownKeyError, match="HEALTHBRIDGE_SECRET_KEYS_PREVIOUS"):
        await KeyRing(records, clock, DAY, KEEP, sealer=a).refresh()


async def test_values_no_configured_key_opens_are_reported_not_lost(
    records: RecordStore, clock: FakeClock
) -> None:
    users = UserStore(records, clock, sealer=Sealer.from_secrets(KEY_A))
    await users.create("alice", PASSWORD)
    await users.update("alice", totp_secret=totp.new_secret())
    stored = await records.get_record(state.USER, "alice")
    done = await reseal(records, TOTP_SECRETS, Sealer.from_secrets(KEY_B))  # A not configured
    assert (done.resealed, done.current) == (0, 0)
    assert len(done.failed) == 1 and done.failed[0].startswith("alice: ")
    assert "HEALTHBRIDGE_SECRET_KEYS_PREVIOUS" in done.failed[0]
    assert await records.get_record(state.USER, "alice") == stored  # untouched


async def test_rotation_is_safe_while_servers_write_the_same_records(
    records: RecordStore, clock: FakeClock
) -> None:
    """Servers already running with B (A previous) count failed sign-ins on the same accounts
    while the rotation runs: every count and every secret survives."""
    a = Sealer.from_secrets(KEY_A)
    names = [f"user{n:02d}" for n in range(20)]
    secrets = {name: totp.new_secret() for name in names}
    users_a = UserStore(records, clock, sealer=a)
    for name in names:
        await users_a.create(name, PASSWORD)
        await users_a.update(name, totp_secret=secrets[name])
    b = Sealer.from_secrets(KEY_B, previous=[KEY_A])
    server = UserStore(records, clock, sealer=b)

    async def sign_in_failures() -> None:
        for _ in range(3):
            for name in names:
                await server.record_failure(name)

    done, _ = await asyncio.gather(reseal(records, TOTP_SECRETS, b), sign_in_failures())
    assert done.failed == [] and done.resealed + done.current == len(names)
    counts = await census(records, TOTP_SECRETS)
    assert (counts.by_key, counts.plain) == ({b.key_id: len(names)}, 0)
    only_b = UserStore(records, clock, sealer=Sealer.from_secrets(KEY_B))
    for name in names:
        user = await only_b.get(name)
        assert user is not None and user.failures == 3
        assert await only_b.check_totp(user, totp.current_code(secrets[name], clock()))

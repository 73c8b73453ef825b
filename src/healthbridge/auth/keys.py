"""The server's token signing keys and their rotation; published as the JWKS
(RFC 7517 https://www.rfc-editor.org/rfc/rfc7517#section-5) at ``jwks_uri``.

Time is cut into rotation periods (``HEALTHBRIDGE_AUTH_KEY_ROTATION_DAYS``). Each period has
its own RSA key (RS256, RFC 7518 section 3.3), stored as a record (:data:`~.state.SIGNING_KEY`)
so that every server process signs and verifies with the same keys. The key of the *next*
period is made ahead and published at once, so clients that cache the JWKS already know it when
signing switches to it. A key stays published (and usable for verification) until the tokens it
signed have expired: its record expires at the end of its period plus the longest token
lifetime. Two processes creating the same period's key race on ``add_record``; the loser uses
the winner's key.

The ``kid`` is the RFC 7638 thumbprint. The private JWK is stored sealed
(:mod:`healthbridge.infra.sealing`, AES-256-GCM under ``HEALTHBRIDGE_SECRET_KEY``) for the
purpose ``signing-key/<kid>``, with the ``kid`` beside it in the clear: a copy of the database
alone does not give the keys away, and a sealed key moved to another record does not open.
Records written before sealing (a plain JWK) are still read, and sealed by ``healthbridge
secrets rotate`` (:data:`SIGNING_KEYS`).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from joserfc.jwk import RSAKey

from healthbridge.auth import state
from healthbridge.infra.sealing import Sealer
from healthbridge.store.instants import Clock, from_micros, to_micros, utc
from healthbridge.store.records import Record, RecordStore
from healthbridge.store.sealed_records import SealedField

ALGORITHM = "RS256"
RELOAD_SECONDS = 5.0
"""Unknown ``kid``: reload the keys from the database at most this often (another process may
have made a new key; a flood of made-up kids must not become a flood of queries)."""
_FOREVER = datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    period: int
    private: RSAKey
    public: RSAPublicKey  # for the verifier's hot path
    expires: datetime


def _generate() -> dict[str, Any]:
    key = RSAKey.generate_key(2048, private=True)
    data = key.as_dict(private=True)
    data.update(kid=key.thumbprint(), alg=ALGORITHM, use="sig")
    return data


def _kid(value: dict[str, Any]) -> str:
    """The kid of a stored key: beside the sealed JWK, or inside a legacy plain one."""
    kid = value.get("kid")
    if kid is None:
        kid = value["jwk"]["kid"]
    return str(kid)


def _purpose(kid: str) -> str:
    return f"signing-key/{kid}"


def _sealed_value(jwk: dict[str, Any], period: int, sealer: Sealer) -> dict[str, Any]:
    kid = str(jwk["kid"])
    return {"kid": kid, "jwk": sealer.seal(json.dumps(jwk), _purpose(kid)), "period": period}


def _open_jwk(value: dict[str, Any], sealer: Sealer) -> dict[str, Any]:
    stored = value["jwk"]
    if isinstance(stored, dict):  # written before sealing
        return stored
    jwk: dict[str, Any] = json.loads(sealer.open(stored, _purpose(_kid(value))))
    return jwk


SIGNING_KEYS = SealedField(
    "token signing keys",
    state.SIGNING_KEY,
    "jwk",
    purpose=lambda record: _purpose(_kid(record.value)),
    plaintext=json.dumps,
    rewrite=lambda record, sealed: {**record.value, "kid": _kid(record.value), "jwk": sealed},
)
"""The private JWKs, for ``healthbridge secrets status`` and ``rotate``."""


class KeyRing:
    def __init__(
        self,
        records: RecordStore,
        clock: Clock,
        rotation: timedelta,
        keep_after: timedelta,
        *,
        sealer: Sealer,
    ) -> None:
        """``sealer`` seals the private keys stored and opens them when loaded."""
        self._records = records
        self._sealer = sealer
        self._clock = clock
        self._rotation_s = max(int(rotation.total_seconds()), 1)
        self._keep_after = keep_after
        self._keys: dict[str, SigningKey] = {}
        self._by_period: dict[int, SigningKey] = {}
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()

    def _period(self, moment: datetime) -> int:
        return to_micros(moment) // (self._rotation_s * 1_000_000)

    def _period_start(self, period: int) -> datetime:
        return from_micros(period * self._rotation_s * 1_000_000)

    def _record_key(self, period: int) -> str:
        return f"{self._rotation_s}-{period:012d}"

    async def refresh(self) -> None:
        """Make this period's and the next period's keys if missing, and load every key."""
        async with self._lock:
            period = self._period(utc(self._clock()))
            for p in (period, period + 1):
                key = self._record_key(p)
                if await self._records.get_record(state.SIGNING_KEY, key) is None:
                    jwk = await asyncio.to_thread(_generate)
                    expires = self._period_start(p + 1) + self._keep_after
                    value = _sealed_value(jwk, p, self._sealer)
                    await self._records.add_record(state.SIGNING_KEY, key, value, expires)
            await self._load()

    async def _load(self) -> None:
        records = await self._records.records(state.SIGNING_KEY)
        keys: dict[str, SigningKey] = {}
        by_period: dict[int, SigningKey] = {}
        for record in records:
            # The kid outside is bound to the sealed key (associated data): a known kid is the
            # same key, so it is opened and parsed once per process.
            known = self._keys.get(_kid(record.value)) or self._import(record)
            keys[known.kid] = known
            # Keys made under another rotation setting still verify, but never sign.
            if record.key.startswith(f"{self._rotation_s}-"):
                by_period[known.period] = known
        self._keys, self._by_period = keys, by_period
        self._loaded_at = time.monotonic()

    def _import(self, record: Record) -> SigningKey:
        """The stored key, opened (SealingError names the missing secret key)."""
        private = RSAKey.import_key(_open_jwk(record.value, self._sealer))
        public = private.public_key
        assert isinstance(public, RSAPublicKey)
        expires = record.expires or _FOREVER
        return SigningKey(private.kid or "", record.value["period"], private, public, expires)

    async def current(self) -> SigningKey:
        """The key to sign with now (made or loaded first when the period changed)."""
        key = self._by_period.get(self._period(utc(self._clock())))
        if key is None:
            await self.refresh()
            key = self._by_period.get(self._period(utc(self._clock())))
            if key is None:
                raise RuntimeError("no signing key for the current period")
        return key

    def signing_key(self) -> SigningKey:
        """The current key from what is loaded (call :meth:`current` first on the loop)."""
        now = utc(self._clock())
        key = self._by_period.get(self._period(now))
        if key is None:  # the period just changed: the previous key is still published
            key = self._by_period.get(self._period(now) - 1)
        if key is None:
            raise RuntimeError("the key ring is not loaded")
        return key

    def public_key(self, kid: str) -> RSAPublicKey | None:
        key = self._keys.get(kid)
        if key is None or key.expires <= utc(self._clock()):
            return None
        return key.public

    async def find(self, kid: str) -> RSAPublicKey | None:
        """The public key of ``kid``, reloading (rate-limited) when it is unknown here."""
        found = self.public_key(kid)
        if found is None and time.monotonic() - self._loaded_at >= RELOAD_SECONDS:
            async with self._lock:
                if time.monotonic() - self._loaded_at >= RELOAD_SECONDS:
                    await self._load()
            found = self.public_key(kid)
        return found

    def jwks(self) -> dict[str, Any]:
        """The published key set: every key whose tokens may still be in use."""
        now = utc(self._clock())
        keys = []
        for key in sorted(self._keys.values(), key=lambda k: k.period):
            if key.expires > now:
                public = key.private.as_dict(private=False)
                public.update(kid=key.kid, alg=ALGORITHM, use="sig")
                keys.append(public)
        return {"keys": keys}

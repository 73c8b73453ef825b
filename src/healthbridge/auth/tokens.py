"""Verifying access tokens on every FHIR request (RFC 6750 https://www.rfc-editor.org/rfc/rfc6750,
RFC 9068 JWT access tokens): :class:`TokenVerifier` implements
:class:`~healthbridge.security.context.Authenticator`.

The hot path, for a token seen before, is a dictionary lookup in a small LRU cache keyed by
the raw token string (verified claims and the parsed scopes), an expiry check, and a revocation
check. Revocation is ONE record lookup (``any_record([("revoked-token", jti), ("revoked-grant",
grant)])``), made only when the record store's change signal (:mod:`healthbridge.store.signals`:
a ``stat`` of a file beside a SQLite database, PostgreSQL ``LISTEN/NOTIFY``) has moved since this
token was last found not revoked: revoking writers bump it after they commit, so a revocation
by any server process takes effect on the next request everywhere, and a token nobody revoked
costs no query (the lookup was about a tenth of a cached read). A new token is
verified with the cached public key of its ``kid``: RS256 only (``alg: none``, HS256 and
anything else are refused before any key is looked at), issuer, audience (the FHIR base URL),
``exp``, ``iat`` and ``typ: at+jwt`` are checked. The signature check calls ``cryptography``
directly (about 40 us; joserfc's generic path costs about 100 us); tokens are signed with
joserfc (:mod:`.issuance`).

Failures raise :class:`~healthbridge.fhir.errors.Unauthorized`: without a token, a bare
``WWW-Authenticate: Bearer realm="healthbridge"``; with a bad one, ``error="invalid_token"``
(RFC 6750 section 3.1).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from healthbridge.auth import state
from healthbridge.auth.issuance import ACCESS_TOKEN_TYPE
from healthbridge.auth.keys import ALGORITHM, KeyRing
from healthbridge.fhir.errors import Unauthorized
from healthbridge.security.context import AccessContext
from healthbridge.security.scopes import InvalidScope, parse_scopes
from healthbridge.store.records import RecordStore

REALM = 'Bearer realm="healthbridge"'
CACHE_SIZE = 2048
LEEWAY_S = 30
MAX_TOKEN_CHARS = 8192


class InvalidToken(Exception):
    """A token that is malformed, wrongly signed, expired, for another audience or revoked."""


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    claims: dict[str, Any]
    context: AccessContext
    expires: int  # epoch seconds
    revocation_keys: tuple[tuple[str, str], ...]


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _json(part: str) -> dict[str, Any]:
    try:
        value = json.loads(_b64(part))
    except (ValueError, binascii.Error) as exc:
        raise InvalidToken("the token is not a JWT") from exc
    if not isinstance(value, dict):
        raise InvalidToken("the token is not a JWT")
    return value


def _context(claims: dict[str, Any]) -> AccessContext:
    try:
        scopes = parse_scopes(claims["scope"])
    except InvalidScope as exc:
        raise InvalidToken("the token's scope is malformed") from exc
    roles = claims.get("roles") or []
    return AccessContext(
        scopes=scopes,
        patient=claims.get("patient"),
        encounter=claims.get("encounter"),
        fhir_user=claims.get("fhirUser"),
        client_id=claims["client_id"],
        subject=claims["sub"],
        jti=claims["jti"],
        grant=claims.get("grant"),
        roles=frozenset(str(r) for r in roles),
    )


def _invalid(description: str) -> Unauthorized:
    header = f'{REALM}, error="invalid_token", error_description="{description}"'
    return Unauthorized(
        f"The access token is not valid: {description}", headers={"WWW-Authenticate": header}
    )


class TokenVerifier:
    """The FHIR API's :class:`~healthbridge.security.context.Authenticator`."""

    def __init__(
        self,
        keys: KeyRing,
        records: RecordStore,
        issuer: str,
        audiences: frozenset[str],
        *,
        now: Callable[[], float] = time.time,
        cache_size: int = CACHE_SIZE,
    ) -> None:
        self._keys = keys
        self._records = records
        self._issuer = issuer
        self._audiences = audiences
        self._now = now
        self._cache: OrderedDict[str, VerifiedToken] = OrderedDict()
        self._cleared: dict[str, int] = {}  # token -> signal when last found not revoked
        self._standing: dict[tuple[tuple[str, str], ...], int] = {}  # likewise, by :meth:`revoked`
        self._cache_size = cache_size
        self._padding = padding.PKCS1v15()
        self._hash = hashes.SHA256()

    async def authenticate(self, authorization: str | None) -> AccessContext:
        scheme, _, token = (authorization or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized(
                "This request needs an access token (Authorization: Bearer ...)",
                headers={"WWW-Authenticate": REALM},
            )
        try:
            verified = await self.verify(token)
        except InvalidToken as exc:
            raise _invalid(str(exc)) from None
        return verified.context

    async def verify(self, token: str) -> VerifiedToken:
        """The verified token; InvalidToken if it is not valid now (revocation included)."""
        verified = self._cache.get(token)
        if verified is None:
            verified = await self._verify_new(token)
            self._cache[token] = verified
            if len(self._cache) > self._cache_size:
                evicted, _ = self._cache.popitem(last=False)
                self._cleared.pop(evicted, None)
        else:
            self._cache.move_to_end(token)
        if verified.expires <= self._now():
            self._cache.pop(token, None)
            self._cleared.pop(token, None)
            raise InvalidToken("the token has expired")
        await self._check_revocation(token, verified)
        return verified

    async def _check_revocation(self, token: str, verified: VerifiedToken) -> None:
        keys = verified.revocation_keys
        if await self._revoked(self._cleared, token, keys, remember=token in self._cache):
            raise InvalidToken("the token has been revoked")

    async def revoked(self, access: AccessContext) -> bool:
        """:class:`~healthbridge.security.context.Revocations`: has the authorization behind
        ``access`` been revoked since (its grant, its client or its user)? One lookup when the
        change signal moved since ``access`` was last found standing, else none."""
        if access.unrestricted or access.client_id is None or access.subject is None:
            return False
        keys = state.revocation_keys(access.grant, access.client_id, access.subject)
        if keys not in self._standing and len(self._standing) >= self._cache_size:
            self._standing.clear()
        return await self._revoked(self._standing, keys, keys, remember=True)

    async def _revoked(
        self,
        cleared: dict[Any, int],
        key: Hashable,
        keys: tuple[tuple[str, str], ...],
        *,
        remember: bool,
    ) -> bool:
        """Whether a record of ``keys`` exists; not asked (False) while the change signal is
        where it was when ``key`` was last found clear (``cleared``; ``remember`` to note it)."""
        signal = self._records.signal.current()  # taken BEFORE the lookup: a racing revocation
        if signal is not None and cleared.get(key) == signal:  # moves it again
            return False
        if await self._records.any_record(keys):
            cleared.pop(key, None)
            return True
        if signal is not None and remember:
            cleared[key] = signal
        return False

    async def decode(self, token: str) -> VerifiedToken:
        """The token with its signature, issuer and audience checked but not its expiry or
        revocation (RFC 7009 revocation and RFC 7662 introspection look at such tokens)."""
        return self._cache.get(token) or await self._verify_new(token)

    async def _verify_new(self, token: str) -> VerifiedToken:
        parts = token.split(".") if len(token) <= MAX_TOKEN_CHARS else []
        if len(parts) != 3:
            raise InvalidToken("the token is not a JWT")
        header = _json(parts[0])
        if header.get("alg") != ALGORITHM:
            raise InvalidToken(f"only {ALGORITHM}-signed tokens are accepted")
        if header.get("typ") != ACCESS_TOKEN_TYPE:
            raise InvalidToken("the token is not an access token")
        kid = header.get("kid")
        key = await self._keys.find(kid) if isinstance(kid, str) else None
        if key is None:
            raise InvalidToken("the token was not signed by this server")
        try:
            signature = _b64(parts[2])
            key.verify(signature, f"{parts[0]}.{parts[1]}".encode(), self._padding, self._hash)
        except (InvalidSignature, ValueError, binascii.Error):
            raise InvalidToken("the token's signature is wrong") from None
        claims = _json(parts[1])
        return self._checked(claims)

    def _checked(self, claims: dict[str, Any]) -> VerifiedToken:
        needed = ("iss", "aud", "sub", "client_id", "scope", "exp", "iat", "jti")
        if any(name not in claims for name in needed):
            raise InvalidToken("the token lacks required claims")
        if claims["iss"] != self._issuer:
            raise InvalidToken("the token was issued by another server")
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if not any(a in self._audiences for a in audiences):
            raise InvalidToken("the token is for another audience")
        exp, iat = claims["exp"], claims["iat"]
        if not isinstance(exp, int) or not isinstance(iat, int):
            raise InvalidToken("the token's times are malformed")
        if iat > self._now() + LEEWAY_S:
            raise InvalidToken("the token was issued in the future")
        if not all(isinstance(claims[n], str) for n in ("sub", "client_id", "scope", "jti")):
            raise InvalidToken("the token's claims are malformed")
        grant = claims.get("grant") if isinstance(claims.get("grant"), str) else None
        standing = state.revocation_keys(grant, claims["client_id"], claims["sub"])
        keys = ((state.REVOKED_TOKEN, claims["jti"]), *standing)
        return VerifiedToken(claims, _context(claims), exp, keys)

"""The life of a grant's credentials: one-time authorization codes (RFC 6749 section 4.1.2),
rotating refresh tokens (RFC 6749 section 6, OAuth 2.0 Security BCP RFC 9700 section 4.14.2:
rotation with reuse detection) and revocation (RFC 7009).

* A code is stored under its digest for ``code_lifetime`` (60 s by default, at most 10 min) and
  *taken* when redeemed (``take_record``: of two concurrent redemptions exactly one wins). The
  digest is then remembered as used; presenting it again revokes the grant, so tokens issued
  from it stop working (RFC 6749 section 4.1.2: "SHOULD revoke ... all tokens previously issued
  based on that authorization code").
* A refresh token is taken when used and a new one issued; the old digest is remembered, and
  its reuse (a stolen token racing the real client) revokes the whole grant.
* Revoking a grant writes one ``revoked-grant`` record that outlives every token of the grant;
  the verifier and the refresh path both look it up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from healthbridge.auth import state
from healthbridge.auth.config import AuthConfig
from healthbridge.auth.events import AuthEvent, EventSink
from healthbridge.auth.issuance import Authorization
from healthbridge.infra import tokens
from healthbridge.store.instants import Clock, utc
from healthbridge.store.records import RecordStore


@dataclass(frozen=True, slots=True)
class IssuedCode:
    """A redeemed authorization code (Authlib's AuthorizationCodeMixin and the PKCE and OIDC
    accessors)."""

    authorization: Authorization
    redirect_uri: str
    code_challenge: str
    code_challenge_method: str
    nonce: str | None = None

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.authorization.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int | None:
        return self.authorization.auth_time

    def get_acr(self) -> str | None:
        return None

    def get_amr(self) -> list[str] | None:
        return list(self.authorization.amr) or None

    def value(self) -> dict[str, Any]:
        return {
            "authorization": self.authorization.value(),
            "redirect_uri": self.redirect_uri,
            "code_challenge": self.code_challenge,
            "code_challenge_method": self.code_challenge_method,
            "nonce": self.nonce,
        }

    @classmethod
    def from_value(cls, v: dict[str, Any]) -> IssuedCode:
        return cls(
            Authorization.from_value(v["authorization"]),
            v["redirect_uri"],
            v["code_challenge"],
            v["code_challenge_method"],
            v.get("nonce"),
        )


@dataclass(frozen=True, slots=True)
class StoredRefresh:
    """A refresh token that was just taken for rotation (Authlib's TokenMixin subset)."""

    authorization: Authorization
    expires: datetime | None

    def check_client(self, client: Any) -> bool:
        return bool(client.get_client_id() == self.authorization.client_id)

    def get_scope(self) -> str:
        return self.authorization.scope


async def _nothing(event: AuthEvent) -> None:
    return None


class Credentials:
    def __init__(
        self,
        records: RecordStore,
        config: AuthConfig,
        clock: Clock,
        events: EventSink | None = None,
    ) -> None:
        self._records = records
        self._config = config
        self._clock = clock
        self._events = events or _nothing

    def now(self) -> datetime:
        return utc(self._clock())

    @property
    def _grant_lifetime(self) -> timedelta:
        """Longer than any token of a grant can live."""
        return max(self._config.refresh_lifetime, self._config.access_lifetime) + timedelta(
            minutes=5
        )

    async def save_code(self, code: str, issued: IssuedCode) -> None:
        expires = self.now() + self._config.code_lifetime
        await self._records.put_record(state.CODE, tokens.digest(code), issued.value(), expires)

    async def redeem_code(self, code: str, client_id: str) -> IssuedCode | None:
        """The code's grant when ``code`` is valid for ``client_id`` (it is used up either way);
        None otherwise. A code presented again revokes its grant."""
        key = tokens.digest(code)
        taken = await self._records.take_record(state.CODE, key)
        if taken is None:
            used = await self._records.get_record(state.CODE_USED, key)
            if used is not None:
                await self.revoke_grant(used.value["grant"], "authorization code reused")
            return None
        issued = IssuedCode.from_value(taken.value)
        grant = issued.authorization.grant
        await self._records.put_record(
            state.CODE_USED, key, {"grant": grant}, self.now() + self._grant_lifetime
        )
        if issued.authorization.client_id != client_id:
            await self.revoke_grant(grant, "authorization code presented by another client")
            return None
        return issued

    async def save_refresh(self, token: str, authorization: Authorization) -> None:
        expires = self.now() + self._config.refresh_lifetime
        await self._records.put_record(
            state.REFRESH, tokens.digest(token), authorization.value(), expires
        )

    async def rotate_refresh(self, token: str) -> StoredRefresh | None:
        """Take the refresh token for one use; None when unknown, expired, used before (that
        revokes its grant) or of a revoked grant."""
        key = tokens.digest(token)
        taken = await self._records.take_record(state.REFRESH, key)
        if taken is None:
            used = await self._records.get_record(state.REFRESH_USED, key)
            if used is not None:
                await self.revoke_grant(used.value["grant"], "refresh token reused")
            return None
        authorization = Authorization.from_value(taken.value)
        await self._records.put_record(
            state.REFRESH_USED, key, {"grant": authorization.grant}, taken.expires
        )
        if await self.grant_revoked(authorization.grant):
            return None
        return StoredRefresh(authorization, taken.expires)

    async def find_refresh(self, token: str) -> Authorization | None:
        """The grant of a live refresh token, without using it (revocation, introspection)."""
        record = await self._records.get_record(state.REFRESH, tokens.digest(token))
        if record is None:
            return None
        authorization = Authorization.from_value(record.value)
        return None if await self.grant_revoked(authorization.grant) else authorization

    async def grant_revoked(self, grant: str) -> bool:
        return await self._records.any_record([(state.REVOKED_GRANT, grant)])

    async def revoke_grant(self, grant: str, reason: str) -> None:
        expires = self.now() + self._grant_lifetime
        await self._records.put_record(state.REVOKED_GRANT, grant, {"reason": reason}, expires)
        await self._records.signal.changed()
        await self._events(AuthEvent("grant-revoked", grant=grant, detail=reason))

    async def revoke_refresh(self, token: str) -> None:
        """RFC 7009 section 2.1: revoking a refresh token revokes its grant's access tokens."""
        authorization = await self.find_refresh(token)
        await self._records.delete_record(state.REFRESH, tokens.digest(token))
        if authorization is not None:
            await self.revoke_grant(authorization.grant, "refresh token revoked")

    async def revoke_access(self, jti: str, exp: int) -> None:
        expires = datetime.fromtimestamp(exp, tz=self.now().tzinfo) + timedelta(minutes=1)
        await self._records.put_record(state.REVOKED_TOKEN, jti, {}, expires)
        await self._records.signal.changed()

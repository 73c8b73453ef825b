"""Token revocation (RFC 7009 https://www.rfc-editor.org/rfc/rfc7009), as an Authlib endpoint.

A client revokes its own access or refresh token at ``POST /auth/revoke``. An access token's
``jti`` is recorded as revoked until the token would have expired; a refresh token revokes its
whole grant (RFC 7009 section 2.1), so the grant's access tokens stop working too. Either way
the change is visible to every server process on their next request (the verifier looks the
revocation up each time). Unknown tokens get 200, as the RFC asks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from authlib.oauth2.rfc7009 import RevocationEndpoint as AuthlibRevocation

from healthbridge.auth import bridge
from healthbridge.auth.events import AuthEvent
from healthbridge.auth.grants import CONFIDENTIAL_OR_PUBLIC
from healthbridge.auth.issuance import Authorization, context_claims
from healthbridge.auth.tokens import InvalidToken

if TYPE_CHECKING:
    from healthbridge.auth.server import AuthServer

MAX_TOKEN_CHARS = 8192


@dataclass(frozen=True, slots=True)
class FoundToken:
    """A token presented for revocation or introspection (Authlib's TokenMixin subset)."""

    kind: Literal["access_token", "refresh_token"]
    raw: str
    client_id: str
    active: bool
    claims: dict[str, Any]
    grant: str | None

    def check_client(self, client: Any) -> bool:
        return bool(client.get_client_id() == self.client_id)

    def is_expired(self) -> bool:
        return not self.active

    def is_revoked(self) -> bool:
        return not self.active


async def find_token(server: AuthServer, raw: str) -> FoundToken | None:
    """The access token (a JWT this server signed) or refresh token ``raw`` is; None if
    neither. ``active`` is False when it expired or was revoked."""
    if not raw or len(raw) > MAX_TOKEN_CHARS:
        return None
    if raw.count(".") == 2:
        try:
            decoded = await server.verifier.decode(raw)
        except InvalidToken:
            return None
        claims = decoded.claims
        active = decoded.expires > time.time() and not await server.records.any_record(
            decoded.revocation_keys
        )
        return FoundToken(
            "access_token", raw, claims["client_id"], active, claims, claims.get("grant")
        )
    authorization = await server.credentials.find_refresh(raw)
    if authorization is None:
        return None
    return FoundToken(
        "refresh_token",
        raw,
        authorization.client_id,
        True,
        _refresh_claims(server, authorization),
        authorization.grant,
    )


def _refresh_claims(server: AuthServer, authorization: Authorization) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": server.config.issuer,
        "sub": authorization.subject,
        "client_id": authorization.client_id,
        "scope": authorization.scope,
    }
    claims.update(context_claims(authorization))
    return claims


class RevocationEndpoint(AuthlibRevocation):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = CONFIDENTIAL_OR_PUBLIC
    server: AuthServer

    def query_token(self, token_string: str, token_type_hint: str | None) -> FoundToken | None:
        found = bridge.run(find_token(self.server, token_string))
        return found if found is not None and found.active else None

    def revoke_token(self, token: FoundToken, request: Any) -> None:
        credentials = self.server.credentials
        if token.kind == "refresh_token":
            bridge.run(credentials.revoke_refresh(token.raw))
        else:
            bridge.run(credentials.revoke_access(token.claims["jti"], int(token.claims["exp"])))
        event = AuthEvent(
            "token-revoked",
            subject=token.claims.get("sub"),
            client_id=token.client_id,
            fhir_user=token.claims.get("fhirUser"),
            jti=token.claims.get("jti"),
            grant=token.grant,
            patient=token.claims.get("patient"),
            address=getattr(request, "address", None),
            detail=token.kind,
        )
        bridge.run(self.server.emit(event))

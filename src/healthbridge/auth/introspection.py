"""Token introspection (RFC 7662 https://www.rfc-editor.org/rfc/rfc7662, with SMART's launch
context fields: https://hl7.org/fhir/smart-app-launch/token-introspection.html), as an Authlib
endpoint at ``POST /auth/introspect``.

Confidential clients may introspect the tokens issued to them; clients registered with the role
``introspect`` (resource servers) or ``admin`` may introspect any. A token that is expired,
revoked, of another client, unknown or garbage gets ``{"active": false}``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from authlib.oauth2.rfc7662 import IntrospectionEndpoint as AuthlibIntrospection

from healthbridge.auth import bridge
from healthbridge.auth.revocation import FoundToken, find_token

if TYPE_CHECKING:
    from healthbridge.auth.server import AuthServer

INTROSPECTING_ROLES = frozenset({"introspect", "admin"})


class IntrospectionEndpoint(AuthlibIntrospection):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]
    server: AuthServer

    def query_token(self, token_string: str, token_type_hint: str | None) -> FoundToken | None:
        return bridge.run(find_token(self.server, token_string))

    def check_permission(self, token: FoundToken, client: Any, request: Any) -> bool:
        return token.check_client(client) or bool(client.roles & INTROSPECTING_ROLES)

    def introspect_token(self, token: FoundToken) -> dict[str, Any]:
        payload = {name: value for name, value in token.claims.items() if name != "grant"}
        payload["active"] = True
        payload["token_type"] = "Bearer" if token.kind == "access_token" else "refresh_token"
        if "sub" in payload:
            payload["username"] = payload["sub"]
        return payload

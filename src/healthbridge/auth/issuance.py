"""Issuing tokens: signed JWT access tokens (RFC 9068 https://www.rfc-editor.org/rfc/rfc9068),
opaque refresh tokens, and the SMART token response
(https://hl7.org/fhir/smart-app-launch/app-launch.html#response-5).

An :class:`Authorization` is what one grant decided: who (the user, or the client itself for
backend services), which client, the granted scopes and launch context. Authlib passes it around
as its "user"; every token of the grant carries the grant id, so revoking the grant (refresh
token reuse, code reuse, RFC 7009 revocation of a refresh token) revokes all of them.

Access token claims: ``iss``, ``aud`` (the FHIR base URL), ``sub``, ``client_id``, ``scope``,
``exp``, ``iat``, ``jti``, ``grant``, and when present ``patient``, ``encounter``, ``fhirUser`` and
``roles``. Header ``typ: at+jwt`` keeps an id_token from passing as an access token.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from joserfc import jwt

from healthbridge.auth import state
from healthbridge.auth.config import AuthConfig
from healthbridge.auth.keys import ALGORITHM, KeyRing
from healthbridge.infra import tokens
from healthbridge.security.scopes import parse_scopes

ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105 - a media type, not a secret


@dataclass(frozen=True, slots=True)
class Authorization:
    """One grant's decision (Authlib's "user" object)."""

    grant: str
    subject: str  # the user name; the client id for backend services
    client_id: str
    scope: str  # the granted scopes
    fhir_user: str | None = None
    roles: frozenset[str] = frozenset()
    patient: str | None = None
    encounter: str | None = None
    auth_time: int | None = None
    amr: tuple[str, ...] = ()
    name: str = ""
    backend: bool = False  # a backend service's own grant (client credentials): no user

    def get_user_id(self) -> str:  # Authlib
        return self.subject

    def value(self) -> dict[str, Any]:
        return {
            "grant": self.grant,
            "subject": self.subject,
            "client_id": self.client_id,
            "scope": self.scope,
            "fhir_user": self.fhir_user,
            "roles": sorted(self.roles),
            "patient": self.patient,
            "encounter": self.encounter,
            "auth_time": self.auth_time,
            "amr": list(self.amr),
            "name": self.name,
            "backend": self.backend,
        }

    @classmethod
    def from_value(cls, v: dict[str, Any]) -> Authorization:
        return cls(
            grant=v["grant"],
            subject=v["subject"],
            client_id=v["client_id"],
            scope=v["scope"],
            fhir_user=v.get("fhir_user"),
            roles=frozenset(v.get("roles") or ()),
            patient=v.get("patient"),
            encounter=v.get("encounter"),
            auth_time=v.get("auth_time"),
            amr=tuple(v.get("amr") or ()),
            name=v.get("name") or "",
            backend=bool(v.get("backend")),
        )


def context_claims(authorization: Authorization) -> dict[str, str]:
    """The launch context a token (or its introspection) carries: ``patient``, ``encounter``
    and ``fhirUser`` when granted."""
    values = {
        "patient": authorization.patient,
        "encounter": authorization.encounter,
        "fhirUser": authorization.fhir_user,
    }
    return {name: value for name, value in values.items() if value}


class TokenIssuer:
    """Signs access tokens with the key ring's current key; builds token responses."""

    def __init__(self, config: AuthConfig, keys: KeyRing) -> None:
        self._config = config
        self._keys = keys
        self.access_seconds = int(config.access_lifetime.total_seconds())

    def access_token(
        self, authorization: Authorization, scope: str, audience: str | None = None
    ) -> tuple[str, dict[str, Any]]:
        """A signed access token for ``scope`` (a subset of the grant's) and its claims."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self._config.issuer,
            "aud": audience or self._config.fhir_base,
            "sub": authorization.subject,
            "client_id": authorization.client_id,
            "scope": scope,
            "iat": now,
            "exp": now + self.access_seconds,
            "jti": state.new_id(),
            "grant": authorization.grant,
        }
        claims.update(context_claims(authorization))
        if authorization.roles:
            claims["roles"] = sorted(authorization.roles)
        key = self._keys.signing_key()
        header = {"alg": ALGORITHM, "typ": ACCESS_TOKEN_TYPE, "kid": key.kid}
        return jwt.encode(header, claims, key.private, algorithms=[ALGORITHM]), claims

    def response(
        self,
        authorization: Authorization,
        scope: str,
        *,
        refresh: bool,
        audience: str | None = None,
    ) -> dict[str, Any]:
        """The token endpoint's JSON: access token, type, lifetime, scope, launch context and
        (when ``refresh`` and offline access was granted) a new refresh token."""
        access, _ = self.access_token(authorization, scope, audience)
        body: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.access_seconds,
            "scope": scope,
        }
        if authorization.patient:
            body["patient"] = authorization.patient
        if authorization.encounter:
            body["encounter"] = authorization.encounter
        if refresh and parse_scopes(authorization.scope).offline:
            body["refresh_token"] = tokens.new_secret(32)
        return body

"""The OAuth 2.0 authorization server (RFC 6749 https://www.rfc-editor.org/rfc/rfc6749): Authlib's
framework-agnostic :class:`AuthorizationServer`, wired to our storage and requests.

Authlib has no Starlette integration, so requests are wrapped here: the route reads the query
and form (async), builds an :class:`OAuthRequest` (Authlib's ``OAuth2Request`` with its
payload), and runs the Authlib call in a worker thread (:mod:`.bridge`). Responses come back as
a :class:`Reply` that the route turns into a Starlette response.

Registered here: the grants of :mod:`.grants` (authorization code with S256-only PKCE and
OpenID Connect, refresh token, client credentials), ``private_key_jwt`` client authentication
(:mod:`.client_auth`), the token generator (:mod:`.issuance`) and the revocation and
introspection endpoints.
"""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from authlib.oauth2.rfc6749 import AuthorizationServer, InvalidRequestError, OAuth2Request
from authlib.oauth2.rfc6749.requests import OAuth2Payload

from healthbridge.auth import bridge, state
from healthbridge.auth.client_auth import PrivateKeyJwt
from healthbridge.auth.client_jwks import JwksFetcher, JwksPolicy
from healthbridge.auth.clients import Client, ClientStore
from healthbridge.auth.config import AuthConfig
from healthbridge.auth.credentials import Credentials
from healthbridge.auth.events import AuthEvent, EventSink
from healthbridge.auth.grants import (
    AuthorizationCodeGrant,
    ClientCredentialsGrant,
    RefreshTokenGrant,
    S256Only,
    SmartOpenIDCode,
)
from healthbridge.auth.introspection import IntrospectionEndpoint
from healthbridge.auth.issuance import Authorization, TokenIssuer
from healthbridge.auth.keys import KeyRing
from healthbridge.auth.launch import LaunchContext, LaunchStore
from healthbridge.auth.revocation import RevocationEndpoint
from healthbridge.auth.tokens import TokenVerifier
from healthbridge.auth.users import Lockout, UserStore
from healthbridge.infra.sealing import Sealer
from healthbridge.security.scopes import parse_scopes
from healthbridge.store.instants import Clock, utc
from healthbridge.store.records import RecordStore


def _jti(access_token: str) -> str | None:
    """The ``jti`` of a token this server just signed (its payload, not verified again)."""
    try:
        payload = access_token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
    jti = claims.get("jti") if isinstance(claims, dict) else None
    return jti if isinstance(jti, str) else None


class _Payload(OAuth2Payload):  # type: ignore[misc]
    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        self._datalist: defaultdict[str, list[str]] = defaultdict(list)
        for name, value in pairs:
            self._datalist[name].append(value)
        self._data = {name: values[0] for name, values in self._datalist.items()}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class OAuthRequest(OAuth2Request):  # type: ignore[misc]
    """Authlib's request over an already-read query and form."""

    def __init__(
        self,
        method: str,
        uri: str,
        headers: Any,
        query: Sequence[tuple[str, str]],
        form: Sequence[tuple[str, str]] = (),
        address: str | None = None,
    ) -> None:
        super().__init__(method, uri, headers=headers)
        self._args = dict(reversed(query))  # the first value of each name
        self._form = dict(reversed(form))
        self.payload = _Payload([*query, *form])
        self.address = address
        self.launch_context: LaunchContext | None = None

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: Any
    headers: list[tuple[str, str]] = field(default_factory=list)


class AuthServer(AuthorizationServer):  # type: ignore[misc]
    def __init__(
        self,
        config: AuthConfig,
        records: RecordStore,
        clock: Clock,
        keys: KeyRing,
        events: EventSink,
        *,
        sealer: Sealer,
    ) -> None:
        super().__init__()
        self.config = config
        self.records = records
        self.clock = clock
        self.keys = keys
        self.events = events
        self.clients = ClientStore(records)
        self.users = UserStore(
            records,
            clock,
            Lockout(config.lockout_threshold, config.lockout_duration),
            sealer=sealer,
        )
        self.launches = LaunchStore(records, clock)
        self.credentials = Credentials(records, config, clock, events)
        self.issuer = TokenIssuer(config, keys)
        self.verifier = TokenVerifier(keys, records, config.issuer, config.audiences)
        self.jwks_fetcher = JwksFetcher(
            JwksPolicy(
                config.jwks_allowed_hosts,
                config.jwks_timeout_s,
                config.jwks_max_bytes,
                config.jwks_cache_s,
            )
        )
        token_endpoints = frozenset(
            a.removesuffix("/fhir") + "/auth/token" for a in config.audiences
        )
        self.register_client_auth_method(
            "private_key_jwt", PrivateKeyJwt(token_endpoints, self.jwks_fetcher, self._remember_jti)
        )
        self.register_token_generator("default", self._generate_token)
        self.register_grant(AuthorizationCodeGrant, [S256Only(), SmartOpenIDCode(self)])
        self.register_grant(RefreshTokenGrant)
        self.register_grant(ClientCredentialsGrant)
        self.register_endpoint(RevocationEndpoint(self))
        self.register_endpoint(IntrospectionEndpoint(self))

    def now(self) -> datetime:
        return utc(self.clock())

    # --- Authlib's integration points (called in the worker thread) ----------------------------

    def query_client(self, client_id: str) -> Client | None:
        if not isinstance(client_id, str):
            return None
        return bridge.run(self.clients.active(client_id))

    def create_oauth2_request(self, request: OAuthRequest) -> OAuthRequest:
        return request

    def create_json_request(self, request: Any) -> Any:
        return request

    def handle_response(self, status: int, body: Any, headers: list[tuple[str, str]]) -> Reply:
        return Reply(status, body, list(headers))

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None

    def save_token(self, token: dict[str, Any], request: OAuthRequest) -> None:
        authorization: Authorization | None = request.user
        if authorization is None:
            return
        refresh = token.get("refresh_token")
        if refresh:
            bridge.run(self.credentials.save_refresh(refresh, authorization))
        refreshed = request.payload.grant_type == "refresh_token"
        event = AuthEvent(
            "token-refreshed" if refreshed else "token-issued",
            jti=_jti(token.get("access_token", "")),
            subject=authorization.subject,
            client_id=authorization.client_id,
            fhir_user=authorization.fhir_user,
            grant=authorization.grant,
            patient=authorization.patient,
            address=request.address,
        )
        bridge.run(self.emit(event))

    def _generate_token(
        self,
        grant_type: str,
        client: Client,
        user: Authorization | None = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        assert user is not None, "every grant here passes its Authorization"
        return self.issuer.response(user, scope or "", refresh=include_refresh_token)

    async def emit(self, event: AuthEvent) -> None:
        await self.events(event)

    def _remember_jti(self, client_id: str, jti: str, exp: int) -> bool:
        expires = datetime.fromtimestamp(exp + 60, tz=self.now().tzinfo)
        key = f"{client_id} {jti}"
        return bridge.run(self.records.add_record(state.ASSERTION_JTI, key, {}, expires))

    # --- SMART checks and grant state -------------------------------------------------------

    def check_smart_request(self, request: OAuthRequest) -> None:
        """``aud`` names this FHIR server; ``launch`` (EHR launch) is one we issued for this
        client, and the ``launch`` scope comes with it (https://hl7.org/fhir/smart-app-launch/app-launch.html#obtain-authorization-code)."""
        data = request.payload.data
        if data.get("aud") not in self.config.audiences:
            raise InvalidRequestError("aud must be the base URL of this FHIR server.")
        granted = parse_scopes(request.scope or "")
        launch = data.get("launch")
        if launch:
            context = bridge.run(self.launches.get(launch))
            if context is None:
                raise InvalidRequestError("The launch is unknown or has expired.")
            if context.client_id and context.client_id != request.client.get_client_id():
                raise InvalidRequestError("The launch was made for another app.")
            if not granted.launch:
                raise InvalidRequestError("An EHR launch needs the launch scope.")
            request.launch_context = context
        elif granted.launch:
            raise InvalidRequestError("The launch scope needs a launch parameter (EHR launch).")

    async def still_valid(self, authorization: Authorization) -> Authorization | None:
        """The grant's authorization when its user (if any) and client are still active and
        the grant was not revoked."""
        if await self.credentials.grant_revoked(authorization.grant):
            return None
        if await self.clients.active(authorization.client_id) is None:
            return None
        if not authorization.backend:
            user = await self.users.get(authorization.subject)
            if user is None or user.disabled:
                return None
        return authorization
